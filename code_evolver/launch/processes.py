"""Running a child process so that nothing outlives it.

Children start in a new session, so their process group holds everything they spawn. The group
is killed when the attempt is cancelled (timeout, fail-fast, Ctrl-C) and also after the child
exits, because a background grandchild that still holds stdout open would otherwise keep the
step (and the pipes) alive forever. Every live group is known, so a hard exit (a second Ctrl-C)
can kill them all before leaving.

Running out of file descriptors or processes (EMFILE, ENFILE, EAGAIN) when starting a child is
back-pressure, not a failure: the start waits and is tried again, within the attempt's timeout.

Starting many children must not serialise a run. Where pidfds work (Linux >= 5.3), children
are started by a few worker threads (:mod:`code_evolver.launch.spawn`: ``Popen`` lets go of the
GIL while the child execs, so the event loop and the other starts go on), and the event loop
learns of each exit from a pidfd, then reaps it with ``wait4``, which also gives the child's
resource usage. Elsewhere asyncio's ``subprocess_exec`` does the work, as it always did.
``bench/sandbox.py --compare-strategies`` has the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import resource
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from code_evolver.home import warn_once
from code_evolver.launch import spawn
from code_evolver.launch.spawn import Spawned

T = TypeVar("T")

MAX_STDOUT = 32 * 1024 * 1024
"""A child writing more than this is stopped: it is runaway, and memory is not infinite."""
STDERR_TAIL = 64 * 1024
"""Only the end of stderr is kept; that is where the error is."""
_READ_SIZE = 64 * 1024
"""Below malloc's mmap threshold, so a read does not map and unmap memory."""

STRATEGY = "pidfd" if spawn.AVAILABLE else "asyncio"
"""How children are started and reaped: ``pidfd`` (:mod:`code_evolver.launch.spawn`) where the
machine allows it, else ``asyncio`` (``subprocess_exec``). The benchmark switches it."""
SPAWN_THREADS = 4
"""Worker threads starting children for the ``pidfd`` strategy (0: the event loop's thread).
Several, because a start waits for its child to exec, which under load means waiting for a
CPU; one thread would queue the starts behind each other again."""


@dataclass(frozen=True, slots=True)
class ProcessResult:
    returncode: int
    stdout: bytes
    stderr: bytes
    overflowed: bool = False
    """stdout passed ``MAX_STDOUT`` and the process group was killed."""
    cpu_s: float = 0.0
    """User plus system CPU seconds of the child and the descendants it waited for (0 when
    unknown: started by the asyncio fallback)."""
    max_rss_kb: int = 0
    """The largest resident set of the child or of one of its waited-for descendants, in KiB
    (0 when unknown)."""


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
    via: Starter | None = None,
) -> ProcessResult:
    """Run ``argv`` with ``stdin``, collect its output, and leave no process behind.

    The child gets ``pass_fds`` and no other descriptor of this process. ``started`` is called
    once the child runs (e.g. to close the parent's copies of descriptors passed to it). Raises
    ``OSError`` (e.g. ``FileNotFoundError``, or EMFILE: see :func:`when_resources_allow`) when
    the program cannot be started.
    """
    loop = asyncio.get_running_loop()
    collector = Collector(loop, max_stdout)
    child: Child
    if via is not None:  # started by someone else (a contained fork server)
        child = await via.start(loop, collector, argv, cwd, env, pass_fds)
    elif STRATEGY == "asyncio":
        child = await _AsyncioChild.start(loop, collector, argv, cwd, env, pass_fds)
    else:
        start = functools.partial(spawn.spawn, argv, env=env, cwd=cwd, pass_fds=pass_fds)
        spawned = await _in_spawn_thread(start) if SPAWN_THREADS else start()
        child = _PidfdChild(loop, collector, spawned)
    try:
        if started is not None:
            started()
        child.send(stdin)
        await collector.exited
    except BaseException:
        child.kill()
        with contextlib.suppress(asyncio.CancelledError):  # already on the way out
            await _settle(collector)
        child.close()
        raise
    child.kill()  # whatever the child left running in the background
    try:
        await _settle(collector)
    finally:
        child.close()
    returncode = child.returncode
    assert returncode is not None
    return ProcessResult(
        returncode,
        bytes(collector.stdout),
        bytes(collector.stderr),
        collector.overflowed,
        child.cpu_s,
        child.max_rss_kb,
    )


class Collector(asyncio.SubprocessProtocol):
    """Collects output and reports exit as soon as the child exits.

    ``asyncio.subprocess.Process.wait()`` only returns once every pipe is closed, which a
    background grandchild can postpone forever; ``process_exited`` fires at the exit itself.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_stdout: int) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.max_stdout = max_stdout
        self.overflowed = False
        self.pgid: int | None = None
        self.stop: Callable[[], None] | None = None
        """How to stop the child when it writes too much (a child of another starter)."""
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Output can arrive before subprocess_exec() returns: know the group from the start.
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.pgid = transport.get_pid()

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
                if self.pgid is not None:
                    kill_group(self.pgid)
                elif self.stop is not None:
                    self.stop()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class Starter(Protocol):
    """Something other than this process that starts children (``launch.forkserver``)."""

    async def start(
        self,
        loop: asyncio.AbstractEventLoop,
        collector: Collector,
        argv: Sequence[str],
        cwd: str | os.PathLike[str] | None,
        env: Mapping[str, str] | None,
        pass_fds: Sequence[int],
    ) -> Child:
        """Start ``argv``; the child feeds ``collector`` and reports its exit to it."""


class Child(Protocol):
    """A started child as ``run_process`` drives it, whichever way it was started."""

    pid: int
    cpu_s: float
    max_rss_kb: int

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped (negative: killed by that signal)."""

    def send(self, data: bytes) -> None:
        """Write ``data`` to the child's stdin, then close it."""

    def kill(self) -> None:
        """Kill the child's process group (unless that was done already)."""

    def close(self) -> None:
        """Let go of the pipes (the child is dead or being killed)."""


class PipedChild:
    """A child's three pipes driven by the event loop without a thread: stdin written, stdout
    and stderr fed to the collector. Subclasses say how the exit is learnt (:meth:`exited`
    when it is), and like asyncio's transports the collector hears ``connection_lost`` once
    the pipes are closed and the exit is known."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        collector: Collector,
        stdin: int,
        stdout: int,
        stderr: int,
    ) -> None:
        self.loop, self.collector = loop, collector
        self.returncode: int | None = None
        self.cpu_s = 0.0
        self.max_rss_kb = 0
        self._readers = {stdout: 1, stderr: 2}
        self._stdin: int | None = stdin
        self._pending = memoryview(b"")
        for fd, number in self._readers.items():
            loop.add_reader(fd, self._read, fd, number)

    def send(self, data: bytes) -> None:
        self._pending = memoryview(data)
        self._write()

    def _write(self) -> None:
        if self._stdin is None:
            return
        try:
            written = os.write(self._stdin, self._pending) if self._pending else 0
        except BlockingIOError:
            written = 0
        except OSError:  # BrokenPipeError: the child does not read its input
            self._close_stdin()
            return
        self._pending = self._pending[written:]
        if self._pending:
            self.loop.add_writer(self._stdin, self._write)
        else:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self._stdin is not None:
            self.loop.remove_writer(self._stdin)
            os.close(self._stdin)
            self._stdin = None

    def _read(self, fd: int, number: int) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.collector.pipe_data_received(number, data)
        else:
            self._close_reader(fd)

    def _close_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self.loop.remove_reader(fd)
            os.close(fd)
            self._check_done()

    def exited(self, returncode: int, cpu_s: float, max_rss_kb: int) -> None:
        self.returncode = returncode
        self.cpu_s, self.max_rss_kb = cpu_s, max_rss_kb
        self.collector.process_exited()
        self._check_done()

    def _check_done(self) -> None:
        if not self._readers and self.returncode is not None:
            self.collector.connection_lost(None)

    def close_pipes(self) -> None:
        self._close_stdin()
        for fd in list(self._readers):
            self._close_reader(fd)


class _PidfdChild(PipedChild):
    """A child from :func:`spawn.spawn`: its pidfd reports the exit, when it is reaped with
    ``wait4`` (which gives its resource usage, waited-for descendants included).

    The process group is killed when the pidfd fires, before the reaping: while the leader is
    an unreaped zombie its id cannot be reused, so the kill cannot reach a stranger.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, collector: Collector, child: Spawned
    ) -> None:
        super().__init__(loop, collector, child.stdin, child.stdout, child.stderr)
        self.child = child
        self.pid = child.pid
        _live_groups.add(self.pid)
        collector.pgid = self.pid
        loop.add_reader(child.pidfd, self._reap)

    def _reap(self) -> None:
        kill_group(self.pid)
        try:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else (a handler waiting for any child)
            pid, status, usage = self.pid, 255 << 8, None
        if pid == 0:
            return
        self.loop.remove_reader(self.child.pidfd)
        os.close(self.child.pidfd)
        returncode = os.waitstatus_to_exitcode(status)
        if self.child.popen is not None:
            self.child.popen.returncode = returncode
        if usage is None:
            self.exited(returncode, 0.0, 0)
        else:
            self.exited(returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)

    def kill(self) -> None:
        if self.returncode is None:  # else the group was killed at the exit, before reaping
            kill_group(self.pid)

    def close(self) -> None:
        self.close_pipes()
        if self.returncode is None:  # killed just now: reap it if it is gone already,
            self._reap()  # else the pidfd does it when it goes


_spawn_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
"""By (process id, thread count): a forked copy of this process has none of the threads."""


async def _in_spawn_thread(start: Callable[[], Spawned]) -> Spawned:
    """``start()`` in one of the ``SPAWN_THREADS`` worker threads.

    A start cannot be stopped halfway: cancelled while it runs, this waits for it to finish,
    kills what it started, and then lets the cancellation through (so the caller never closes
    a descriptor that a start is still passing on).
    """
    key = os.getpid(), SPAWN_THREADS
    if (pool := _spawn_pools.get(key)) is None:
        pool = _spawn_pools[key] = ThreadPoolExecutor(SPAWN_THREADS, thread_name_prefix="spawn")
    job: Future[Spawned] = pool.submit(start)
    waiting = asyncio.wrap_future(job)
    try:
        return await asyncio.shield(waiting)
    except asyncio.CancelledError:
        if not job.cancel():  # it started: see it through
            while not waiting.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([waiting])
            if waiting.exception() is None:
                _discard(waiting.result())
        raise


def _discard(child: Spawned) -> None:
    """Kill and reap a child nobody waits for any more (its start was cancelled)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    for fd in (child.stdin, child.stdout, child.stderr, child.pidfd):
        os.close(fd)
    with contextlib.suppress(ChildProcessError):
        _, status = os.waitpid(child.pid, 0)  # killed: at once
        if child.popen is not None:
            child.popen.returncode = os.waitstatus_to_exitcode(status)


class _AsyncioChild:
    """A child from asyncio's ``subprocess_exec`` (its child watcher reaps it, so the resource
    usage is unknown): where :data:`spawn.AVAILABLE` is false."""

    def __init__(self, transport: asyncio.SubprocessTransport) -> None:
        self.transport = transport
        self.pid = transport.get_pid()
        self.cpu_s = 0.0
        self.max_rss_kb = 0
        _live_groups.add(self.pid)

    @classmethod
    async def start(
        cls,
        loop: asyncio.AbstractEventLoop,
        collector: Collector,
        argv: Sequence[str],
        cwd: str | os.PathLike[str] | None,
        env: Mapping[str, str] | None,
        pass_fds: Sequence[int],
    ) -> _AsyncioChild:
        transport, _ = await loop.subprocess_exec(
            lambda: collector,
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
        return cls(transport)

    @property
    def returncode(self) -> int | None:
        return self.transport.get_returncode()

    def send(self, data: bytes) -> None:
        stdin_pipe = self.transport.get_pipe_transport(0)
        if stdin_pipe is not None:
            if data:
                stdin_pipe.write(data)  # type: ignore[attr-defined]
            stdin_pipe.close()

    def kill(self) -> None:
        kill_group(self.pid)

    def close(self) -> None:
        self.transport.close()


async def _settle(collector: Collector, grace_s: float = 2.0) -> None:
    """Wait for the dead group's pipes to drain and the child to be reaped; a process outside
    the group that kept the pipes open (it left with setsid) is not waited for beyond
    ``grace_s``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(collector.closed), grace_s)


def started_pids() -> frozenset[int]:
    """The children this process started and has not reaped yet (each leads its group)."""
    return frozenset(_live_groups)
