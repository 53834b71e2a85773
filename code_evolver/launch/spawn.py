"""Starting a child in a new session, with a pidfd that reports its exit.

:mod:`code_evolver.launch.processes` keeps ``run_process``'s contract (output, caps, killing the
group) and drives the child on the event loop; this module is the operating-system part under
it, kept apart because it is about descriptors and process ids, not about collecting output.

Why it is not asyncio's ``subprocess_exec``: that started every child on the event loop's thread
and waited for it with a thread per child (Python 3.11's default watcher), which serialised a
run of many short command steps. What ``bench/sandbox.py --compare-strategies`` measured:

* ``subprocess.Popen`` with vfork-friendly settings (no ``preexec_fn``, no user or group change:
  ``start_new_session`` and ``pass_fds`` are fine) uses vfork, so its cost does not grow with
  the parent's memory (a loaded model), and it lets go of the GIL while the child execs. So
  :func:`spawn` may run in worker threads, several at once, and the event loop goes on meanwhile;
* ``os.posix_spawn`` holds the GIL until the child has exec'd, which under load stalls every
  thread, cannot change directory, and must list ``/proc/self/fd`` on every spawn to keep the
  parent's descriptors out (``Popen`` closes them in the child with ``close_range``);
* a pidfd (Linux >= 5.3) tells the event loop that the child exited, without any thread.

:data:`AVAILABLE` says whether pidfds work here; where they do not (older kernels, other
systems), ``run_process`` keeps asyncio's ``subprocess_exec``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def _pidfd_works() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):  # not Linux, or a kernel older than 5.3
        return False
    return hasattr(os, "wait4")


AVAILABLE = _pidfd_works()
"""True where :func:`spawn` works (Linux >= 5.3)."""


@dataclass(frozen=True, slots=True)
class Spawned:
    """A running child: its pid (also its process group and session), a pidfd that becomes
    readable when it exits, and the parent's non-blocking ends of its three pipes."""

    pid: int
    pidfd: int
    stdin: int
    stdout: int
    stderr: int
    popen: subprocess.Popen[bytes] | None = None
    """The ``Popen`` that started it (None for a child started otherwise, as the benchmark's
    candidates are): told the return code once the child is reaped, so that it never waits for
    the pid itself (which could belong to another process by then)."""


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
    pass_fds: Sequence[int],
) -> Spawned:
    """Start ``argv`` in a new session with its stdin, stdout and stderr on fresh pipes. Only
    ``pass_fds`` and the pipes reach the child; no other descriptor of this process does.

    Safe to call from any thread. Raises what ``subprocess`` raises: ``FileNotFoundError`` or
    ``PermissionError`` for a program that cannot be executed (or a missing ``cwd``), ``OSError``
    with EMFILE, ENFILE or EAGAIN when out of descriptors or processes, ``ValueError`` for a NUL
    in an argument.
    """
    opened: list[int] = []
    try:
        for _ in range(3):
            opened += os.pipe()
        stdin_r, stdin_w, stdout_r, stdout_w, stderr_r, stderr_w = opened
        popen = subprocess.Popen(
            argv,
            stdin=stdin_r,
            stdout=stdout_w,
            stderr=stderr_w,
            cwd=cwd,
            env=env,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
        for fd in (stdin_r, stdout_w, stderr_w):
            opened.remove(fd)
            os.close(fd)
        try:
            pidfd = os.pidfd_open(popen.pid)
        except OSError:  # EMFILE: no descriptor left to watch it with
            _abandon(popen)
            raise
    except BaseException:
        for fd in opened:
            os.close(fd)
        raise
    for fd in (stdin_w, stdout_r, stderr_r):
        os.set_blocking(fd, False)
    return Spawned(popen.pid, pidfd, stdin_w, stdout_r, stderr_r, popen)


def _abandon(popen: subprocess.Popen[bytes]) -> None:
    """Kill and reap a child that cannot be watched."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()
