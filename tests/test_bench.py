"""The benchmarks keep working (their figures are read by people, not asserted here)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.integration
@pytest.mark.timeout(330)  # the subprocess's own bound (300 s) must be the one that applies
@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("scheduler.py", ("Part A: parallelism", "Part B: scale", "skewed", "random")),
        ("planner.py", ("scripted   first step", "Rules planner:")),
        ("runtime.py", ("call_tools_parallel", "brokered")),
        ("embedded.py", ("threads 1", "+2 busy", "no collapse")),
        ("sandbox.py", ("Part A: spawning", "wide-50", "layered-120", "floor:")),
        ("startup.py", ("evolve --help", "evolve tools", "heavy modules imported:")),
        ("chat.py", ("Prompt ready:", "Follow-up to first step:", "Memory over 40 requests")),
    ],
)
def test_benchmark_quick_run_prints_its_figures(script: str, expected: tuple[str, ...]) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for figure in expected:
        assert figure in proc.stdout


# The shapes part of bench/planner.py: its planning and summarising, without the model.

sys.path.insert(0, str(REPO / "bench"))

import planner as planner_bench  # noqa: E402
from planner import Attempt, Score  # noqa: E402
from shapes import Case, ShapeStep  # noqa: E402

from code_evolver.config import load_config  # noqa: E402
from code_evolver.errors import PlanError  # noqa: E402
from code_evolver.llm.fake import ScriptedBackend  # noqa: E402
from code_evolver.planner.planner import Planner, PlanOutcome  # noqa: E402
from code_evolver.session import Session  # noqa: E402

WRITE = (ShapeStep("content_generator"),)
WRITE_THEN_SUMMARIZE = (ShapeStep("content_generator"), ShapeStep("summarizer", after=(0,)))


def shape_case(
    request: str, kind: str, shape: tuple[ShapeStep, ...], stdin: str | None = None
) -> Case:
    return Case(request=request, kind=kind, shapes=(shape,), stdin=stdin)


def plan_step(step_id: str, tool: str, *deps: str, text: str = "x") -> dict[str, object]:
    return {"step_id": step_id, "tool": tool, "input": text, "params": {}, "depends_on": list(deps)}


def test_shapes_summary_counts_matches_sources_degenerate_plans_and_times() -> None:
    joke = shape_case("write a joke", "single", WRITE)
    story = shape_case("write a story and summarize it", "chain", WRITE_THEN_SUMMARIZE)
    piped = shape_case("summarize this", "single", (ShapeStep("summarizer"),), stdin="text")
    many = [plan_step(f"s{i}", "content_generator", text=str(i)) for i in range(9)]
    attempts = [
        Attempt(joke, 0.001, "rules", (plan_step("a", "content_generator"),)),
        Attempt(
            story,
            4.0,
            "llm",
            (plan_step("a", "content_generator"), plan_step("b", "content_generator")),
            warnings=1,
        ),
        Attempt(story, 30.0, "clauses", tuple(many)),  # a source the bench does not know yet
        Attempt(piped, 2.0, "fallback", (plan_step("a", "content_generator"),), warnings=1),
        Attempt(joke, 1.0, "error", error="PlanError: no planning rule matches this request"),
        Attempt(joke, 120.0, "timeout", error="no plan within 120s"),
    ]
    summary = planner_bench.summarize(attempts)

    assert summary.overall == Score(1, 6)
    assert summary.plain == Score(1, 5)
    assert summary.piped == Score(0, 1)
    assert summary.by_kind == {"single": Score(1, 4), "chain": Score(0, 2)}
    assert summary.sources == {
        "rules": 1, "llm": 1, "clauses": 1, "fallback": 1, "error": 1, "timeout": 1
    }  # fmt: skip
    assert summary.warned == 2
    assert summary.degenerate == {"a repeated step": 1, "over 8 steps": 1}
    assert (summary.median_s, summary.p95_s, summary.max_s) == (3.0, 120.0, 120.0)
    assert [reason for _, reason in summary.failures[:2]] == [
        "tools differ: plan has content_generator x2, expected content_generator, summarizer",
        "9 steps, expected 2",
    ]
    assert [reason for _, reason in summary.failures[-2:]] == [
        "PlanError: no planning rule matches this request",
        "no plan within 120s",
    ]

    lines = planner_bench.shape_report("auto", summary, (1.5, 2.25), verbose=True)
    text = "\n".join(lines)
    assert "accuracy 1/6 (17%)  without piped input 1/5 (20%)  with piped input: 0/1" in text
    assert "by kind: single 1/4 (25%), chain 0/2 (0%)" in text
    assert (
        "median 3.00s  p95 120.00s  max 120.00s  (load average 1.50 at start, 2.25 at end)" in text
    )
    assert "degenerate plans accepted: 2" in text
    assert "accuracy 17% FAIL" in text
    assert "degenerate 2 FAIL (= 0)" in text
    misses = [line for line in lines if line.startswith("  miss ")]
    assert len(misses) == 5
    assert all(len(line) <= planner_bench.CLIP + 2 for line in misses)
    assert "  miss [single] (piped) 'summarize this': " in text
    # Targets are the default planner's; other modes print their figures only.
    assert "targets" not in "\n".join(planner_bench.shape_report("llm", summary, (1.0, 1.0)))


def test_shapes_percentile_is_nearest_rank() -> None:
    assert planner_bench.percentile([5.0], 0.95) == 5.0
    assert planner_bench.percentile([float(i) for i in range(1, 21)], 0.95) == 19.0
    assert planner_bench.percentile([float(i) for i in range(1, 101)], 0.5) == 50.0


def test_shapes_quick_takes_the_first_cases_of_each_kind() -> None:
    cases = [shape_case(f"r{i}", kind, WRITE) for i, kind in enumerate("aabbbab")]
    chosen = planner_bench.quick_cases(cases, 2)
    assert [case.request for case in chosen] == ["r0", "r1", "r2", "r3"]


def test_shapes_planning_counts_errors_and_timeouts_as_failed_attempts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = load_config(REPO / "config.yaml")
    configs = planner_bench.planner_configs(base, ["llm", "rules", "no-such-mode"])
    assert list(configs) == ["llm", "rules"]
    assert "planner no-such-mode skipped: planner.mode:" in capsys.readouterr().out

    story = shape_case("a story, summarized", "chain", WRITE_THEN_SUMMARIZE)
    reply = {"steps": [
        {"step_id": "story", "tool": "content_generator", "input": "Write a story."},
        {"step_id": "short", "tool": "summarizer", "input": "{story}", "depends_on": ["story"]},
    ]}  # fmt: skip

    class Refusing:
        async def plan(self, request: str, *, has_input: bool = False) -> PlanOutcome:
            raise PlanError("no planning rule matches this request")

    class Stalled:
        async def plan(self, request: str, *, has_input: bool = False) -> PlanOutcome:
            await asyncio.sleep(10)
            raise AssertionError("the bound did not apply")

    async def attempts() -> list[Attempt]:
        session = Session(base, backend=ScriptedBackend([json.dumps(reply)]))
        llm = Planner(configs["llm"], session.registry, llm=session.llm)
        done = await planner_bench.plan_cases(llm, [story])
        done += await planner_bench.plan_cases(Refusing(), [story])
        done.append(await planner_bench.plan_case(Stalled(), story, 0.05))
        return done

    planned, unmatched, stalled = asyncio.run(attempts())
    assert (planned.source, planned.error, planned.result()) == ("llm", None, True)
    assert [step["tool"] for step in planned.steps] == ["content_generator", "summarizer"]
    assert unmatched.source == "error"
    assert unmatched.result() == "PlanError: no planning rule matches this request"
    assert stalled.source == "timeout"
    assert stalled.result() == "no plan within 0.05s"
    assert stalled.seconds < 5
