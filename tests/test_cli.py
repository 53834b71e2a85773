"""The `evolve` command line: outputs and summaries, --json as one clean document, exit codes,
one-line errors, plan and tool listings, and ending well on Ctrl-C, SIGTERM and closed pipes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from support import processes_with, wait_until_gone

from code_evolver.cli import cli, main_group

REPO = Path(__file__).resolve().parent.parent
CONFIG = str(REPO / "config.yaml")
TEXT_REPORT = str(REPO / "examples" / "plans" / "text_report.json")
RUN_TEXT_REPORT = [sys.executable, "-m", "code_evolver", "run", TEXT_REPORT, "--config", CONFIG]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main_group, list(args), catch_exceptions=False)


def write_plan(tmp_path: Path, *steps: dict[str, Any], name: str = "plan.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"request": "test", "steps": list(steps)}))
    return str(path)


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert "Traceback" not in result.stderr


# Function tools for the CLI tests, in a module written beside a tmp config.yaml. The lone
# surrogate is written as an escape so that the module itself is valid UTF-8.
TOOLS_MODULE = r"""
import asyncio, datetime, sys

def dated(text):
    return {"when": datetime.date(2024, 1, 2)}

def nan(text):
    return {"x": float("nan")}

def surrogate(text):
    return "bad \ud800 text"

def chatty(text):
    print("debug")
    return "quiet"

def exits(text):
    sys.exit(3)

async def exits_async(text):
    await asyncio.sleep(0)
    sys.exit(3)

def interrupts(text):
    raise KeyboardInterrupt

async def interrupts_async(text):
    await asyncio.sleep(0)
    raise KeyboardInterrupt
"""
FUNCTIONS = (
    "dated",
    "nan",
    "surrogate",
    "chatty",
    "exits",
    "exits_async",
    "interrupts",
    "interrupts_async",
)


def function_config(tmp_path: Path) -> Path:
    """A config.yaml whose function tools live in a module beside it.

    The module name is unique per test: the CLI runs in-process, and ``import_function`` would
    otherwise get another test's module from ``sys.modules``.
    """
    module = f"cli_tools_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(TOOLS_MODULE, encoding="utf-8")
    tools = "\n".join(
        f"  {name}: {{kind: function, function: '{module}:{name}', retries: 2}}"
        for name in FUNCTIONS
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        f"execution: {{retry_backoff_s: 0.001}}\ntools:\n  combine: {{kind: template}}\n{tools}\n",
        encoding="utf-8",
    )
    return config


def invoke_run(tmp_path: Path, *steps: dict[str, Any], as_json: bool = True) -> Result:
    """`evolve run` of these steps in-process, with the function tools above."""
    config = function_config(tmp_path)
    args = ["run", write_plan(tmp_path, *steps), "--config", str(config)]
    return CliRunner().invoke(
        main_group, [*args, "--json"] if as_json else args, catch_exceptions=False
    )


def function_step(step_id: str, tool: str) -> dict[str, Any]:
    return {"step_id": step_id, "tool": tool, "input": step_id}


@pytest.mark.integration  # runs command tools
def test_run_example_plan_shows_outputs_and_summary() -> None:
    result = invoke("run", TEXT_REPORT, "--config", CONFIG)
    assert result.exit_code == 0, result.output
    assert "24 words on 3 lines." in result.stdout
    assert "EVERY INDEPENDENT STEP" in result.stdout
    assert "✓ succeeded: 6 succeeded" in result.stdout
    for figure in (
        "ran in",
        "step time",
        "speedup",
        "critical path",
        "efficiency",
        "peak concurrency",
    ):
        assert figure in result.stdout
    # Without a terminal, progress is one line per step on stderr.
    assert "✓ report" in result.stderr


@pytest.mark.integration  # runs command tools
def test_run_json_is_one_document_with_the_contract_fields() -> None:
    result = invoke("run", TEXT_REPORT, "--config", CONFIG, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["status"] == "succeeded"
    for key in ("run_id", "wall_s", "speedup", "critical_path_s"):
        assert key in doc
    assert doc["model"] is None  # no step asked a model
    assert list(doc["steps"]) == ["text", "words", "lines", "shout", "vocabulary", "report"]
    report = doc["steps"]["report"]
    assert report["status"] == "succeeded"
    assert report["output"].startswith("24 words")
    assert report["attempts"] == 1
    assert report["error"] is None
    assert report["started_at"]
    assert report["finished_at"]
    assert result.stderr == ""


@pytest.mark.integration  # runs command tools
def test_failed_step_exits_1_and_keeps_the_rest(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        {"step_id": "ok", "tool": "word_count", "input": "a b"},
        {"step_id": "bad", "tool": "delay", "input": "x", "params": {"seconds": "soon"}},
        {"step_id": "after", "tool": "combine", "input": "{bad}"},
    )
    result = invoke("run", plan, "--config", CONFIG, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["status"] == "failed"
    assert doc["steps"]["ok"]["output"] == "2"
    assert "ValueError" in doc["steps"]["bad"]["error"]
    assert doc["steps"]["after"]["status"] == "skipped"
    rich = invoke("run", plan, "--config", CONFIG)
    assert rich.exit_code == 1
    assert "✗ failed: 1 succeeded, 1 failed, 1 skipped" in rich.stdout
    assert "warning: step 'after' uses {bad} but did not list 'bad'" in rich.stderr


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [
                {"step_id": "a", "tool": "combine", "input": "{b}", "depends_on": ["b"]},
                {"step_id": "b", "tool": "combine", "input": "{a}", "depends_on": ["a"]},
            ],
            "error: dependency cycle: a -> b -> a",
        ),
        (
            [{"step_id": "a", "tool": "word_cont", "input": "x"}],
            "error: step 'a' uses unknown tool 'word_cont' (did you mean 'word_count'?)",
        ),
        (
            [
                {"step_id": "a", "tool": "combine", "input": "x"},
                {"step_id": "a", "tool": "combine", "input": "y"},
            ],
            "error: duplicate step_id 'a'",
        ),
        (
            [{"step_id": "a", "tool": "combine", "input": "x", "depends_on": ["a"]}],
            "error: step 'a' depends on itself",
        ),
    ],
)
def test_plan_errors_exit_2_with_one_line_each(
    tmp_path: Path, steps: list[dict[str, Any]], message: str
) -> None:
    result = invoke("run", write_plan(tmp_path, *steps), "--config", CONFIG)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""
    no_traceback(result)


def test_bad_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"steps": [\n  {"step_id": "a" "tool": "x"}]}')
    result = invoke("run", str(path), "--config", CONFIG)
    assert result.exit_code == 2
    assert "broken.json:2:19: invalid JSON: Expecting ',' delimiter" in result.stderr


def test_missing_plan_file(tmp_path: Path) -> None:
    result = invoke("run", str(tmp_path / "nope.json"), "--config", CONFIG)
    assert result.exit_code == 2
    assert "cannot read plan: No such file or directory" in result.stderr


def test_broken_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("tools:\n  t: {kind: command, command: [echo], timeout_s: -1}\n")
    result = invoke("tools", "--config", str(config))
    assert result.exit_code == 2
    assert "tools.t.timeout_s: Input should be greater than 0" in result.stderr
    no_traceback(result)


def test_json_mode_errors_are_json_too(tmp_path: Path) -> None:
    result = invoke("run", str(tmp_path / "nope.json"), "--config", CONFIG, "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["status"] == "error"
    assert "cannot read plan" in doc["error"]


def test_execution_flags_apply(tmp_path: Path) -> None:
    steps = [
        {"step_id": f"s{i}", "tool": "delay", "input": str(i), "params": {"seconds": 0.05}}
        for i in range(6)
    ]
    plan = write_plan(tmp_path, *steps)
    doc = json.loads(
        invoke("run", plan, "--config", CONFIG, "--json", "--max-parallel", "2").stdout
    )
    assert doc["peak_concurrency"] == 2
    doc = json.loads(
        invoke(
            "run",
            plan,
            "--config",
            CONFIG,
            "--json",
            "--scheduling",
            "waves",
            "--on-failure",
            "fail_fast",
        ).stdout
    )
    assert doc["status"] == "succeeded"
    bad = invoke("run", plan, "--max-parallel", "0")
    assert bad.exit_code == 2
    assert "Invalid value for '--max-parallel'" in bad.stderr


def test_plan_show_prints_waves_without_running(tmp_path: Path) -> None:
    result = invoke("plan", "--show", TEXT_REPORT, "--config", CONFIG)
    assert result.exit_code == 0
    out = result.stdout
    assert "6 steps in 3 waves" in out
    assert "wave 2 (×4 in parallel)" in out
    assert out.index("wave 1") < out.index("words  word_count") < out.index("wave 3")
    assert out.index("wave 3") < out.index("report  combine")


def test_plan_show_json_is_the_completed_plan_and_runs(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        {"step_id": "a", "tool": "combine", "input": "x"},
        {"step_id": "b", "tool": "combine", "input": "{a}"},
    )
    shown = invoke("plan", "--show", plan, "--config", CONFIG, "--json")
    doc = json.loads(shown.stdout)
    assert doc["steps"][1]["depends_on"] == ["a"]
    assert "warning: step 'b' uses {a}" in shown.stderr
    saved = tmp_path / "saved.json"
    saved.write_text(shown.stdout)
    again = invoke("run", str(saved), "--config", CONFIG, "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["steps"]["b"]["output"] == "x"


def test_plan_needs_a_file_or_schema() -> None:
    result = invoke("plan")
    assert result.exit_code == 2
    assert "--show PLAN_FILE" in result.stderr
    schema = json.loads(invoke("plan", "--schema").stdout)
    assert "steps" in schema["properties"]
    with_tools = json.loads(invoke("plan", "--schema", "--config", CONFIG).stdout)
    assert "combine" in with_tools["$defs"]["Step"]["properties"]["tool"]["enum"]


def test_tools_lists_configured_tools() -> None:
    result = invoke("tools", "--config", CONFIG)
    assert result.exit_code == 0
    for name in ("combine", "word_count", "delay"):
        assert name in result.stdout
    listing = json.loads(invoke("tools", "--config", CONFIG, "--json").stdout)
    assert listing["word_count"]["kind"] == "command"
    assert listing["delay"]["default_params"] == {"seconds": 1}


def test_help_and_version() -> None:
    assert "run a saved plan" in invoke("--help").stdout
    assert "--on-failure" in invoke("run", "--help").stdout
    assert "evolve, version" in invoke("--version").stdout


def _options_in(help_text: str) -> set[str]:
    return {word.rstrip(",") for word in help_text.split() if word.startswith("--")}


def test_an_option_before_a_command_that_does_not_use_it_is_named() -> None:
    listed = invoke("--max-parallel", "3", "--planner", "rules", "tools", "--config", CONFIG)
    assert listed.exit_code == 0
    assert (
        "warning: --planner, --max-parallel do nothing for `evolve tools` "
        "(`evolve tools --help` lists its options)"
    ) in listed.stderr
    used = invoke("--json", "--config", CONFIG, "tools")
    assert used.exit_code == 0
    assert "warning" not in used.stderr
    below = invoke("--full", "runs", "show", "nope")  # `runs show` takes --full
    assert "does nothing" not in below.stderr
    listing = invoke("--full", "runs")  # the listing does not
    assert "warning: --full does nothing for `evolve runs`" in listing.stderr


def test_each_help_lists_the_options_it_uses() -> None:
    request = {"--planner", "--no-cache", "--scheduling", "--on-failure", "--input", "--full"}
    group = invoke("--help").stdout
    assert request <= _options_in(group)
    assert 'evolve "write a joke and translate it to french and spanish"' in group
    assert _options_in(invoke("tools", "--help").stdout) == {"--config", "--json", "--help"}
    doctor = _options_in(invoke("doctor", "--help").stdout)
    assert doctor == {"--config", "--backend", "--model", "--endpoint", "--json", "--help"}
    plan = _options_in(invoke("plan", "--help").stdout)
    assert {"--planner", "--no-cache", "--input"} <= plan
    assert not {"--scheduling", "--max-parallel", "--full"} & plan
    run = _options_in(invoke("run", "--help").stdout)
    assert {"--scheduling", "--on-failure", "--max-parallel", "--input", "--full"} <= run
    assert not {"--planner", "--no-cache"} & run


@pytest.mark.parametrize("where", ["before", "after"])
def test_request_and_run_options_work_before_or_after(tmp_path: Path, where: str) -> None:
    def args(options: list[str], *command: str) -> list[str]:
        return [*options, *command] if where == "before" else [*command, *options]

    flags = ["--planner", "rules", "--no-cache", "--config", CONFIG, "--json"]
    asked = CliRunner().invoke(
        main_group, args(flags, "combine these:", "a", "b"), catch_exceptions=False
    )
    assert asked.exit_code == 0, asked.stderr
    assert json.loads(asked.stdout)["planner"]["source"] == "rules"
    plan = write_plan(tmp_path, {"step_id": "a", "tool": "combine", "input": "x"})
    flags = ["--scheduling", "waves", "--on-failure", "fail_fast", "--config", CONFIG, "--json"]
    ran = invoke(*args(flags, "run", plan))
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "succeeded"


@pytest.mark.integration  # runs command tools
def test_cli_function_returns_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["run", TEXT_REPORT, "--config", CONFIG, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"
    assert cli(["run", str(tmp_path / "missing.json")]) == 2
    assert cli(["run"]) == 2  # missing PLAN_FILE
    assert cli(["--help"]) == 0


@pytest.mark.integration
def test_ctrl_c_exits_130_keeps_finished_work_and_leaves_no_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "hang.pid"
    config = tmp_path / "config.yaml"
    config.write_text(
        "tools:\n"
        "  combine: {kind: template}\n"
        "  hang:\n"
        "    kind: command\n"
        "    command: [python3, -c, \"import os, sys, time; open(sys.argv[1], 'w')"
        ".write(str(os.getpid())); time.sleep(600)\", '{params.pidfile}']\n"
    )
    plan = write_plan(
        tmp_path,
        {"step_id": "quick", "tool": "combine", "input": "finished before Ctrl-C"},
        {"step_id": "slow", "tool": "hang", "input": "", "params": {"pidfile": str(pidfile)}},
        {"step_id": "after", "tool": "combine", "input": "{slow}"},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "code_evolver", "run", plan, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(str(pidfile)), "the hanging command is not running"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "finished before Ctrl-C" in stdout
    assert "interrupted" in stdout
    assert "Traceback" not in stderr
    assert wait_until_gone(str(pidfile)) == [], "the hanging command outlived the run"


@pytest.mark.integration  # a real evolve process, interrupted twice
def test_a_second_ctrl_c_leaves_at_once_and_no_run_running(tmp_path: Path) -> None:
    started = tmp_path / "started"
    (tmp_path / "stubborn_tools.py").write_text(
        "import asyncio\n"
        "from pathlib import Path\n"
        "async def stubborn(text):\n"
        f"    Path({str(started)!r}).write_text('yes')\n"
        "    try:\n"
        "        await asyncio.sleep(600)\n"
        "    except asyncio.CancelledError:\n"
        "        await asyncio.sleep(30)  # winds down slowly: the graceful stop waits\n"
        "        raise\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text("tools:\n  stubborn: {kind: function, function: 'stubborn_tools:stubborn'}\n")
    plan = write_plan(tmp_path, {"step_id": "slow", "tool": "stubborn", "input": ""})
    env = {**os.environ, "EVOLVE_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "code_evolver", "run", plan, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # a graceful stop: it waits for the step
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)  # enough: leave at once
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    listed = subprocess.run(
        [sys.executable, "-m", "code_evolver", "runs", "--json"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert [run["status"] for run in json.loads(listed.stdout)] == ["interrupted"]


# ----------------------------------------------------------------- awkward tool outputs


def test_run_json_prints_valid_json_for_awkward_outputs(tmp_path: Path) -> None:
    result = invoke_run(
        tmp_path,
        function_step("dated", "dated"),
        function_step("nan", "nan"),
        function_step("surrogate", "surrogate"),
    )
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    steps = doc["steps"]
    assert steps["dated"]["output"] == {"when": "2024-01-02"}
    assert steps["nan"]["status"] == "failed"
    assert "not JSON" in steps["nan"]["error"]
    assert steps["nan"]["attempts"] == 1
    assert steps["surrogate"]["status"] == "succeeded"
    assert steps["surrogate"]["output"].startswith("bad ")
    assert "\ud800" not in steps["surrogate"]["output"]


def test_json_mode_sends_tool_prints_to_stderr(tmp_path: Path) -> None:
    result = invoke_run(tmp_path, function_step("c", "chatty"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # exactly one JSON document
    assert doc["steps"]["c"]["output"] == "quiet"
    assert "debug" not in result.stdout
    assert "debug" in result.stderr


@pytest.mark.parametrize("tool", ["exits", "exits_async", "interrupts", "interrupts_async"])
def test_cli_exit_code_is_not_the_tools(tmp_path: Path, tool: str) -> None:
    result = invoke_run(
        tmp_path,
        function_step("bad", tool),
        {"step_id": "ok", "tool": "combine", "input": "still here"},
        as_json=False,
    )
    assert result.exit_code == 1, result.output
    assert "still here" in result.stdout


# ------------------------------------------------------------------------ broken pipes


@pytest.mark.integration
@pytest.mark.parametrize("flags", [[], ["--json"]])
def test_closed_stdout_is_not_an_error(flags: list[str]) -> None:
    # The reader is gone before evolve writes anything, so every write meets a broken pipe
    # (`evolve run ... | head -0`); reading a line first could leave the rest in the pipe buffer.
    proc = subprocess.Popen(
        [*RUN_TEXT_REPORT, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr


@pytest.mark.integration
def test_head_one_keeps_exit_status_zero() -> None:
    command = (
        f"{sys.executable} -m code_evolver run {TEXT_REPORT} --config {CONFIG} 2>&1 "
        '| head -1 >/dev/null; echo "${PIPESTATUS[0]}"'
    )
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.stdout.strip() == "0", done.stderr


@pytest.mark.integration
def test_a_closed_stderr_does_not_lose_the_results() -> None:
    proc = subprocess.Popen(
        RUN_TEXT_REPORT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    proc.stderr.close()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"24 words on 3 lines." in out


# ----------------------------------------------------------------------------- SIGTERM


@pytest.mark.integration
def test_sigterm_exits_130_and_kills_the_running_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            tools:
              sleeper:
                kind: command
                command:
                  - python3
                  - -c
                  - |
                    import os, sys, time
                    open(sys.argv[1], "w").write(str(os.getpid()))
                    time.sleep(60)
                  - "{params.pidfile}"
            """
        )
    )
    plan_file = write_plan(
        tmp_path,
        {"step_id": "s", "tool": "sleeper", "input": "", "params": {"pidfile": str(pidfile)}},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "code_evolver", "run", plan_file, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_with(str(pidfile)), "the step's process is not running"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert wait_until_gone(str(pidfile)) == [], "the step's process outlived the run"


def test_json_runs_show_progress_only_to_a_person() -> None:
    from rich.console import Console

    from code_evolver.cli.terminal import progress_wanted

    def console(terminal: bool) -> Console:
        return Console(file=io.StringIO(), force_terminal=terminal)

    assert progress_wanted(True, console(terminal=True))  # stdout is data; stderr a person
    assert not progress_wanted(True, console(terminal=False))  # a log or a pipe: data only
    assert progress_wanted(False, console(terminal=False))


def test_a_usage_error_with_json_still_prints_one_json_document(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli(["run", TEXT_REPORT, "--max-parallel", "0", "--json"])
    captured = capsys.readouterr()
    assert code == 2
    document = json.loads(captured.out)
    assert document["status"] == "error"
    assert "--max-parallel" in document["error"]
    assert "Invalid value for '--max-parallel'" in captured.err  # and the usage on stderr
