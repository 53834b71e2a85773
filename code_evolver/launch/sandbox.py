"""Isolation levels: how a tool's process is wrapped before it starts (the Sandbox seam).

* ``strict`` (nodes by default, always for generated code): bubblewrap with every namespace
  new, no network, a read-only view of the system, the interpreter and the folders the tool
  needs, a private writable work folder, user 65534, a clean environment. Where bubblewrap
  cannot run, it refuses (:class:`SandboxUnavailable`, with the fix), never falls back.
* ``contain`` (commands by default): the file system and network as they are, but the
  process tree lives in a pid namespace of its own and dies with its step and with evolve.
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
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from code_evolver.errors import UserError
from code_evolver.home import warn_once
from code_evolver.launch import bubblewrap, cgroups
from code_evolver.launch.environment import child_environment
from code_evolver.launch.limits import Limits, prlimit_argv

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
    notes: list[str] = field(default_factory=list)


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
    """Wrap ``request`` for ``level``; raises SandboxUnavailable for strict without bwrap."""
    program = _program(request)
    argv = [program, *request.argv[1:]]
    root = os.geteuid() == 0
    pids = cgroups.pids_root() if root and limits.processes is not None else None
    cgroup = cgroups.PidsCgroup(pids, limits.processes) if pids and limits.processes else None
    outer = cgroup.enter_argv() if cgroup else []
    if level == "none":
        env = child_environment(request.env, inherit_all=True) | dict(request.internal_env)
        limit = prlimit_argv(limits, processes=False)
        return Prepared([*outer, *limit, *argv], env, request.cwd, level, cgroup=cgroup)
    available = bubblewrap.probe(bwrap)
    if level == "strict":
        require_strict(available)
        workdir = Path(tempfile.mkdtemp(prefix="evolve-sandbox-"))
        env = child_environment(request.env, home=str(workdir), tmpdir="/tmp")
        env |= dict(request.internal_env)
        readable = (*request.readable, *_interpreter_paths())
        wrap = bubblewrap.strict_argv(available.path, readable=readable, workdir=workdir, env=env)
        # Within its own user namespace the process limit counts only the sandbox's processes
        # (for root a cgroup does it: the kernel exempts root's user from RLIMIT_NPROC).
        limit = prlimit_argv(limits, processes=cgroup is None)
        return Prepared(
            [*outer, *wrap, *limit, *argv], env, str(workdir), level, workdir=workdir, cgroup=cgroup
        )
    env = child_environment(request.env) | dict(request.internal_env)
    if available.ok:
        wrap = bubblewrap.contain_argv(available.path, own_user_namespace=not root)
        limit = prlimit_argv(limits, processes=not root and cgroup is None)
        return Prepared([*outer, *wrap, *limit, *argv], env, request.cwd, level, cgroup=cgroup)
    return Fallback.prepare(argv, env, request.cwd, limits, outer, cgroup, available)


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
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        limits: Limits,
        outer: list[str],
        cgroup: cgroups.PidsCgroup | None,
        available: bubblewrap.Availability,
    ) -> Prepared:
        Fallback.announce(available)
        _become_subreaper()
        mark = secrets.token_hex(8)
        env = env | {MARK_ENV: mark}
        death = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        limit = prlimit_argv(limits, processes=False)
        return Prepared(
            [*outer, *death, *limit, *argv], env, cwd, "contain", cgroup=cgroup, mark=mark
        )

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
        return found


def require_strict(available: bubblewrap.Availability) -> None:
    """Strict isolation never falls back: without bubblewrap, say how to get it or opt out."""
    if not available.ok:
        raise SandboxUnavailable(
            f"{available.detail}: strict isolation cannot run; {available.fix}, or set "
            "sandbox: contain (or none) for tools you trust"
        )


def cleanup_workdir(workdir: Path | None) -> None:
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


def _program(request: Request) -> str:
    """The program's path, found before any wrapper runs: a missing program is reported as
    such (FileNotFoundError), not as the wrapper's failure."""
    program = request.argv[0]
    if os.sep in program:
        path = Path(request.cwd or ".") / program
        if not path.exists():
            raise FileNotFoundError(2, "No such file or directory", program)
        return str(path.resolve()) if not Path(program).is_absolute() else program
    search = {**os.environ, **{k: v for k, v in request.env.items() if v is not None}}
    found = shutil.which(program, path=search.get("PATH"))
    if found is None:
        raise FileNotFoundError(2, "No such file or directory", program)
    return found


def _interpreter_paths() -> Iterable[Path]:
    """What a Python node needs to see: this interpreter (the venv and its base installation)
    and the node_runtime package, wherever it is installed."""
    import sys

    import node_runtime

    yield Path(sys.prefix)
    yield Path(os.path.realpath(sys.base_prefix))
    yield Path(os.path.realpath(sys.executable)).parent
    yield Path(node_runtime.__file__).resolve().parent


_subreaper = False


def _become_subreaper() -> None:
    global _subreaper
    if _subreaper:
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    pr_set_child_subreaper = 36
    libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    _subreaper = True


def _pids() -> Iterable[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            yield int(entry)
