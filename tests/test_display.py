from __future__ import annotations

import io
from typing import cast

from rich.console import Console
from support import Behaviour, Recorder, execute, plan, step

from code_evolver import events
from code_evolver.display.live import LineProgress, LiveView
from code_evolver.display.plan_tree import plan_tree
from code_evolver.display.results import results_view, summary_line
from code_evolver.display.style import clip, seconds
from code_evolver.organizer import organize


def render(renderable: object, width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    console.print(renderable)
    return cast(io.StringIO, console.file).getvalue()


def test_live_view_shows_where_a_step_runs_now() -> None:
    organized = organize(plan(step("a"), step("b")))
    console = Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)
    view = LiveView(organized, console)
    view(events.StepStarted("a", "work", 1, 0.0))
    view(events.CallStarted("a", "a.llm1", "on gpu-box", 1, 0.1, stage=True))
    view(events.StepStarted("b", "work", 1, 0.0))
    view(events.CallStarted("b", "b.1", "work", 1, 0.1))  # a script's own call
    text = render(view)
    assert "on gpu-box" in text
    assert "↳ calls: 1 running" in text
    assert text.count("calls:") == 1  # the stage is not counted as a call


def test_live_view_tracks_every_state() -> None:
    organized = organize(plan(step("a"), step("b", "a"), step("c"), step("d", "c"), step("e")))
    console = Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)
    view = LiveView(organized, console)
    view(events.StepStarted("a", "work", 1, 0.0))
    view(events.StepStarted("c", "work", 1, 0.0))
    view(events.StepSucceeded("a", 1, 0.25, "out", 0.3))
    view(events.StepRetrying("c", 1, "flaky", 0.5, 0.3))
    view(events.StepFailed("e", 1, "exit status 3: boom", "failed", 0.3))
    view(events.StepSkipped("d", "e", 0.3))
    text = render(view)
    assert "✓ a" in text
    assert "0.250s" in text
    assert "retry in 0.5s after attempt 1: flaky" in text
    assert "exit status 3: boom" in text
    assert "skipped: dependency 'e' did not succeed" in text
    assert "3/5 done" in text


def test_live_view_of_a_large_plan_shows_a_screenful() -> None:
    organized = organize(plan(*(step(f"s{i}") for i in range(500))))
    console = Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)
    view = LiveView(organized, console, max_rows=10)
    for i in range(100):
        view(events.StepStarted(f"s{i}", "work", 1, 0.0))
        view(events.StepSucceeded(f"s{i}", 1, 0.01, "", 0.0))
    view(events.StepFailed("s200", 1, "broken", "failed", 0.0))
    for i in range(300, 303):
        view(events.StepStarted(f"s{i}", "work", 1, 0.0))
    text = render(view)
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 11
    assert "s200" in text
    assert "s302" in text
    assert "s99" in text
    assert "s10 " not in text
    assert "490 rows hidden" in text
    assert "101/500 done" in text
    assert "3 running" in text


def test_line_progress_prints_one_line_per_outcome() -> None:
    out = io.StringIO()
    progress = LineProgress(Console(file=out, width=200, color_system=None))
    progress(events.StepStarted("a", "t", 1, 0))
    progress(events.StepSucceeded("a", 1, 1.5, "x", 0))
    progress(events.StepRetrying("b", 1, "oops", 0.2, 0))
    progress(events.StepFailed("b", 2, "oops again", "timed_out", 0))
    progress(events.StepCancelled("c", True, 0))
    assert out.getvalue().splitlines() == [
        "✓ a 1.50s",
        "· b attempt 1 failed (oops); retry in 0.2s",
        "⏱ b oops again",
        "⊘ c cancelled",
    ]


def test_plan_tree_lists_waves_and_warnings() -> None:
    organized = organize(plan(step("a"), step("b", input="{a}"), step("c", "a"), request="demo"))
    text = render(plan_tree(organized))
    assert "demo" in text
    assert "3 steps in 2 waves, longest chain 2" in text
    assert "wave 2 (×2 in parallel)" in text
    assert "warning: step 'b' uses {a}" in text


def test_results_show_final_outputs_in_full_and_clip_intermediate_ones() -> None:
    rec = Recorder()
    rec.behaviours["a"] = Behaviour(output="\n".join(f"line {i}" for i in range(30)))
    rec.behaviours["b"] = Behaviour(output="\n".join(f"final {i}" for i in range(30)))
    result = execute(plan(step("a"), step("b", "a")), {"work": rec.tool()})
    text = render(results_view(result))
    assert "line 11" in text
    assert "line 12" not in text
    assert "… 18 more lines" in text
    assert "final 29" in text


def test_results_of_a_large_plan_show_finals_and_problems_only() -> None:
    rec = Recorder()
    rec.behaviours["s5"] = Behaviour(always_fail=True)
    steps = [step("s0")] + [step(f"s{i}", f"s{i - 1}") for i in range(1, 30)]
    steps.append(step("lone"))
    result = execute(plan(*steps), {"work": rec.tool()})
    text = render(results_view(result), width=120)
    assert "s5 failed on attempt 1" in text
    assert "lone" in text
    assert "s3 " not in text
    assert "intermediate steps not shown; --json has every output" in text


def test_summary_line_has_every_figure() -> None:
    result = execute(plan(step("a"), step("b", "a")), {"work": Recorder().tool()})
    line = summary_line(result, "planned in 1.00s by the rules")
    assert line.startswith(
        "[green]✓[/] succeeded: 2 succeeded · planned in 1.00s by the rules · ran in "
    )
    for figure in (
        "step time",
        "speedup",
        "critical path",
        "(a → b)",
        "efficiency",
        "peak concurrency 1",
    ):
        assert figure in line


def test_one_step_has_no_parallel_figures() -> None:
    result = execute(plan(step("a")), {"work": Recorder().tool()})
    line = summary_line(result)
    assert line.startswith("[green]✓[/] succeeded: 1 succeeded · ran in ")
    for figure in ("speedup", "efficiency", "critical path", "peak concurrency", "waiting"):
        assert figure not in line
    assert (result.speedup, result.efficiency) == (None, None)
    doc = result.to_json()
    assert (doc["speedup"], doc["efficiency"]) == (None, None)
    assert (doc["critical_path_s"], doc["critical_path"]) == (None, None)
    assert doc["run_s"] == doc["wall_s"]


def test_a_timed_out_step_is_counted_in_words() -> None:
    rec = Recorder()
    rec.behaviours["b"] = Behaviour(hang=True)
    result = execute(plan(step("a"), step("b", timeout_s=0.05, retries=0)), {"work": rec.tool()})
    line = summary_line(result)
    assert "1 succeeded, 1 timed out" in line
    assert "timed_out" not in line


def test_formatting_helpers() -> None:
    assert seconds(0.0123) == "0.012s"
    assert seconds(2.5) == "2.50s"
    assert seconds(42) == "42.0s"
    assert seconds(125) == "2m05s"
    assert clip("a\n b   c", 10) == "a b c"
    assert clip("x" * 20, 5) == "xxxx…"


def test_a_huge_one_line_output_is_clipped_by_characters() -> None:
    rec = Recorder()
    rec.behaviours["a"] = Behaviour(output="y" * 3_000_000)
    rec.behaviours["b"] = Behaviour(output="z" * 3_000_000)
    result = execute(plan(step("a"), step("b", "a")), {"work": rec.tool()})
    text = render(results_view(result, markdown={"work"}), width=120)
    assert len(text) < 40_000  # not 6 MB laid out line by line
    assert "2,998,000 more characters; --full shows every line, --json every output in full" in text
    assert "2,980,000 more characters; --full shows every line, --json every output in full" in text


def test_clip_output_counts_what_it_leaves_out() -> None:
    from code_evolver.display.results import clip_output

    assert clip_output("a\nb\nc", 5, 100) == "a\nb\nc"
    assert (
        clip_output("a\nb\nc\n", 2, 100)
        == "a\nb\n… 1 more line; --full shows every line, --json every output in full"
    )
    assert clip_output("a\nb\nc\nd", 2, 100).startswith("a\nb\n… 2 more lines")
    assert (
        clip_output("abcdef", None, 3)
        == "abc\n… 3 more characters; --full shows every line, --json every output in full"
    )
    assert clip_output("a\n\n\n", 1, 100) == "a\n\n\n"  # only blank lines left: nothing to hide
    assert clip("x" * 10_000_000, 5) == "xxxx…"


def test_a_poem_keeps_its_lines_and_markdown_still_renders() -> None:
    rec = Recorder()
    rec.behaviours["poem"] = Behaviour(
        output="Roses are red,\nviolets are blue,\n**sugar** is sweet"
    )
    rec.behaviours["code"] = Behaviour(output="```python\ndef f():\n    return 1\n```")
    rec.behaviours["raw"] = Behaviour(output="# not a heading\n*not emphasis*")
    result = execute(
        plan(step("poem"), step("code"), step("raw", tool="other")),
        {
            "work": rec.tool(),
            "other": rec.tool(),
        },
    )
    text = render(results_view(result, markdown={"work"}), width=60)
    lines = [line.strip("│ ") for line in text.splitlines()]
    assert "Roses are red," in lines
    assert "violets are blue," in lines
    assert "sugar is sweet" in lines  # Markdown rendered: no asterisks
    assert "def f():" in lines
    assert "return 1" in lines
    assert "# not a heading" in lines
    assert "*not emphasis*" in lines


def test_full_shows_every_line_of_intermediate_outputs() -> None:
    rec = Recorder()
    rec.behaviours["a"] = Behaviour(output="\n".join(f"line {i}" for i in range(30)))
    result = execute(plan(step("a"), step("b", "a")), {"work": rec.tool()})
    assert "18 more lines" in render(results_view(result), width=80)
    whole = render(results_view(result, full=True), width=80)
    assert "line 29" in whole
    assert "more lines" not in whole


def test_code_blocks_in_a_models_answer_are_highlighted() -> None:
    rec = Recorder()
    rec.behaviours["a"] = Behaviour(output="```python\ndef f():\n    return 1\n```")
    result = execute(plan(step("a")), {"work": rec.tool()})
    console = Console(file=io.StringIO(), width=60, force_terminal=True, color_system="truecolor")
    console.print(results_view(result, markdown={"work"}))
    code_line = next(
        line for line in cast(io.StringIO, console.file).getvalue().splitlines() if "def" in line
    )
    assert "\x1b[38;2;" in code_line  # colours from the syntax theme


def test_the_planning_line_counts_time_before_the_models_first_token() -> None:
    console = Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)
    view = LiveView(None, console, status="planning…")
    assert "planning… 0s" in render(view)
    view._status_since -= (
        7  # seven seconds of loading the model: no event came, the time still moves
    )
    assert "planning… 7s" in render(view)
    view(events.Planning("planning with embedded:m.gguf", 7.5, 40, 2))
    assert "planning… 7s · planning with embedded:m.gguf: 40 tokens, 2 steps so far" in render(view)


def test_loading_the_model_is_shown() -> None:
    console = Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)
    view = LiveView(None, console, status="planning…")
    view(events.ModelLoading("embedded:m.gguf"))
    assert "loading embedded:m.gguf… 0s" in render(view)
    lines = LineProgress(console)
    lines(events.ModelLoading("embedded:m.gguf"))
    lines(events.ModelLoading("embedded:m.gguf", done=True, seconds=1.5))
    printed = cast(io.StringIO, console.file).getvalue()
    assert "loading embedded:m.gguf…\nembedded:m.gguf loaded in 1.50s" in printed


def test_a_long_planning_stage_is_a_line_every_few_seconds_in_a_log() -> None:
    console = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    lines = LineProgress(console)
    for elapsed, tokens in ((0.0, 0), (1.0, 0), (5.2, 0), (6.0, 40), (10.4, 80)):
        lines(events.Planning("planning with embedded:m.gguf", elapsed, tokens, 1 if tokens else 0))
    printed = cast(io.StringIO, console.file).getvalue().splitlines()
    assert printed == [
        "planning with embedded:m.gguf (0s)…",
        "planning with embedded:m.gguf (5s)…",
        "planning with embedded:m.gguf (10s): 80 tokens, 1 steps so far…",
    ]


def test_a_log_line_is_one_line_however_long() -> None:
    console = Console(file=io.StringIO(), width=80, force_terminal=False, color_system=None)
    lines = LineProgress(console)
    error = "the command exited with status 3: " + "kaboom " * 20
    lines(events.StepRetrying("f", 1, error, 0.4, 1.0))
    printed = cast(io.StringIO, console.file).getvalue().splitlines()
    assert len(printed) == 1
    assert printed[0].endswith("retry in 0.4s")


def test_a_steps_own_stages_are_lines_in_a_log() -> None:
    console = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    lines = LineProgress(console)
    lines(events.CallStarted("s1", "s1.attempt1", "write node (attempt 1)", 1, 0.0, stage=True))
    lines(
        events.CallFinished(
            "s1", "s1.attempt1", "write node (attempt 1)", "failed", 31.0, "no tests ran", 31.0,
            stage=True,
        )
    )  # fmt: skip
    lines(events.CallStarted("s1", "s1.c1", "shout", 1, 0.0))  # a script's call: not a line
    printed = cast(io.StringIO, console.file).getvalue().splitlines()
    assert printed == [
        "  s1: write node (attempt 1)…",
        "  s1: write node (attempt 1) failed in 31.0s: no tests ran",
    ]


def test_a_final_answer_is_shown_while_it_is_written_then_left_to_the_results() -> None:
    organized = organize(plan(step("a")))
    console = Console(file=io.StringIO(), width=80, force_terminal=False, color_system=None)
    view = LiveView(organized, console)
    view(events.StepStarted("a", "work", 1, 0.0))
    view(events.StepOutput("a", 1, "Roses are red,\nviolets", 0.1))
    view(events.StepOutput("a", 1, " are blue", 0.2))
    text = render(view)
    assert "a writing…" in text
    assert "violets are blue" in text
    view(events.StepOutput("a", 2, "A new attempt", 0.3))  # a retry starts the text afresh
    assert "Roses" not in render(view)
    view(events.StepSucceeded("a", 2, 0.4, "A new attempt", 0.4))
    assert "writing…" not in render(view)


def test_the_figures_are_about_the_steps_that_ran_not_those_carried_over() -> None:
    from code_evolver.result import RunResult, RunStatus, StepResult, StepStatus

    organized = organize(plan(step("a"), step("b", "a"), step("c", "a")))
    steps = {
        "a": StepResult("a", "work", StepStatus.SUCCEEDED, 1, duration_s=5.0, isolation="none",
                        carried_over=True),
        "b": StepResult("b", "work", StepStatus.SUCCEEDED, 1, duration_s=1.0, isolation="none"),
        "c": StepResult("c", "work", StepStatus.SUCCEEDED, 1, duration_s=1.0),
    }  # fmt: skip
    result = RunResult("r", RunStatus.SUCCEEDED, organized, steps, 1.0, 2)
    assert result.sum_s == 2.0
    assert result.speedup == 2.0
    assert result.critical_path in (["b"], ["c"])
    assert result.critical_path_s == 1.0
    assert result.unsandboxed == ["b"]


def test_efficiency_counts_the_slots_the_run_was_given() -> None:
    from code_evolver.result import RunResult, RunStatus, StepResult, StepStatus

    organized = organize(plan(*(step(f"s{i}") for i in range(4))))  # four independent steps
    steps = {
        f"s{i}": StepResult(f"s{i}", "work", StepStatus.SUCCEEDED, 1, duration_s=1.0)
        for i in range(4)
    }
    one_slot = RunResult("r", RunStatus.SUCCEEDED, organized, steps, 4.0, 1, max_parallel=1)
    assert one_slot.efficiency == 1.0  # four seconds is the best one slot allows
    assert one_slot.critical_path_s == 1.0
    unlimited = RunResult("r", RunStatus.SUCCEEDED, organized, steps, 4.0, 1)
    assert unlimited.efficiency == 0.25  # without a limit, one second was possible
    assert one_slot.to_json()["max_parallel"] == 1
