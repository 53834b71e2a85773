from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from code_evolver.errors import StepError, ToolFailed, ToolNotFound
from code_evolver.tools.base import ToolCall, output_to_json
from code_evolver.tools.command import CommandTool
from code_evolver.tools.function import FunctionTool
from code_evolver.tools.registry import ToolRegistry, as_tool
from code_evolver.tools.template import TemplateTool

pytestmark = pytest.mark.integration  # command tools start real processes


def call(tool: Any, text: str = "", **params: Any) -> Any:
    return asyncio.run(tool.run(ToolCall(text, params, "s1")))


def test_command_reads_stdin_and_returns_stripped_stdout() -> None:
    assert call(CommandTool("wc", ["wc", "-w"]), "one two three") == "3"


def test_command_input_gets_a_final_newline() -> None:
    assert call(CommandTool("lines", ["wc", "-l"]), "a\nb") == "2"


def test_placeholders_stay_single_argv_items_and_are_never_shell_parsed() -> None:
    tool = CommandTool(
        "argv",
        [
            sys.executable,
            "-c",
            "import sys, json; print(json.dumps(sys.argv[1:]))",
            "{input}",
            "x-{params.style}-y",
            "{{literal}}",
        ],
    )
    out = call(tool, "a b; rm -rf / $(echo hi)", style='it\'s "quoted" *')
    assert out == '["a b; rm -rf / $(echo hi)", "x-it\'s \\"quoted\\" *-y", "{literal}"]'


def test_python_runs_on_our_interpreter() -> None:
    tool = CommandTool("py", ["python3", "-c", "import sys; print(sys.executable)"])
    assert call(tool) == sys.executable


def test_nonzero_exit_reports_the_stderr_tail() -> None:
    tool = CommandTool(
        "bad",
        [
            sys.executable,
            "-c",
            "import sys\nfor i in range(40): print('line', i, file=sys.stderr)\nsys.exit(3)",
        ],
    )
    with pytest.raises(ToolFailed) as info:
        call(tool)
    message = str(info.value)
    assert message.startswith("the command exited with status 3: ")
    assert "line 39" in message
    assert "line 0 " not in message
    assert info.value.retryable


def test_killed_by_signal_is_named() -> None:
    tool = CommandTool(
        "segv", [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"]
    )
    with pytest.raises(ToolFailed, match="killed by SIGTERM"):
        call(tool)


def test_missing_program_is_not_retryable() -> None:
    with pytest.raises(ToolFailed, match="command not found: no-such-program-xyz") as info:
        call(CommandTool("x", ["no-such-program-xyz"]))
    assert not info.value.retryable


def test_cwd_and_env(tmp_path: Path) -> None:
    tool = CommandTool(
        "env",
        [
            sys.executable,
            "-c",
            "import os; print(os.getcwd(), os.environ['GREETING'], "
            "os.environ['CODE_EVOLVER_STEP_ID'])",
        ],
        cwd=tmp_path,
        env={"GREETING": "hi"},
    )
    assert call(tool) == f"{tmp_path} hi s1"


def test_command_that_ignores_stdin_still_works() -> None:
    assert call(CommandTool("t", ["true"]), "x" * 1_000_000) == ""


def test_large_output_does_not_deadlock() -> None:
    tool = CommandTool(
        "big", [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())"]
    )
    text = "y" * 3_000_000
    assert call(tool, text) == text


def test_required_params_exclude_defaults() -> None:
    tool = CommandTool("t", ["echo", "{params.a}", "{params.b.c}", "{input}"], params={"b": {}})
    assert tool.required_params == {"a"}


def test_template_returns_its_input() -> None:
    assert call(TemplateTool("combine"), "joined text") == "joined text"


def test_function_sync_async_and_params() -> None:
    def shout(text: str, times: int = 1) -> str:
        """Shouts its input."""
        return text.upper() * int(times)

    async def count(text: str) -> dict[str, int]:
        return {"chars": len(text)}

    sync_tool = FunctionTool("shout", shout)
    assert sync_tool.description == "Shouts its input."
    assert call(sync_tool, "ab", times=2) == "ABAB"
    assert call(FunctionTool("count", count), "abc") == {"chars": 3}


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

    with pytest.raises(ToolFailed, match="ValueError: bad input"):
        call(FunctionTool("broken", broken))

    def strict(text: str) -> str:
        raise StepError("mine", retryable=False)

    with pytest.raises(StepError, match="mine") as info:
        call(FunctionTool("strict", strict))
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
