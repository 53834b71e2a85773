"""The one launcher every tool process goes through (command and node tools, later generated
nodes).

A :class:`Launcher` belongs to a run: it knows the run's isolation default, the bubblewrap
binary and the default limits. For each child it opens the runtime channel (so a script's
``node_runtime`` calls obey this run), wraps the program for its isolation level
(``launch.sandbox``), runs it to its end (``launch.processes``), undoes what the wrapping made
(work folder, cgroup, leftover processes) and maps every ending to one vocabulary of errors:
too much output, a resource limit hit, an exit status or a signal (a timeout is the
executor's: it cancels the attempt, which kills the process tree).

Running out of descriptors or processes while starting is back-pressure: the whole start
(channel and spawn) is undone and tried again later, so a step that waits holds no
descriptor that the others need.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from code_evolver.config import ExecutionSettings
from code_evolver.errors import ToolFailed
from code_evolver.launch import bubblewrap, sandbox
from code_evolver.launch.endings import describe_exit, tail
from code_evolver.launch.forkserver import ForkServer, ServerStarter
from code_evolver.launch.limits import (
    DEFAULT_LIMITS,
    STRICT_LIMITS,
    LimitOverrides,
    Limits,
    limit_hit,
)
from code_evolver.launch.processes import (
    MAX_STDOUT,
    ProcessResult,
    run_process,
    when_resources_allow,
)
from code_evolver.launch.runtime_host import RuntimeChannel
from code_evolver.launch.sandbox import Isolation, Request
from code_evolver.tools.base import Caller


@dataclass(frozen=True)
class Ending:
    """How a child ended, with what the sandbox learned about it."""

    result: ProcessResult
    level: Isolation
    limit: str | None = None
    """The resource limit it hit, named (``memory limit 512 MB exceeded``), if any."""
    signum: int = 0
    """The signal that ended the program, if one did (also through bubblewrap)."""


class Launcher:
    """Starts the tool processes of one run, under the run's ``execution:`` settings."""

    def __init__(self, settings: ExecutionSettings | None = None) -> None:
        self.settings = settings or ExecutionSettings()
        self._server: ForkServer | None = None

    def close(self) -> None:
        """End the run's fork server (and whatever still runs in its namespace)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def _fork_server(self) -> ForkServer:
        if self._server is None:
            available = bubblewrap.probe(self.settings.bubblewrap)
            self._server = ForkServer(available.path, root=os.geteuid() == 0)
        return self._server

    def _starter(self, prepared: sandbox.Prepared) -> ServerStarter | None:
        if not prepared.via_server:
            return None
        return ServerStarter(self._fork_server(), prepared.rlimits)

    def isolation(self, wanted: Isolation | None, kind_default: Isolation) -> Isolation:
        """A tool's own ``sandbox:``, else the run's (unless ``auto``), else its kind's."""
        if wanted is not None:
            return wanted
        if self.settings.sandbox != "auto":
            return self.settings.sandbox
        return kind_default

    def limits(self, overrides: LimitOverrides | None, isolation: Isolation) -> Limits:
        """The run's limits (tighter ones for strict isolation unless the run set its own),
        with a tool's own ``limits:`` on top."""
        base = self.settings.limits
        if base is None:
            base = STRICT_LIMITS if isolation == "strict" else DEFAULT_LIMITS
        return base.merged(overrides)

    async def ensure(self, isolation: Isolation) -> None:
        """Check before a run that ``isolation`` can be made here: strict without bubblewrap
        raises SandboxUnavailable at once (not at the first step); contain without it warns."""
        if isolation == "none":
            return
        available = await asyncio.to_thread(bubblewrap.probe, self.settings.bubblewrap)
        if isolation == "strict":
            sandbox.require_strict(available)
        elif not available.ok:
            sandbox.Fallback.announce(available)
        else:  # the run's fork server, ready before the first step
            await asyncio.to_thread(self._fork_server().start)

    async def run(
        self,
        request: Request,
        *,
        stdin: bytes,
        isolation: Isolation,
        limits: Limits | None = None,
        caller: Caller | None = None,
        max_stdout: int = MAX_STDOUT,
    ) -> Ending:
        """Run ``request`` as a step's child under ``isolation``; raises OSError when the
        program cannot be started (FileNotFoundError: no such program) and
        SandboxUnavailable when the isolation cannot be made here."""
        applied = limits or self.limits(None, isolation)

        async def start_and_wait() -> Ending:
            async with RuntimeChannel(caller) as channel:
                wired = Request(
                    request.argv,
                    request.cwd,
                    request.env,
                    {**request.internal_env, **channel.env},
                    request.readable,
                )
                prepared = sandbox.prepare(
                    wired, isolation, applied, bwrap=self.settings.bubblewrap
                )
                try:
                    result = await run_process(
                        prepared.argv,
                        stdin=stdin,
                        cwd=prepared.cwd,
                        env=prepared.env,
                        pass_fds=channel.pass_fds,
                        max_stdout=max_stdout,
                        started=channel.child_started,
                        via=self._starter(prepared),
                    )
                    processes_hit = prepared.cgroup is not None and prepared.cgroup.limit_was_hit()
                finally:
                    sandbox.undo_now(prepared)
                    if prepared.cgroup is not None:  # removed behind the step's back
                        _background(prepared.cgroup.remove())
                signum = _signal_of(result.returncode, wrapped=prepared.wrapped)
                hit = limit_hit(
                    applied,
                    returncode=result.returncode,
                    signum=signum,
                    cpu_s=result.cpu_s,
                    stderr=result.stderr.decode("utf-8", errors="replace")[-4000:],
                    processes_hit=processes_hit,
                )
                return Ending(result, prepared.level, hit, signum)

        return await when_resources_allow(start_and_wait)


def check(ending: Ending, what: str, tool: str, max_stdout: int = MAX_STDOUT) -> None:
    """Raise ToolFailed for a child that ended badly, the same way for every kind of tool.

    ``what`` names the child (``the command``, ``the node script``), ``tool`` the tool whose
    settings fix it. Too much output and a limit hit are not retried: they would only
    happen again.
    """
    result = ending.result
    if result.overflowed:
        raise ToolFailed(
            f"{what} wrote more than {max_stdout:,} bytes to stdout and was stopped",
            retryable=False,
        )
    if ending.limit is not None:
        raise ToolFailed(
            f"{what} stopped: {ending.limit} (tools.{tool}.limits to change it)", retryable=False
        )
    if result.returncode != 0:
        returncode = -ending.signum if ending.signum else result.returncode
        detail = tail(result.stderr) or tail(result.stdout) or "no output"
        raise ToolFailed(f"{what} {describe_exit(returncode)}: {detail}")


_pending: set[asyncio.Task[None]] = set()


def _background(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` without anyone waiting for it (kept referenced until it is done)."""
    task = asyncio.ensure_future(work)
    _pending.add(task)
    task.add_done_callback(_pending.discard)


def _signal_of(returncode: int, *, wrapped: bool) -> int:
    """The signal that ended a child: its own (a negative status), or, through bubblewrap,
    an exit status of 128 + N (which a program could also choose: only where it ran wrapped)."""
    if returncode < 0:
        return -returncode
    if wrapped and 128 < returncode <= 128 + signal.SIGRTMAX:
        return returncode - 128
    return 0
