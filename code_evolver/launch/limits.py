"""Resource limits of a tool's processes, and telling a limit hit from an ordinary failure.

Every child runs under ``prlimit`` (util-linux): address space, CPU seconds, file size, open
files and processes are set before the program starts, and they bind everything it spawns. A
program that hits one fails in its own way (Python raises MemoryError, ``fork`` fails with
EAGAIN, the kernel sends SIGXCPU); :func:`limit_hit` reads the ending (signal, CPU time used,
the tail of stderr) and names the limit, so the step says "memory limit 512 MB exceeded"
instead of "exited with status 1" or "killed by SIGKILL".

The process count is special: the kernel never applies ``RLIMIT_NPROC`` to processes whose
user is root outside their namespace, so for root a ``pids`` cgroup does it where one can be
made (see ``launch.cgroups``).
"""

from __future__ import annotations

import re
import signal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MB = 1024 * 1024


class Limits(BaseModel):
    """Limits for one tool's processes; ``None`` means no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mb: int | None = Field(default=4096, ge=16)
    """Address space of each process (``RLIMIT_AS``): allocations beyond it fail."""
    cpu_s: int | None = Field(default=600, ge=1)
    """CPU seconds of each process (``RLIMIT_CPU``); wall time is the step's timeout."""
    file_size_mb: int | None = Field(default=1024, ge=1)
    """Largest file a process may write (``RLIMIT_FSIZE``)."""
    open_files: int | None = Field(default=1024, ge=16)
    """Descriptors each process may hold (``RLIMIT_NOFILE``)."""
    processes: int | None = Field(default=256, ge=4)
    """Processes (and threads) the tool may run at once, counted in its sandbox."""

    def merged(self, overrides: LimitOverrides | None) -> Limits:
        """These limits with a tool's own settings on top."""
        if overrides is None:
            return self
        return self.model_copy(update=overrides.model_dump(exclude_unset=True))


class LimitOverrides(BaseModel):
    """A tool's ``limits:``: only the keys it sets replace the execution defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mb: int | None = Field(default=None, ge=16)
    cpu_s: int | None = Field(default=None, ge=1)
    file_size_mb: int | None = Field(default=None, ge=1)
    open_files: int | None = Field(default=None, ge=16)
    processes: int | None = Field(default=None, ge=4)


STRICT_LIMITS = Limits(memory_mb=2048, cpu_s=300, file_size_mb=256, open_files=256, processes=64)
"""The tighter defaults for code nobody reviewed (strict isolation), where a tool sets none."""


def prlimit_argv(limits: Limits, *, processes: bool = True) -> list[str]:
    """``prlimit --as=... -- `` for these limits; empty when there are none.

    ``processes``: whether ``RLIMIT_NPROC`` is meaningful (it is counted per user, and within
    a user namespace only for that namespace; a pids cgroup may do it instead).
    """
    options = []
    if limits.memory_mb is not None:
        options.append(f"--as={limits.memory_mb * MB}")
    if limits.cpu_s is not None:
        # SIGXCPU at the soft limit (a clean, recognisable ending), SIGKILL a second later.
        options.append(f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}")
    if limits.file_size_mb is not None:
        options.append(f"--fsize={limits.file_size_mb * MB}")
    if limits.open_files is not None:
        options.append(f"--nofile={limits.open_files}")
    if processes and limits.processes is not None:
        options.append(f"--nproc={limits.processes}")
    return ["prlimit", *options, "--"] if options else []


_MEMORY = re.compile(r"MemoryError|Cannot allocate memory|std::bad_alloc|[Oo]ut of memory")
_PROCESSES = re.compile(
    r"fork.*(Resource temporarily unavailable|retry)|Cannot fork|BlockingIOError: \[Errno 11\]"
    r"|can't start new thread"
)
_FILES = re.compile(r"Too many open files")
_FILE_SIZE = re.compile(r"File too large")


def limit_hit(
    limits: Limits,
    *,
    returncode: int,
    cpu_s: float,
    stderr: str,
    processes_hit: bool = False,
) -> str | None:
    """The limit a child's ending shows it hit, as a message naming it, else None.

    ``returncode`` may be a shell-style ``128 + signal`` (bubblewrap reports its child's
    signal that way); ``processes_hit`` is a pids cgroup's own record of a refused fork.
    """
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if limits.cpu_s is not None and (
        signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu_s >= limits.cpu_s)
    ):
        return f"CPU limit {limits.cpu_s}s exceeded"
    if limits.file_size_mb is not None and (signum == signal.SIGXFSZ or _FILE_SIZE.search(stderr)):
        return f"file size limit {limits.file_size_mb} MB exceeded"
    if returncode == 0:
        return None
    if limits.processes is not None and (processes_hit or _PROCESSES.search(stderr)):
        return f"process limit {limits.processes} exceeded"
    if limits.memory_mb is not None and _MEMORY.search(stderr):
        return f"memory limit {limits.memory_mb} MB exceeded"
    if limits.open_files is not None and _FILES.search(stderr):
        return f"open files limit {limits.open_files} exceeded"
    return None


def describe(limits: Limits) -> dict[str, Any]:
    """The limits as plain data (for ``evolve doctor`` and the run record)."""
    return limits.model_dump()
