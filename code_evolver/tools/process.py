"""What command and node tools share: their processes go through the run's launcher.

A process tool has an isolation level (``sandbox:``, else the run's, else its kind's
default), resource limits (``limits:``), an environment beyond the allow-list (``env:``) and an
output cap. :meth:`ProcessTool.launch` starts one child with all of that and turns any bad
ending into the same ToolFailed for every kind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from code_evolver.home import HOME_ENV
from code_evolver.launch.launcher import Launcher, check
from code_evolver.launch.limits import LimitOverrides
from code_evolver.launch.processes import MAX_STDOUT, ProcessResult
from code_evolver.launch.sandbox import Isolation, Request
from code_evolver.tools.base import Tool, ToolCall

_DEFAULT_LAUNCHER = Launcher()


class ProcessTool(Tool):
    default_isolation: Isolation = "contain"

    def __init__(
        self,
        name: str,
        *,
        sandbox: Isolation | None = None,
        limits: LimitOverrides | None = None,
        env: Mapping[str, str | None] | None = None,
        max_stdout: int = MAX_STDOUT,
        config_path: Path | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(name, **settings)
        self.sandbox = sandbox
        self.limits = limits
        self.env: dict[str, str | None] = dict(env or {})
        self.max_stdout = max_stdout
        self.config_path = config_path

    def isolation(self, launcher: Launcher | None) -> Isolation:
        """How this tool's processes run under ``launcher`` (a run's, or the defaults)."""
        return (launcher or _DEFAULT_LAUNCHER).isolation(self.sandbox, self.default_isolation)

    async def launch(
        self,
        call: ToolCall,
        argv: Sequence[str],
        *,
        stdin: bytes,
        what: str,
        cwd: Path | None = None,
        readable: Sequence[Path] = (),
        offer_channel: bool = True,
    ) -> ProcessResult:
        """Run one child for ``call``; raises ToolFailed for a bad ending, OSError when the
        program cannot start, SandboxUnavailable when its isolation cannot be made."""
        launcher = call.launcher or _DEFAULT_LAUNCHER
        isolation = launcher.isolation(self.sandbox, self.default_isolation)
        internal = {"CODE_EVOLVER_STEP_ID": call.step_id}
        if self.config_path is not None and isolation != "strict":
            internal["CODE_EVOLVER_CONFIG"] = str(self.config_path)  # a script on its own
            if home := os.environ.get(HOME_ENV):  # stacks the same $EVOLVE_HOME/config.yaml
                internal[HOME_ENV] = home
        ending = await launcher.run(
            Request(
                list(argv),
                str(cwd) if cwd is not None else None,
                self.env,
                internal,
                tuple(readable),
            ),
            stdin=stdin,
            isolation=isolation,
            limits=launcher.limits(self.limits, isolation),
            caller=call.calls if offer_channel else None,
            max_stdout=self.max_stdout,
        )
        check(ending, what, self.name, self.max_stdout)
        return ending.result
