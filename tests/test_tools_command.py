"""Command tools: argv placeholders are never shell-parsed, input goes in on stdin and output comes
back from stdout, exit statuses and signals are named, a command that cannot start fails once,
and output is capped per tool.

Every test that runs a command starts a real process and is marked `integration`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from support import execute, plan, run_tool, step

from code_evolver.errors import ToolFailed
from code_evolver.result import StepStatus
from code_evolver.tools.command import CommandTool

integration = pytest.mark.integration  # runs the command: a real process


@integration
def test_command_reads_stdin_and_returns_stripped_stdout() -> None:
    assert run_tool(CommandTool("wc", ["wc", "-w"]), "one two three") == "3"


@integration
def test_command_input_gets_a_final_newline() -> None:
    assert run_tool(CommandTool("lines", ["wc", "-l"]), "a\nb") == "2"


@integration
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
    out = run_tool(tool, "a b; rm -rf / $(echo hi)", style='it\'s "quoted" *')
    assert out == '["a b; rm -rf / $(echo hi)", "x-it\'s \\"quoted\\" *-y", "{literal}"]'


@integration
def test_python_runs_on_our_interpreter() -> None:
    tool = CommandTool("py", ["python3", "-c", "import sys; print(sys.executable)"])
    assert run_tool(tool) == sys.executable


@integration
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
        run_tool(tool)
    message = str(info.value)
    assert message.startswith("the command exited with status 3: ")
    assert "line 39" in message
    assert "line 0 " not in message
    assert info.value.retryable


@integration
def test_killed_by_signal_is_named() -> None:
    tool = CommandTool(
        "segv", [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"]
    )
    with pytest.raises(ToolFailed, match="killed by SIGTERM"):
        run_tool(tool)


@integration
def test_missing_program_is_not_retryable() -> None:
    with pytest.raises(ToolFailed, match="command not found: no-such-program-xyz") as info:
        run_tool(CommandTool("x", ["no-such-program-xyz"]))
    assert not info.value.retryable


@integration
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
    assert run_tool(tool) == f"{tmp_path} hi s1"


@integration
def test_command_that_ignores_stdin_still_works() -> None:
    assert run_tool(CommandTool("t", ["true"]), "x" * 1_000_000) == ""


@integration
def test_large_output_does_not_deadlock() -> None:
    tool = CommandTool(
        "big", [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())"]
    )
    text = "y" * 3_000_000
    assert run_tool(tool, text) == text


def test_required_params_exclude_defaults() -> None:
    tool = CommandTool("t", ["echo", "{params.a}", "{params.b.c}", "{input}"], params={"b": {}})
    assert tool.required_params == {"a"}


# ---------------------------------------------------------------- a command that cannot start


@integration
def test_an_argument_too_long_to_start_fails_once() -> None:
    tools = {"work": CommandTool("work", ["echo", "{input}"], retries=2)}
    result = execute(plan(step("a", input="x" * 3_000_000)), tools)
    a = result.steps["a"]
    assert a.status is StepStatus.FAILED
    assert "cannot start" in (a.error or "")
    assert a.attempts == 1


# Popen refuses the NUL just before it forks: no child runs, but the real start is attempted.
@integration
def test_a_nul_byte_in_an_argument_fails_once() -> None:
    tool = CommandTool("w", ["echo", "{input}"], retries=2)
    result = execute(plan(step("a", tool="w", input="x\0y")), {"w": tool})
    assert result.steps["a"].attempts == 1
    assert "cannot start echo" in (result.steps["a"].error or "")


# ---------------------------------------------------------------------- output is capped


@integration
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


@integration
def test_the_output_cap_is_per_tool_and_named_in_the_error() -> None:
    tool = CommandTool("yes", ["yes"], max_stdout=10_000)
    result = execute(plan(step("a", tool="yes")), {"yes": tool})
    assert "more than 10,000 bytes" in (result.steps["a"].error or "")
