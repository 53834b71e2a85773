"""Running a child process so that nothing outlives it.

Children start in a new session, so their process group holds everything they spawn. The group
is killed when the attempt is cancelled (timeout, fail-fast, Ctrl-C) and also after the child
exits, because a background grandchild that still holds stdout open would otherwise keep the
step (and the pipes) alive forever. Every live group is known, so a hard exit (a second Ctrl-C)
can kill them all before leaving.

Running out of file descriptors or processes (EMFILE, ENFILE, EAGAIN) when starting a child is
back-pressure, not a failure: the start waits and is tried again, within the attempt's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from code_evolver.errors import ToolFailed
from code_evolver.home import warn_once

T = TypeVar("T")

MAX_STDOUT = 32 * 1024 * 1024
"""A child writing more than this is stopped: it is runaway, and memory is not infinite."""
STDERR_TAIL = 64 * 1024
"""Only the end of stderr is kept; that is where the error is."""


@dataclass(frozen=True, slots=True)
class ProcessResult:
    returncode: int
    stdout: bytes
    stderr: bytes
    overflowed: bool = False
    """stdout passed ``MAX_STDOUT`` and the process group was killed."""


_live_groups: set[int] = set()
"""Process groups started by run_process and not killed yet."""


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group; a group that is already gone is fine."""
    _live_groups.discard(pgid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def kill_all_groups() -> None:
    """Kill every group still running (safe to call from a signal handler)."""
    for pgid in list(_live_groups):
        kill_group(pgid)


_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.EAGAIN)
_FIRST_WAIT_S, _LONGEST_WAIT_S = 0.005, 0.5


async def when_resources_allow(start: Callable[[], Awaitable[T]]) -> T:
    """``await start()``, retried while it fails for lack of descriptors or processes.

    The wait doubles up to half a second; the caller's timeout or cancellation ends it.
    """
    wait = _FIRST_WAIT_S
    while True:
        try:
            return await start()
        except OSError as exc:
            if exc.errno not in _OUT_OF_RESOURCES:
                raise
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            warn_once(
                "out-of-descriptors",
                f"out of file descriptors or processes ({exc.strerror}; `ulimit -n` is {soft}): "
                "steps wait for others to finish; raise the limit or lower --max-parallel",
            )
        await asyncio.sleep(wait)
        wait = min(_LONGEST_WAIT_S, wait * 2)


async def run_process(
    argv: Sequence[str],
    *,
    stdin: bytes = b"",
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    max_stdout: int = MAX_STDOUT,
    started: Callable[[], None] | None = None,
) -> ProcessResult:
    """Run ``argv`` with ``stdin``, collect its output, and leave no process behind.

    ``started`` is called once the child runs (e.g. to close the parent's copies of descriptors
    passed to it). Raises ``OSError`` (e.g. ``FileNotFoundError``, or EMFILE: see
    :func:`when_resources_allow`) when the program cannot be started.
    """
    loop = asyncio.get_running_loop()
    transport, collector = await loop.subprocess_exec(
        lambda: _Collector(loop, max_stdout),
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
    )
    pgid = transport.get_pid()
    _live_groups.add(pgid)
    if started is not None:
        started()
    try:
        stdin_pipe = transport.get_pipe_transport(0)
        if stdin_pipe is not None:
            if stdin:
                stdin_pipe.write(stdin)  # type: ignore[attr-defined]
            stdin_pipe.close()
        await collector.exited
    except BaseException:
        kill_group(pgid)
        with contextlib.suppress(asyncio.CancelledError):  # already on the way out
            await _settle(collector)
        transport.close()
        raise
    kill_group(pgid)  # whatever the child left running in the background
    try:
        await _settle(collector)
    finally:
        transport.close()
    returncode = transport.get_returncode()
    assert returncode is not None
    return ProcessResult(
        returncode, bytes(collector.stdout), bytes(collector.stderr), collector.overflowed
    )


class _Collector(asyncio.SubprocessProtocol):
    """Collects output and reports exit as soon as the child exits.

    ``asyncio.subprocess.Process.wait()`` only returns once every pipe is closed, which a
    background grandchild can postpone forever; ``process_exited`` fires at the exit itself.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_stdout: int) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.max_stdout = max_stdout
        self.overflowed = False
        self._pgid: int | None = None
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Output can arrive before subprocess_exec() returns: know the group from the start.
        assert isinstance(transport, asyncio.SubprocessTransport)
        self._pgid = transport.get_pid()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        if fd != 1:
            self.stderr.extend(chunk)
            del self.stderr[:-STDERR_TAIL]
        elif not self.overflowed:
            self.stdout.extend(chunk)
            if len(self.stdout) > self.max_stdout:
                self.overflowed = True
                del self.stdout[self.max_stdout :]
                if self._pgid is not None:
                    kill_group(self._pgid)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _settle(collector: _Collector, grace_s: float = 2.0) -> None:
    """Wait for the dead group's pipes to drain; a process outside the group that kept them
    open (it left with setsid) is not waited for beyond ``grace_s``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(collector.closed), grace_s)


def check_ending(result: ProcessResult, what: str, max_stdout: int = MAX_STDOUT) -> None:
    """Raise ToolFailed for a child that ended badly, the same way for every kind of tool:
    too much output (not retried: it would only do it again), or a non-zero exit with the tail
    of its stderr. ``what`` names the child (``the command``, ``the node script``).
    """
    if result.overflowed:
        raise ToolFailed(
            f"{what} wrote more than {max_stdout:,} bytes to stdout and was stopped",
            retryable=False,
        )
    if result.returncode != 0:
        detail = tail(result.stderr) or tail(result.stdout) or "no output"
        raise ToolFailed(f"{what} {describe_exit(result.returncode)}: {detail}")


def describe_exit(returncode: int) -> str:
    """``exited with status 3`` or ``was killed by SIGSEGV``."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def tail(data: bytes, *, lines: int = 12, chars: int = 1500) -> str:
    """The end of a stream, which is where the error usually is, as one line."""
    text = data.decode("utf-8", errors="replace").strip()
    kept = text.splitlines()[-lines:]
    joined = " | ".join(line.strip() for line in kept if line.strip())
    return joined if len(joined) <= chars else "..." + joined[-chars:]
