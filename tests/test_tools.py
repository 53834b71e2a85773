"""Tools that run in-process: template and function tools, outputs made strict JSON, a tool
that raises SystemExit or KeyboardInterrupt, sync functions in worker threads, the registry.

Command tools start processes and are tested in test_tools_command.py.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support import Recorder, execute, plan, run_tool, step

from code_evolver.errors import StepError, ToolFailed, ToolNotFound
from code_evolver.result import RunStatus, StepStatus
from code_evolver.tools.base import ToolCall, output_to_json
from code_evolver.tools.function import FunctionTool
from code_evolver.tools.registry import ToolRegistry, as_tool
from code_evolver.tools.template import TemplateTool

CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"


def test_template_returns_its_input() -> None:
    assert run_tool(TemplateTool("combine"), "joined text") == "joined text"


def test_function_sync_async_and_params() -> None:
    def shout(text: str, times: int = 1) -> str:
        """Shouts its input."""
        return text.upper() * int(times)

    async def count(text: str) -> dict[str, int]:
        return {"chars": len(text)}

    sync_tool = FunctionTool("shout", shout)
    assert sync_tool.description == "Shouts its input."
    assert run_tool(sync_tool, "ab", times=2) == "ABAB"
    assert run_tool(FunctionTool("count", count), "abc") == {"chars": 3}


def test_sync_functions_run_in_worker_threads_in_parallel() -> None:
    import threading
    import time

    barrier = threading.Barrier(10, timeout=5)

    def meet(text: str) -> str:
        barrier.wait()  # deadlocks unless all ten run at once
        time.sleep(0.01)
        return text

    tool = FunctionTool("meet", meet)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(tool.run(ToolCall(str(i))) for i in range(10))))

    assert asyncio.run(main()) == [str(i) for i in range(10)]


def test_function_exceptions_become_tool_failures() -> None:
    def broken(text: str) -> str:
        raise ValueError("bad input")

    with pytest.raises(ToolFailed, match="ValueError: bad input") as failed:
        run_tool(FunctionTool("broken", broken))
    line = broken.__code__.co_firstlineno + 1
    assert str(failed.value).endswith(f" (at test_tools.py:{line} in broken)")  # where to look

    def deep(text: str) -> str:
        return {"a": "1"}["deep " + text]  # raised by the tool's own line, not the library's

    with pytest.raises(ToolFailed, match=r"KeyError: 'deep x' \(at test_tools.py:\d+ in deep\)"):
        run_tool(FunctionTool("deep", deep), "x")

    def strict(text: str) -> str:
        raise StepError("mine", retryable=False)

    with pytest.raises(StepError, match="mine") as info:
        run_tool(FunctionTool("strict", strict))
    assert not info.value.retryable


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s", "s"),
        ({"a": 1}, {"a": 1}),
        ([1], [1]),
        ((1, 2), [1, 2]),
        (None, ""),
        (3, "3"),
        (True, "true"),
        (Path("/x"), "/x"),
    ],
)
def test_outputs_are_normalized(value: object, expected: object) -> None:
    assert output_to_json(value) == expected


def test_registry_lookup_suggests_and_accepts_callables() -> None:
    registry = ToolRegistry({"translator": TemplateTool("translator")})
    with pytest.raises(
        ToolNotFound, match="unknown tool 'translater' \\(did you mean 'translator'\\?\\)"
    ):
        registry["translater"]
    assert as_tool("f", len).kind == "function"
    with pytest.raises(TypeError, match="must be a Tool or a callable"):
        as_tool("x", 3)  # type: ignore[arg-type]


# ------------------------------------------------------------- outputs are strict JSON


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


# ------------------------------------------------ SystemExit / KeyboardInterrupt in a tool


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


def test_a_custom_tool_raising_system_exit_fails_only_its_step() -> None:
    class Exits(TemplateTool):
        async def run(self, call: Any) -> Any:
            raise SystemExit(3)

    tools = {"exit": Exits("exit"), "work": Recorder().tool()}
    result = execute(plan(step("a", tool="exit"), step("b")), tools)
    assert result.steps["a"].status is StepStatus.FAILED
    assert result.steps["b"].ok


# ------------------------------------------- an abandoned tool thread ends with the process

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


@pytest.mark.integration  # runs a Python process, to see that it ends
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
