"""Regression tests for the review fixes: each one fails if its fix is reverted.

JSON-safe outputs, stdout kept clean in --json mode, SystemExit and KeyboardInterrupt inside tools,
abandoned tool threads, capped command output, cancellation through run_process, stopping an
executor before it runs, listener errors, literal braces, strict config and plan parsing, command
start failures, broken pipes and SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
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
from hypothesis import given, settings
from hypothesis import strategies as st
from support import Recorder, execute, plan, step

from code_evolver import events
from code_evolver.cli import main_group
from code_evolver.config import ExecutionSettings, load_config, parse_config
from code_evolver.errors import ConfigError, PlanError, ToolFailed
from code_evolver.events import EventBus
from code_evolver.executor import Executor
from code_evolver.organizer import organize
from code_evolver.plan import Plan, load_plan
from code_evolver.processes import run_process
from code_evolver.result import RunStatus, StepStatus
from code_evolver.templating import Ref, escape, parse
from code_evolver.tools.base import output_to_json
from code_evolver.tools.command import CommandTool
from code_evolver.tools.function import FunctionTool
from code_evolver.tools.registry import ToolRegistry
from code_evolver.tools.template import TemplateTool

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config.yaml"
TEXT_REPORT = REPO / "examples" / "plans" / "text_report.json"

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
    module = f"hardening_tools_{uuid.uuid4().hex[:10]}"
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


def write_plan(tmp_path: Path, *steps: dict[str, Any]) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"request": "test", "steps": list(steps)}), encoding="utf-8")
    return path


def invoke_run(tmp_path: Path, *steps: dict[str, Any], as_json: bool = True) -> Result:
    config = function_config(tmp_path)
    args = ["run", str(write_plan(tmp_path, *steps)), "--config", str(config)]
    return CliRunner().invoke(
        main_group, [*args, "--json"] if as_json else args, catch_exceptions=False
    )


def function_step(step_id: str, tool: str) -> dict[str, Any]:
    return {"step_id": step_id, "tool": tool, "input": step_id}


# ---------------------------------------------------------- 1. outputs are strict JSON


def test_dates_in_a_tool_output_become_iso_text() -> None:
    assert output_to_json({"when": datetime.date(2024, 1, 2)}) == {"when": "2024-01-02"}
    tools = {"work": FunctionTool("work", lambda text: {"when": datetime.date(2024, 1, 2)})}
    result = execute(plan(step("a")), tools)
    assert result.steps["a"].output == {"when": "2024-01-02"}


def test_nan_output_fails_the_step_without_retries() -> None:
    with pytest.raises(ToolFailed, match="not JSON") as caught:
        output_to_json({"x": float("nan")})
    assert not caught.value.retryable
    tools = {"work": FunctionTool("work", lambda text: {"x": float("nan")}, retries=2)}
    result = execute(plan(step("a")), tools)
    a = result.steps["a"]
    assert a.status is StepStatus.FAILED
    assert "not JSON" in (a.error or "")
    assert a.attempts == 1


@pytest.mark.parametrize("value", ["bad \ud800 text", {"s": "bad \ud800 text"}, ["\ud800"]])
def test_lone_surrogates_are_replaced(value: Any) -> None:
    output = output_to_json(value)
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    text.encode("utf-8")
    assert "\ud800" not in text
    tools = {"work": FunctionTool("work", lambda _: value)}
    result = execute(plan(step("a")), tools)
    assert result.steps["a"].output == output


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


# ------------------------------------------------- 2. --json keeps tool prints off stdout


def test_json_mode_sends_tool_prints_to_stderr(tmp_path: Path) -> None:
    result = invoke_run(tmp_path, function_step("c", "chatty"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # exactly one JSON document
    assert doc["steps"]["c"]["output"] == "quiet"
    assert "debug" not in result.stdout
    assert "debug" in result.stderr


# ----------------------------------------- 3. SystemExit / KeyboardInterrupt in a tool


def _exit(text: str) -> str:
    sys.exit(3)


async def _exit_async(text: str) -> str:
    await asyncio.sleep(0)
    sys.exit(3)


def _interrupt(text: str) -> str:
    raise KeyboardInterrupt


async def _interrupt_async(text: str) -> str:
    await asyncio.sleep(0)
    raise KeyboardInterrupt


def test_exit_and_keyboard_interrupt_in_tools_fail_only_their_step() -> None:
    rec = Recorder()
    tools = {
        "work": rec.tool(),
        "exit": FunctionTool("exit", _exit),
        "exit_async": FunctionTool("exit_async", _exit_async),
        "interrupt": FunctionTool("interrupt", _interrupt),
        "interrupt_async": FunctionTool("interrupt_async", _interrupt_async),
    }
    bad = ("exit", "exit_async", "interrupt", "interrupt_async")
    the_plan = plan(*(step(name, tool=name) for name in bad), step("ok1"), step("ok2", "ok1"))
    result = execute(the_plan, tools)
    assert result.status is RunStatus.FAILED
    for name in bad:
        assert result.steps[name].status is StepStatus.FAILED, name
    assert "SystemExit" in (result.steps["exit"].error or "")
    assert "KeyboardInterrupt" in (result.steps["interrupt_async"].error or "")
    assert result.steps["ok2"].output == "<<ok1>>"


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


# ----------------------------------------- 4. an abandoned tool thread ends with the process

SLEEPY_SCRIPT = """
import sys, time
import code_evolver
result = code_evolver.run(
    {"steps": [{"step_id": "s", "tool": "sleepy", "input": "x"}]},
    config=sys.argv[1],
    tools={"sleepy": lambda text: time.sleep(30)},
    timeout_s=0.5,
)
print(result.steps["s"].status.value, round(result.wall_s, 2))
"""


@pytest.mark.integration
def test_timed_out_sync_tool_does_not_keep_the_process_alive() -> None:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SLEEPY_SCRIPT, str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    status, wall = done.stdout.split()
    assert status == "timed_out"
    assert float(wall) < 3
    assert took < 10


# ----------------------------------------------------------- 5. command output is capped


@pytest.mark.integration
def test_run_process_stops_a_runaway_writer() -> None:
    began = time.monotonic()
    result = asyncio.run(run_process(["yes"], max_stdout=1_000_000))
    assert result.overflowed
    assert len(result.stdout) == 1_000_000
    assert time.monotonic() - began < 5


@pytest.mark.integration
def test_runaway_command_fails_its_step_without_retries() -> None:
    # CommandTool always uses the library cap (32 MiB); `yes` passes it in well under a second.
    tools = {"work": CommandTool("work", ["yes"], retries=2)}
    began = time.monotonic()
    result = execute(plan(step("a")), tools)
    a = result.steps["a"]
    assert a.status is StepStatus.FAILED
    assert "more than" in (a.error or "")
    assert a.attempts == 1
    assert time.monotonic() - began < 10


# ------------------------------------------------- 6. run_process never swallows a cancel


@pytest.mark.integration
def test_cancel_while_waiting_for_pipes_held_by_another_session(tmp_path: Path) -> None:
    # The background sleep leaves the process group (setsid) but keeps stdout open, so after sh
    # exits run_process waits for the pipes; a cancel arriving then must still propagate.
    pidfile = tmp_path / "escaped.pid"
    script = (
        f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 3' & "
        f"while [ ! -s {pidfile} ]; do sleep 0.01; done; echo hi"
    )

    async def scenario() -> float:
        task = asyncio.ensure_future(run_process(["sh", "-c", script]))
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
        began = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - began

    try:
        assert asyncio.run(scenario()) < 1.0
    finally:
        if pidfile.exists() and pidfile.read_text().strip():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


# --------------------------------------------- 7. stopping an executor before it runs


@pytest.mark.parametrize(
    ("stop", "status"),
    [
        (lambda ex: ex.interrupt(), RunStatus.INTERRUPTED),
        (lambda ex: ex.stop(RunStatus.CANCELLED), RunStatus.CANCELLED),
    ],
)
def test_stop_before_run_cancels_every_step(stop: Any, status: RunStatus) -> None:
    rec = Recorder()
    tools = {"work": rec.tool()}
    the_plan = plan(step("a"), step("b", "a"), step("c"))
    executor = Executor(organize(the_plan, tools), tools, ExecutionSettings())
    stop(executor)
    result = asyncio.run(asyncio.wait_for(executor.run(), 5))
    assert result.status is status
    assert {s.status for s in result.steps.values()} == {StepStatus.CANCELLED}
    assert rec.starts == []


# ----------------------------------------------------------------- 8, 9. the event bus


def test_a_listener_error_does_not_poison_the_next_run() -> None:
    rec = Recorder()
    tools = {"work": rec.tool()}
    bus = EventBus()

    def broken(event: events.Event) -> None:
        raise RuntimeError("listener broke")

    unsubscribe = bus.subscribe(broken)
    first = Executor(organize(plan(step("a")), tools), tools, ExecutionSettings(), bus=bus)
    with pytest.raises(RuntimeError, match="listener broke"):
        asyncio.run(first.run())
    assert rec.ended_ok() == {"a"}  # the run finished before the error was raised
    unsubscribe()
    seen: list[events.Event] = []
    bus.subscribe(seen.append)
    second = Executor(organize(plan(step("b")), tools), tools, ExecutionSettings(), bus=bus)
    result = asyncio.run(second.run())
    assert result.ok
    assert isinstance(seen[-1], events.RunFinished)


def test_a_listener_unsubscribing_itself_does_not_hide_the_event_from_the_next() -> None:
    bus = EventBus()
    received: list[events.Event] = []

    def once(event: events.Event) -> None:
        unsubscribe()

    unsubscribe = bus.subscribe(once)
    bus.subscribe(received.append)
    first = events.StepSkipped("a", "b", 0.0)
    second = events.StepSkipped("c", "d", 1.0)
    bus.emit(first)
    bus.emit(second)
    assert received == [first, second]


# ------------------------------------------------------------------- 10. templating


def test_json_and_go_templates_pass_through_step_inputs() -> None:
    json_text = '{"user": {"tags": [{"k": 1}]}}'
    go_text = "{{ .Values.x }} and {{.Values.y}}"
    tools = {"combine": TemplateTool("combine")}
    the_plan = plan(
        step("json", tool="combine", input=json_text),
        step("go", tool="combine", input=go_text),
    )
    result = execute(the_plan, tools)
    assert result.outputs == {"json": json_text, "go": go_text}
    assert result.organized.warnings == ()


def test_doubled_braces_render_literally_and_add_no_dependency() -> None:
    tools = {"combine": TemplateTool("combine")}
    the_plan = plan(
        step("step1", tool="combine", input="one"),
        step("literal", tool="combine", input="{{step1}}"),
        step("both", tool="combine", input="{{step1}} is {step1}"),
    )
    organized = organize(the_plan, tools)
    assert organized.dependencies("literal") == []
    assert organized.dependencies("both") == ["step1"]
    result = execute(the_plan, tools)
    assert result.steps["literal"].output == "{step1}"
    assert result.steps["both"].output == "{step1} is one"


def _no_refs(ref: Ref) -> str:
    raise AssertionError(f"escaped text has a placeholder: {ref}")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet="{}ab1._- \n"),
        st.lists(st.sampled_from(["{", "}", "{{", "}}", "a", "b.c", ".", "-", " "])).map("".join),
    )
)
def test_escape_then_parse_renders_the_text_back(text: str) -> None:
    assert parse(escape(text)).render(_no_refs) == text


# ------------------------------------------------------------------ 11. config and plans


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"# caf\xe9 in latin-1\ntools: {}\n")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(path)


def test_yaml_dates_in_tool_params_are_rejected() -> None:
    text = "tools:\n  c:\n    kind: template\n    params: {since: 2020-01-01}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert any(
        "tools.c.params" in p and "params must be JSON values" in p for p in caught.value.problems
    )


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_infinite_execution_settings_are_rejected(value: str) -> None:
    with pytest.raises(ConfigError, match=r"execution\.retry_backoff_s"):
        parse_config(f"execution: {{retry_backoff_s: {value}}}\n")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_plan_json_constants_are_rejected(constant: str) -> None:
    text = (
        '{"steps": [{"step_id": "a", "tool": "t", "input": "x", '
        f'"params": {{"n": {constant}}}}}]}}'
    )
    with pytest.raises(PlanError, match="not a JSON number"):
        Plan.from_json(text)


def test_deeply_nested_plan_json_is_a_plan_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="nested too deeply"):
        Plan.from_json("[" * 100_000)
    path = tmp_path / "deep.json"
    path.write_text('{"steps": ' + "[" * 100_000, encoding="utf-8")
    with pytest.raises(PlanError):
        load_plan(path)


def test_plan_file_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    data = {"steps": [{"step_id": "a", "tool": "t", "input": "x"}]}
    path.write_text("\ufeff" + json.dumps(data), encoding="utf-8")
    assert load_plan(path).step_ids == ["a"]


# ----------------------------------------------------------------- 12. command start-up


def test_missing_command_cwd_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("tools:\n  lister:\n    kind: command\n    command: [ls]\n    cwd: nope\n")
    with pytest.raises(ConfigError) as caught:
        ToolRegistry.from_config(load_config(path))
    assert any("tools.lister.cwd" in p for p in caught.value.problems)


@pytest.mark.integration  # starts processes
def test_an_argument_too_long_to_start_fails_once() -> None:
    tools = {"work": CommandTool("work", ["echo", "{input}"], retries=2)}
    result = execute(plan(step("a", input="x" * 3_000_000)), tools)
    a = result.steps["a"]
    assert a.status is StepStatus.FAILED
    assert "cannot start" in (a.error or "")
    assert a.attempts == 1


# --------------------------------------------------------------------- 13. broken pipes


@pytest.mark.integration
@pytest.mark.parametrize("flags", [[], ["--json"]])
def test_closed_stdout_is_not_an_error(flags: list[str]) -> None:
    # The reader is gone before evolve writes anything, so every write meets a broken pipe
    # (`evolve run ... | head -0`); reading a line first could leave the rest in the pipe buffer.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "code_evolver",
            "run",
            str(TEXT_REPORT),
            "--config",
            str(CONFIG),
            *flags,
        ],
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


# ------------------------------------------------------------------------- 14. SIGTERM


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
        [sys.executable, "-m", "code_evolver", "run", str(plan_file), "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        sleeper = int(pidfile.read_text())
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{sleeper}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{sleeper}"), "the step's process outlived the run"


# ---------------------------------------------------------------- gaps found by these tests


def test_huge_numbers_in_plans_are_rejected() -> None:
    with pytest.raises(PlanError, match="too large for a number"):
        Plan.from_json('{"steps":[{"step_id":"a","tool":"t","input":"x","params":{"n":1e999}}]}')


def test_deeply_nested_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_config("[" * 100_000)


@pytest.mark.integration  # starts processes
def test_a_nul_byte_in_an_argument_fails_once() -> None:
    tool = CommandTool("w", ["echo", "{input}"], retries=2)
    result = execute(plan(step("a", tool="w", input="x\0y")), {"w": tool})
    assert result.steps["a"].attempts == 1
    assert "cannot start echo" in (result.steps["a"].error or "")


@pytest.mark.integration  # starts processes
def test_the_output_cap_is_per_tool_and_named_in_the_error() -> None:
    tool = CommandTool("yes", ["yes"], max_stdout=10_000)
    result = execute(plan(step("a", tool="yes")), {"yes": tool})
    assert "more than 10,000 bytes" in (result.steps["a"].error or "")


def test_a_custom_tool_raising_system_exit_fails_only_its_step() -> None:
    class Exits(TemplateTool):
        async def run(self, call: Any) -> Any:
            raise SystemExit(3)

    tools = {"exit": Exits("exit"), "work": Recorder().tool()}
    result = execute(plan(step("a", tool="exit"), step("b")), tools)
    assert result.steps["a"].status is StepStatus.FAILED
    assert result.steps["b"].ok


@pytest.mark.integration
def test_a_closed_stderr_does_not_lose_the_results() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "code_evolver",
            "run",
            str(REPO / "examples/plans/text_report.json"),
            "--config",
            str(REPO / "config.yaml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    proc.stderr.close()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"24 words on 3 lines." in out
