"""``kind: command``: run a program with an argv list; input on stdin, output from stdout.

There is no shell anywhere: ``{input}`` and ``{params.NAME}`` are substituted inside single argv
items, so a value with spaces or quotes stays one argument and is never interpreted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from code_evolver.errors import ToolFailed
from code_evolver.templating import Template
from code_evolver.tools.base import (
    Output,
    ToolCall,
    params_used,
    parse_tool_template,
    tool_resolver,
)
from code_evolver.tools.process import ProcessTool

# The interpreter Code Evolver runs on: the same venv, and no pyenv shim (~90 ms) in front of it.
_PYTHON_NAMES = frozenset({"python", "python3"})


class CommandTool(ProcessTool):
    kind = "command"
    default_isolation = "contain"

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        cwd: Path | None = None,
        runtime: bool = False,
        **settings: Any,
    ) -> None:
        super().__init__(name, **settings)
        if not command:
            raise ValueError("command must have at least the program name")
        self.argv: list[Template] = [parse_tool_template(item) for item in command]
        self.cwd = cwd
        self.runtime = runtime
        """Whether the program gets the run's channel for ``node_runtime`` calls."""

    @property
    def required_params(self) -> frozenset[str]:
        return params_used(self.argv) - set(self.default_params)

    @property
    def program(self) -> str:
        return self.argv[0].source

    async def run(self, call: ToolCall) -> Output:
        resolve = tool_resolver(call)
        argv = [item.render(resolve) for item in self.argv]
        if argv[0] in _PYTHON_NAMES:
            argv[0] = sys.executable
        # A command that asks for it (a Python script using node_runtime) gets the run's
        # channel, so its calls obey this run; other programs get nothing to misuse.
        try:
            result = await self.launch(
                call,
                argv,
                stdin=_as_text_lines(call.input),
                what="the command",
                cwd=self.cwd,
                offer_channel=self.runtime,
            )
        except FileNotFoundError:
            if self.cwd is not None and not self.cwd.is_dir():
                problem = f"working directory not found: {self.cwd}"
            else:
                problem = f"command not found: {argv[0]}"
            raise ToolFailed(f"{problem}; check tools.{self.name}", retryable=False) from None
        except PermissionError:
            raise ToolFailed(f"not executable: {argv[0]}", retryable=False) from None
        except (OSError, ValueError) as exc:  # NotADirectoryError, E2BIG, a NUL in an argument
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ToolFailed(f"cannot start {argv[0]}: {detail}", retryable=False) from None
        return result.stdout.decode("utf-8", errors="replace").strip()


def _as_text_lines(text: str) -> bytes:
    """Input as POSIX text: a final newline, as ``echo "$x" | cmd`` would give (wc -l counts it)."""
    if text and not text.endswith("\n"):
        text += "\n"
    return text.encode()
