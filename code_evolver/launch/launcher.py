"""Starting a tool's child process: the one path that command and node tools share.

A child gets the run's runtime channel (so a script's ``node_runtime`` calls obey this run) and
is run to its end by :func:`code_evolver.launch.processes.run_process`. Running out of
descriptors or processes while starting is back-pressure: the whole start (channel and spawn)
is undone and tried again later, so a step that waits holds no descriptor the others need.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from code_evolver.launch.processes import (
    MAX_STDOUT,
    ProcessResult,
    run_process,
    when_resources_allow,
)
from code_evolver.launch.runtime_host import RuntimeChannel
from code_evolver.tools.base import Caller


async def run_child(
    argv: Sequence[str],
    *,
    stdin: bytes,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] | None = None,
    caller: Caller | None = None,
    max_stdout: int = MAX_STDOUT,
) -> ProcessResult:
    """Run ``argv`` as a step's child process; raises OSError when it cannot be started."""

    async def start_and_wait() -> ProcessResult:
        async with RuntimeChannel(caller) as channel:
            return await run_process(
                argv,
                stdin=stdin,
                cwd=cwd,
                env={**env, **channel.env},
                pass_fds=channel.pass_fds,
                max_stdout=max_stdout,
                started=channel.child_started,
            )

    return await when_resources_allow(start_and_wait)
