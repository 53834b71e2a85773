"""The contained fork server: one per run, inside one bubblewrap pid namespace.

Started by ``launch.forkserver`` as ``python -S forkserver_main.py FD`` (the standard library
only: it must start in milliseconds and import nothing of the project). It receives spawn
requests on the ``SOCK_SEQPACKET`` socket ``FD``: a JSON header and the descriptors of the
child (stdin, stdout, stderr, a control socket, and the descriptors to pass on).

One process serves every step, in one event loop (no process of its own per step: a forked
Python supervisor per step cost ~1.5 ms of CPU each, which dozens of steps starting at once
felt). For each request it starts the program with ``posix_spawn`` (vfork) in a new session,
with the step's limits as its soft limits and a mark in its environment. The server is a
child subreaper, so every process the step starts stays in reach, daemons that leave their
session included: when the program ends, or when evolve writes to or closes the control socket
(a timeout, a cancellation), the server kills the step's process group and every process in
the namespace that bears the step's mark. On the control socket it writes ``{"started": true}``
(or ``{"error": ERRNO, "message": ...}`` when the program could not be started), then at the
end ``{"exit": STATUS, "cpu_s": ..., "max_rss_kb": ...}`` (STATUS as
``os.waitstatus_to_exitcode``). When evolve dies, bubblewrap (``--die-with-parent``) takes the
whole namespace with it.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import fcntl
import json
import os
import resource
import selectors
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
MAX_FDS = 64
MARK = "CODE_EVOLVER_STEP_MARK"
RLIMITS = {
    "data": resource.RLIMIT_DATA,
    "cpu": resource.RLIMIT_CPU,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
}


@dataclass
class Step:
    pid: int
    pidfd: int
    control: int
    mark: str


def main(fd: int) -> None:
    server = socket.socket(fileno=fd)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    loop = selectors.DefaultSelector()
    loop.register(server, selectors.EVENT_READ, None)
    steps: dict[int, Step] = {}  # by pid
    numbers = iter(range(1, 1 << 62))
    server.send(b"ready")
    while True:
        for key, _ in loop.select(timeout=1.0):
            if key.data is None:
                try:
                    message, fds = _receive(server)
                except ConnectionError:
                    return
                if not message:  # evolve closed its end: the run is over
                    return
                step = _start(json.loads(message), fds, f"{os.getpid()}-{next(numbers)}")
                if step is not None:
                    steps[step.pid] = step
                    loop.register(step.pidfd, selectors.EVENT_READ, ("exit", step.pid))
                    loop.register(step.control, selectors.EVENT_READ, ("control", step.pid))
            else:
                what, pid = key.data
                if pid in steps:
                    _finish(loop, steps.pop(pid), asked=what == "control")
        _reap_orphans(steps)


def _receive(server: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    message, ancillary, _, _ = server.recvmsg(1 << 20, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return message, list(fds)


def _start(request: dict[str, Any], fds: list[int], mark: str) -> Step | None:
    """Start one step's program; tells evolve on its control socket either way."""
    stdin, stdout, stderr, control, *passed = fds
    try:
        pid = _spawn(request, stdin, stdout, stderr, passed, mark)
    except (OSError, ValueError) as exc:
        errno = exc.errno if isinstance(exc, OSError) else 0
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _say(control, {"error": errno or 0, "message": message})
        os.close(control)
        return None
    finally:
        for fd in (stdin, stdout, stderr, *passed):
            os.close(fd)
    _say(control, {"started": True})
    return Step(pid, os.pidfd_open(pid), control, mark)


def _spawn(
    request: dict[str, Any], stdin: int, stdout: int, stderr: int, passed: list[int], mark: str
) -> int:
    """The program in a new session, under its limits, with its pipes and passed descriptors
    and nothing else of this process; raises OSError when it cannot be started."""
    targets = request["pass_fds"]
    argv = request["argv"]
    # Descriptors are copied above every number they go to, so none is overwritten early.
    low = max([2, *targets]) + 1
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low) for fd in (stdin, stdout, stderr, *passed)]
    actions: list[tuple[int, ...]] = [
        (os.POSIX_SPAWN_DUP2, fd, target)
        for fd, target in zip(moved, [0, 1, 2, *targets], strict=True)
    ]
    env = dict(request["env"]) | {MARK: mark}
    cwd = request.get("cwd")
    here = os.getcwd()
    saved = {which: resource.getrlimit(which) for which in RLIMITS.values()}
    try:
        if cwd:
            os.chdir(cwd)  # one thread: back before the next request
        for name, (soft, _) in request["limits"].items():
            # The soft limits, which the program inherits (no wrapper process to exec): a
            # runaway is stopped; a program that raises its own soft limit could go on, which
            # strict isolation (hard limits too) does not allow.
            which = RLIMITS[name]
            if name == "nproc":  # counted over the whole namespace: other steps too
                soft += sum(entry.isdigit() for entry in os.listdir("/proc"))
            hard = saved[which][1]
            resource.setrlimit(which, (min(soft, hard) if hard >= 0 else soft, hard))
        return os.posix_spawn(
            argv[0],
            argv,
            env,
            file_actions=actions,
            setsid=True,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),  # as a fresh program has them
        )
    finally:
        for which, limits in saved.items():
            resource.setrlimit(which, limits)
        os.chdir(here)
        for fd in moved:
            os.close(fd)


def _finish(loop: selectors.BaseSelector, step: Step, *, asked: bool) -> None:
    """The program exited, or evolve asked to stop it: kill what is left, reap, report."""
    loop.unregister(step.pidfd)
    loop.unregister(step.control)
    if asked:
        with contextlib.suppress(OSError):
            os.killpg(step.pid, signal.SIGKILL)
    _, raw, usage = os.wait4(step.pid, 0)
    os.close(step.pidfd)
    _kill_marked(step)
    _say(
        step.control,
        {
            "exit": os.waitstatus_to_exitcode(raw),
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_kb": usage.ru_maxrss,
        },
    )
    os.close(step.control)


def _kill_marked(step: Step) -> None:
    """Kill the step's group and every process bearing its mark (those that left the group:
    orphans come to this server, a child subreaper, and are reaped by :func:`_reap_orphans`)."""
    with contextlib.suppress(OSError):
        os.killpg(step.pid, signal.SIGKILL)
    needle = f"{MARK}={step.mark}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/environ", "rb") as environ:
            if needle in environ.read().split(b"\0"):
                os.kill(int(entry), signal.SIGKILL)


def _reap_orphans(steps: dict[int, Step]) -> None:
    """Reap the adopted orphans that died (the steps' own programs are reaped by _finish)."""
    with contextlib.suppress(ChildProcessError):
        while True:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is None or info.si_pid in steps:
                return
            os.waitpid(info.si_pid, os.WNOHANG)


def _say(control: int, word: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(control, json.dumps(word).encode() + b"\n")


if __name__ == "__main__":
    main(int(sys.argv[1]))
