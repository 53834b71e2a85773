"""Resource limits of a tool's processes, and telling a limit hit from an ordinary failure.

Every child runs under ``prlimit`` (util-linux): data size, CPU seconds, file size, open files
and processes are set before the program starts, and they bind everything it spawns. A limit
above what evolve itself may use (its hard limit, e.g. after ``ulimit -H``) is lowered to that,
never raised. A program that hits one fails in its own way (Python raises MemoryError,
``fork`` fails with EAGAIN, the kernel sends SIGXCPU); :func:`limit_hit` reads the ending
(signal, CPU time used, the last line of stderr) and names the limit, so the step says
"memory limit 512 MB exceeded" instead of "exited with status 1" or "killed by SIGKILL".

The process count is special: the kernel never applies ``RLIMIT_NPROC`` to processes whose
user is root outside their namespace (a ``pids`` cgroup does it for root, see
``launch.cgroups``), and before Linux 5.14 it counts all of the user's processes, not just
the sandbox's (then it is not applied).
"""

from __future__ import annotations

import os
import re
import resource
import signal

from pydantic import BaseModel, ConfigDict, Field

MB = 1024 * 1024


class Limits(BaseModel):
    """Limits for one tool's processes; ``None`` means no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mb: int | None = Field(default=4096, ge=16)
    """Data memory of each process (``RLIMIT_DATA``: heap and private mappings; address space
    merely reserved, as by a JVM, does not count): allocations beyond it fail."""
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


DEFAULT_LIMITS = Limits()
STRICT_LIMITS = Limits(memory_mb=2048, cpu_s=300, file_size_mb=256, open_files=256, processes=64)
"""The tighter defaults for code nobody reviewed (strict isolation), where the run sets none."""

_RESOURCES = {
    "memory_mb": ("--data", resource.RLIMIT_DATA, MB),
    "cpu_s": ("--cpu", resource.RLIMIT_CPU, 1),
    "file_size_mb": ("--fsize", resource.RLIMIT_FSIZE, MB),
    "open_files": ("--nofile", resource.RLIMIT_NOFILE, 1),
    "processes": ("--nproc", resource.RLIMIT_NPROC, 1),
}


def nproc_counts_per_namespace() -> bool:
    """Whether ``RLIMIT_NPROC`` counts per user namespace (Linux 5.14 and later)."""
    try:
        major, minor = (int(part) for part in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 14)


def rlimit_values(limits: Limits, *, processes: bool = True) -> dict[str, tuple[int, int]]:
    """(soft, hard) per resource (``data``, ``cpu``, ``fsize``, ``nofile``, ``nproc``), each
    at most evolve's own hard limit.

    ``processes``: whether ``RLIMIT_NPROC`` is meaningful for this child (counted in its own
    user namespace; for root a pids cgroup does it instead).
    """
    values = {}
    for name, (option, which, unit) in _RESOURCES.items():
        value = getattr(limits, name)
        if value is None or (name == "processes" and not processes):
            continue
        _, hard = resource.getrlimit(which)
        wanted = value * unit
        if hard != resource.RLIM_INFINITY:
            wanted = min(wanted, hard)  # never above what evolve itself may use
        top = wanted
        if name == "cpu_s":
            # SIGXCPU at the soft limit (a clean, recognisable ending), SIGKILL a second later.
            top = wanted + 1 if hard == resource.RLIM_INFINITY else min(wanted + 1, hard)
        values[option.removeprefix("--")] = (wanted, top)
    return values


def prlimit_argv(prlimit: str | None, limits: Limits, *, processes: bool = True) -> list[str]:
    """``prlimit --data=... -- `` for these limits; empty when there are none (or no prlimit)."""
    if prlimit is None:
        return []
    options = [
        f"--{name}={soft}:{hard}" if soft != hard else f"--{name}={soft}"
        for name, (soft, hard) in rlimit_values(limits, processes=processes).items()
    ]
    return [prlimit, *options, "--"] if options else []


_MEMORY = re.compile(r"MemoryError|Cannot allocate memory|std::bad_alloc")
_PROCESSES = re.compile(
    r"BlockingIOError: \[Errno 11\]|fork: (retry: )?Resource temporarily unavailable"
    r"|Cannot fork"
)
_FILES = re.compile(r"\[Errno 24\] Too many open files|: Too many open files$")
_FILE_SIZE = re.compile(r"\[Errno 27\] File too large|: File too large$")


def limit_hit(
    limits: Limits,
    *,
    returncode: int,
    signum: int,
    cpu_s: float,
    stderr: str,
    processes_hit: bool = False,
) -> str | None:
    """The limit a child's ending shows it hit, as a message naming it, else None.

    ``signum``: the signal that ended it (0 if none). Only a child that failed can have hit a
    limit, and only its last words count (the final line of stderr), so a program that merely
    mentions "MemoryError" along the way is not mistaken for one that ran out.
    """
    if returncode == 0:
        return None
    if limits.cpu_s is not None and (
        signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu_s >= limits.cpu_s)
    ):
        return f"CPU limit {limits.cpu_s}s exceeded"
    if limits.processes is not None and processes_hit:
        return f"process limit {limits.processes} exceeded"
    last = _last_line(stderr)
    if limits.file_size_mb is not None and (signum == signal.SIGXFSZ or _FILE_SIZE.search(last)):
        return f"file size limit {limits.file_size_mb} MB exceeded"
    if limits.processes is not None and _PROCESSES.search(last):
        return f"process limit {limits.processes} exceeded"
    if limits.memory_mb is not None and _MEMORY.search(last):
        return f"memory limit {limits.memory_mb} MB exceeded"
    if limits.open_files is not None and _FILES.search(last):
        return f"open files limit {limits.open_files} exceeded"
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
