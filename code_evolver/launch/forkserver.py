"""One contained fork server per run: every ``contain`` step's process, in one namespace.

``bench/sandbox.py`` measured what a bubblewrap per step costs when dozens of steps start at
once: three processes per step (bubblewrap, its init, the program) and ~1.3x the wall time of
starting the programs alone. So a run starts bubblewrap once, with a small server inside
(``forkserver_main``), and each contained step is one request: the server forks a supervisor
that applies the step's limits and starts the program; the step's whole process tree stays
under that supervisor (a child subreaper) and dies when the step ends, and the namespace dies
with evolve (``--die-with-parent``, ``kill -9`` included).

The step's pipes are made here, so output is collected exactly as for any other child
(``launch.processes``); the exit, with the resource usage, comes back on a control socket.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from code_evolver.launch import bubblewrap
from code_evolver.launch.processes import Child, Collector, PipedChild
from code_evolver.launch.sandbox import SandboxUnavailable

SERVER = Path(__file__).with_name("forkserver_main.py")
READY_TIMEOUT_S = 20.0
"""How long the server may take to start (bubblewrap and an interpreter, under load)."""


class ForkServer:
    """The run's server, started on first use; :meth:`close` ends it (and any process
    still in its namespace)."""

    def __init__(self, bwrap: str, *, root: bool) -> None:
        self.bwrap = bwrap
        self.root = root
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the server now (it is started on first use otherwise)."""
        self._ensure()

    def _ensure(self) -> socket.socket:
        with self._lock:
            if self._socket is None:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                argv = [
                    *bubblewrap.contain_argv(self.bwrap, root=self.root),
                    os.path.realpath(sys.executable),
                    "-S",  # the standard library only: it starts in milliseconds
                    str(SERVER),
                    str(theirs.fileno()),
                ]
                with tempfile.TemporaryFile() as errors:
                    try:
                        self._process = subprocess.Popen(
                            argv,
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=errors,
                            pass_fds=(theirs.fileno(),),
                            start_new_session=True,
                            # Nothing of evolve's environment: the steps can see the server's
                            # /proc entries. Each request carries the step's own environment.
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                        )
                    finally:
                        theirs.close()
                    if not _ready(ours):
                        errors.seek(0)
                        said = " ".join(errors.read().decode(errors="replace").split())[-300:]
                        ours.close()
                        self._stop_process()
                        raise SandboxUnavailable(
                            "the contained process server did not start: "
                            f"{said or 'no answer'}; see `evolve doctor`, or set sandbox: none "
                            "for tools you trust"
                        )
                self._socket = ours
            return self._socket

    def request(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        cwd: str | os.PathLike[str] | None,
        pass_fds: Sequence[int],
        limits: Mapping[str, Any],
    ) -> tuple[int, int, int, int]:
        """Send one start request; returns this side's ends: (control, stdin, stdout, stderr).

        Raises OSError (EMFILE when out of descriptors: back-pressure, like any spawn).
        """
        server = self._ensure()
        opened: list[int] = []
        try:
            for _ in range(3):
                opened += os.pipe()
            stdin_r, stdin_w, stdout_r, stdout_w, stderr_r, stderr_w = opened
            control, remote = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            opened += [control.detach(), remote.detach()]
            control_fd, remote_fd = opened[-2:]
            header = {
                "argv": list(argv),
                "env": dict(env if env is not None else os.environ),
                "cwd": os.fspath(cwd) if cwd is not None else None,
                "pass_fds": list(pass_fds),
                "limits": dict(limits),
            }
            fds = array.array("i", [stdin_r, stdout_w, stderr_w, remote_fd, *pass_fds])
            server.sendmsg(
                [json.dumps(header).encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
            )
        except BaseException:
            for fd in opened:
                os.close(fd)
            raise
        for fd in (stdin_r, stdout_w, stderr_w, remote_fd):
            os.close(fd)
        for fd in (stdin_w, stdout_r, stderr_r, control_fd):
            os.set_blocking(fd, False)
        return control_fd, stdin_w, stdout_r, stderr_r

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None
            self._stop_process()

    def _stop_process(self) -> None:
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None


def _ready(server: socket.socket) -> bool:
    """Whether the server said it is ready, in time."""
    server.settimeout(READY_TIMEOUT_S)
    try:
        return server.recv(16) == b"ready"
    except OSError:
        return False
    finally:
        server.settimeout(None)


class ServerStarter:
    """A ``processes.Starter`` for one child: the fork server, with this child's limits."""

    def __init__(self, server: ForkServer, limits: Mapping[str, Any]) -> None:
        self.server, self.limits = server, limits

    async def start(
        self,
        loop: asyncio.AbstractEventLoop,
        collector: Collector,
        argv: Sequence[str],
        cwd: str | os.PathLike[str] | None,
        env: Mapping[str, str] | None,
        pass_fds: Sequence[int],
    ) -> Child:
        for text in (*argv, *(env or {}).keys(), *(env or {}).values()):
            if "\0" in text:
                raise ValueError("embedded null byte")  # as subprocess says it
        control, stdin, stdout, stderr = self.server.request(argv, env, cwd, pass_fds, self.limits)
        try:
            early = await _started(loop, control)
        except BaseException:
            for fd in (control, stdin, stdout, stderr):
                os.close(fd)
            raise
        child = RemoteChild(loop, collector, control, stdin, stdout, stderr, early)
        collector.stop = child.kill
        return child


async def _started(loop: asyncio.AbstractEventLoop, control: int) -> bytes:
    """Wait for the supervisor's first word: started (what came after it is returned), or
    why not (raised as subprocess would raise it: FileNotFoundError, PermissionError, ...)."""
    received = bytearray()
    while b"\n" not in received:
        ready: asyncio.Future[None] = loop.create_future()
        # the socket stays readable until it is read: the reader may fire again (or after a
        # cancel) before this coroutine runs and removes it, and a done future refuses a result
        loop.add_reader(control, _resolve, ready)
        try:
            await ready
        finally:
            loop.remove_reader(control)
        try:
            chunk = os.read(control, 4096)
        except BlockingIOError:
            continue
        if not chunk:
            raise OSError(0, "the contained fork server is gone")
        received += chunk
    line, _, rest = bytes(received).partition(b"\n")
    word = json.loads(line)
    if "error" in word:
        raise OSError(int(word["error"]) or 0, str(word.get("message", "cannot start")))
    return rest


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RemoteChild(PipedChild):
    """A child of the fork server: its supervisor reports the exit on the control socket,
    and closing that socket (or writing to it) asks the supervisor to kill its tree."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        collector: Collector,
        control: int,
        stdin: int,
        stdout: int,
        stderr: int,
        early: bytes = b"",
    ) -> None:
        super().__init__(loop, collector, stdin, stdout, stderr)
        self.pid = 0
        self._control: int | None = control
        self._report = bytearray(early)
        loop.add_reader(control, self._read_report)

    def _read_report(self) -> None:
        assert self._control is not None
        try:
            data = os.read(self._control, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._report += data
        if data and b"\n" not in self._report:
            return
        self._close_control()
        try:
            outcome = json.loads(self._report.split(b"\n", 1)[0] or b"{}")
        except ValueError:
            outcome = {}
        if "exit" in outcome:
            self.exited(int(outcome["exit"]), float(outcome["cpu_s"]), int(outcome["max_rss_kb"]))
        else:  # the supervisor vanished (the server was killed)
            self.exited(-9, 0.0, 0)

    def _close_control(self) -> None:
        if self._control is not None:
            self.loop.remove_reader(self._control)
            os.close(self._control)
            self._control = None

    def kill(self) -> None:
        if self._control is not None and self.returncode is None:
            with contextlib.suppress(OSError):
                os.write(self._control, b"k")  # the supervisor kills the tree, then reports

    def close(self) -> None:
        self.close_pipes()
        if self.returncode is None:  # killed now: the report may never come; stop listening
            self._close_control()
            self.returncode = -9
