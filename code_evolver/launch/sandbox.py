"""Isolation levels: how a tool's process is wrapped before it starts (the Sandbox seam).

* ``strict`` (nodes by default, always for generated code): bubblewrap with every namespace
  new, no network, a read-only view of the system, the interpreter and the folders the tool
  needs, a private writable work folder, user 65534, a clean environment. Where bubblewrap
  cannot run, it refuses (:class:`SandboxUnavailable`, with the fix), never falls back.
* ``contain`` (commands by default): the file system and network as they are, but the
  process tree lives in the run's pid namespace (one bubblewrap holding a fork server,
  ``launch.forkserver``) and dies with its step and with evolve.
  Without bubblewrap it falls back to what the machine allows (see :class:`Fallback`) and
  says once what it cannot guarantee.
* ``none``: the program as it is, with evolve's whole environment, for tools the user trusts
  (the run's summary lists them).

Every level also applies the tool's resource limits (``launch.limits``) and its environment
(``launch.environment``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from code_evolver.errors import UserError
from code_evolver.home import warn_once
from code_evolver.launch import bubblewrap, cgroups
from code_evolver.launch.environment import child_environment
from code_evolver.launch.limits import (
    MB,
    Limits,
    nproc_counts_per_namespace,
    prlimit_argv,
    rlimit_values,
)

Isolation = Literal["strict", "contain", "none"]
ISOLATIONS: tuple[Isolation, ...] = ("strict", "contain", "none")
MARK_ENV = "CODE_EVOLVER_LAUNCH"
"""Marks every process of one contained child when bubblewrap is missing (see Fallback)."""


class SandboxUnavailable(UserError):
    """The isolation a tool asks for cannot be made on this machine."""


@dataclass
class Prepared:
    """A child ready to start: what to run, where, and what to undo afterwards."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    level: Isolation
    workdir: Path | None = None
    cgroup: cgroups.PidsCgroup | None = None
    mark: str | None = None
    wrapped: bool = False
    """Run by bubblewrap, which reports its child's death by signal N as exit status 128+N."""
    via_server: bool = False
    """Started by the run's contained fork server, with ``rlimits``."""
    rlimits: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """What a tool wants to run, before any isolation is applied."""

    argv: list[str]
    cwd: str | None = None
    env: Mapping[str, str | None] = field(default_factory=dict)
    """The tool's own ``env:``; None values pass the variable through from evolve."""
    internal_env: Mapping[str, str] = field(default_factory=dict)
    """Variables evolve itself gives the child (step id, config path)."""
    readable: tuple[Path, ...] = ()
    """What a strict sandbox must show read-only (a script, its folder, libraries)."""


def prepare(
    request: Request,
    level: Isolation,
    limits: Limits,
    *,
    bwrap: str = "bwrap",
) -> Prepared:
    """Wrap ``request`` for ``level``; raises SandboxUnavailable for strict without bwrap.

    What it makes (a work folder, a cgroup) is undone by :func:`undo_now`, also when this
    raises (a cgroup still in use is removed later by its ``remove()``).
    """
    program = _program(request)
    argv = [program, *request.argv[1:]]
    root = os.geteuid() == 0
    prlimit = bubblewrap.tool_path("prlimit")
    # RLIMIT_NPROC is meaningful only per user namespace (5.14+) and never for root.
    nproc = nproc_counts_per_namespace() and not root
    # Root's process limit is a pids cgroup (the kernel exempts root from RLIMIT_NPROC), for
    # strict tools only: moving a process into a cgroup costs ~10 ms (bench/sandbox.py), too
    # much for every command of a run, and worth it for code nobody reviewed.
    strict_root = root and level == "strict"
    pids = cgroups.pids_root() if strict_root and limits.processes is not None else None
    prepared = Prepared([], {}, request.cwd, level)
    available = bubblewrap.probe(bwrap) if level != "none" else None
    try:
        if level == "contain" and available is not None and available.ok:
            # The run's fork server starts it (launch.forkserver).
            prepared.env = child_environment(request.env) | dict(request.internal_env)
            prepared.argv = argv
            prepared.via_server = True
            # In the run's shared namespace the server adds the processes already there.
            prepared.rlimits = rlimit_values(limits, processes=nproc)
            return prepared
        if pids is not None and limits.processes is not None:
            prepared.cgroup = cgroups.PidsCgroup(pids, limits.processes)
        outer = prepared.cgroup.enter_argv() if prepared.cgroup else []
        if level == "none":
            prepared.env = child_environment(request.env, inherit_all=True)
            prepared.env |= dict(request.internal_env)
            limit = prlimit_argv(prlimit, limits, processes=False)
            prepared.argv = [*outer, *limit, *argv]
            return prepared
        assert available is not None
        if level == "strict":
            require_strict(available)
            prepared.workdir = Path(tempfile.mkdtemp(prefix="evolve-sandbox-"))
            env = child_environment(request.env, home=str(prepared.workdir), tmpdir="/tmp")
            readable = [*request.readable, Path(program)]
            if os.path.realpath(program) == os.path.realpath(sys.executable):
                readable += bubblewrap.python_paths()
                env |= {"PYTHONPATH": bubblewrap.python_env()["PYTHONPATH"]}
            prepared.env = env | dict(request.internal_env)
            tmp_bytes = min(limits.memory_mb or 256, 256) * MB
            wrap = bubblewrap.strict_argv(
                available.path, readable=readable, workdir=prepared.workdir, tmp_bytes=tmp_bytes
            )
            limit = prlimit_argv(prlimit, limits, processes=nproc and prepared.cgroup is None)
            prepared.argv = [*outer, *wrap, *limit, *argv]
            prepared.cwd = str(prepared.workdir)
            prepared.wrapped = True
            return prepared
        prepared.env = child_environment(request.env) | dict(request.internal_env)
        Fallback.prepare(prepared, argv, outer, prlimit, limits, available)
        return prepared
    except BaseException:
        undo_now(prepared)
        raise


class Fallback:
    """``contain`` without bubblewrap: the best this machine allows, said once.

    Every process of the child carries a mark in its environment; evolve becomes a child
    subreaper, so processes that leave the child's group (``setsid``, double forks) stay
    evolve's descendants, and when the child ends every process bearing its mark is killed.
    The child itself dies with evolve (``setpriv --pdeathsig``). Not guaranteed: processes
    that clear their environment escape the sweep, and a leftover outlives a ``kill -9`` of
    evolve.
    """

    @staticmethod
    def prepare(
        prepared: Prepared,
        argv: list[str],
        outer: list[str],
        prlimit: str | None,
        limits: Limits,
        available: bubblewrap.Availability,
    ) -> None:
        Fallback.announce(available)
        _become_subreaper()
        prepared.mark = secrets.token_hex(8)
        prepared.env[MARK_ENV] = prepared.mark
        setpriv = bubblewrap.tool_path("setpriv")
        death = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        limit = prlimit_argv(prlimit, limits, processes=False)
        prepared.argv = [*outer, *death, *limit, *argv]

    @staticmethod
    def announce(available: bubblewrap.Availability) -> None:
        warn_once(
            "contain-fallback",
            f"{available.detail}; contained steps fall back to process marks and a subreaper: "
            "their leftover processes are killed when the step ends, but not if evolve itself "
            f"is killed with SIGKILL ({available.fix})",
        )

    @staticmethod
    def sweep(mark: str) -> int:
        """Kill every process bearing ``mark``; returns how many were found."""
        needle = f"{MARK_ENV}={mark}".encode()
        found = 0
        for pid in _pids():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                found += 1
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        _reap_orphans()
        return found


def require_strict(available: bubblewrap.Availability) -> None:
    """Strict isolation never falls back: without bubblewrap, say how to get it or opt out."""
    if not available.ok:
        raise SandboxUnavailable(
            f"{available.detail}: strict isolation cannot run; {available.fix}, or set "
            "sandbox: contain (or none) for tools you trust"
        )


def undo_now(prepared: Prepared) -> None:
    """Remove what :func:`prepare` made: leftover processes (fallback), the work folder, the
    cgroup if it is empty already (else its ``remove()`` waits for it to empty)."""
    if prepared.mark is not None:
        Fallback.sweep(prepared.mark)
    if prepared.workdir is not None:
        shutil.rmtree(prepared.workdir, ignore_errors=True)
    if prepared.cgroup is not None:
        prepared.cgroup.try_remove()


def _program(request: Request) -> str:
    """The program's path, found before any wrapper runs: a missing program is reported as
    such (FileNotFoundError), not as the wrapper's failure."""
    program = request.argv[0]
    if os.sep in program:
        path = os.path.join(request.cwd or ".", program)
        if not os.path.exists(path):
            raise FileNotFoundError(2, "No such file or directory", program)
        return os.path.abspath(path)  # not resolved: a venv's python must keep its name
    search = {**os.environ, **{k: v for k, v in request.env.items() if v is not None}}
    found = shutil.which(program, path=search.get("PATH"))
    if found is None:
        raise FileNotFoundError(2, "No such file or directory", program)
    return os.path.abspath(found)


_subreaper = False


def _become_subreaper() -> None:
    global _subreaper
    if _subreaper:
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    pr_set_child_subreaper = 36
    libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    _subreaper = True


def _reap_orphans() -> None:
    """As a subreaper, evolve inherits the orphans of its children; reap the dead ones that
    it did not start itself (those are its launcher's to reap)."""
    from code_evolver.launch import processes

    mine = os.getpid()
    started = processes.started_pids()
    for pid in _pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z" and int(fields[1]) == mine and pid not in started:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _pids() -> Iterable[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            yield int(entry)
