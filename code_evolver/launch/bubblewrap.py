"""bubblewrap (``bwrap``): whether it works on this machine, and the argv of each isolation.

``contain`` keeps the file system and network as they are but gives the step a pid namespace
of its own whose init is bubblewrap: when the step's program ends, when the step is killed,
and when evolve dies (``--die-with-parent``, ``kill -9`` included), the kernel kills every
process left in it, daemons that called ``setsid`` included. A fresh ``/proc`` shows only the
step's own processes, so evolve's environment cannot be read from ``/proc/PPID/environ``.

``strict`` adds every other namespace (user, network, ipc, uts, cgroup): no network at all,
no capabilities, user 65534, a root file system that holds only read-only views of the system
libraries, the interpreter and the folders a tool needs, plus a private writable work folder
and ``/tmp``.

Measured by ``bench/sandbox.py``: each level adds a few milliseconds to a process start, so
every step gets its own sandbox (no shared fork server is needed to keep spawns cheap).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "install bubblewrap (apt-get install bubblewrap, dnf install bubblewrap, pacman -S "
    "bubblewrap) or set execution.bubblewrap to its path"
)
USERNS_HINT = (
    "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; on "
    "Ubuntu 24.04 also kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile "
    "for bwrap)"
)
SANDBOX_UID = 65534
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives")


@dataclass(frozen=True)
class Availability:
    """Whether bubblewrap can make a sandbox here; if not, why and what to do."""

    ok: bool
    detail: str
    fix: str = ""
    path: str = ""


@functools.cache
def probe(binary: str) -> Availability:
    """Try bubblewrap once per process: a strict sandbox running ``true``."""
    path = shutil.which(binary)
    if path is None:
        return Availability(
            False, f"bubblewrap is not installed ({binary} not found)", INSTALL_HINT
        )
    argv = [*strict_argv(path, readable=(), workdir=None, env={}), "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Availability(False, f"bubblewrap does not run: {exc}", INSTALL_HINT, path)
    if done.returncode != 0:
        reason = " ".join(done.stderr.split())[:300] or f"exit status {done.returncode}"
        return Availability(
            False, f"bubblewrap cannot make a sandbox here: {reason}", USERNS_HINT, path
        )
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return Availability(True, version.stdout.strip() or "bubblewrap", path=path)


def contain_argv(bwrap: str, *, own_user_namespace: bool) -> list[str]:
    """The prefix that runs a command contained: its own pid namespace, the rest as is.

    ``own_user_namespace``: also a user namespace (mapping the user to itself), so that a
    process limit counts only the step's processes (not for root: it would lose root's
    rights to other users' files, and the kernel exempts root from that limit anyway).
    """
    argv = [bwrap]
    if own_user_namespace:
        argv.append("--unshare-user")
    return [
        *argv,
        "--dev-bind", "/", "/",
        "--unshare-pid",
        "--proc", "/proc",
        "--die-with-parent",
        "--new-session",
        "--",
    ]  # fmt: skip


def strict_argv(
    bwrap: str,
    *,
    readable: Iterable[Path],
    workdir: Path | None,
    env: Mapping[str, str],
) -> list[str]:
    """The prefix that runs a command in the strict sandbox.

    ``readable``: folders or files the command needs (the interpreter, its libraries, the
    script), bound read-only at the same paths. ``workdir``: the private writable folder, also
    the working directory. ``env``: the whole environment inside.
    """
    argv = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
        "--clearenv",
    ]  # fmt: skip
    for name, value in env.items():
        argv += ["--setenv", name, value]
    for system in _SYSTEM_DIRS:
        if os.path.islink(system):  # merged /usr: /bin -> usr/bin
            argv += ["--symlink", os.readlink(system), system]
        elif os.path.isdir(system):
            argv += ["--ro-bind", system, system]
    for system in _SYSTEM_FILES:
        argv += ["--ro-bind-try", system, system]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in _outside_system(readable):
        argv += ["--ro-bind", str(path), str(path)]
    if workdir is not None:
        argv += ["--bind", str(workdir), str(workdir), "--chdir", str(workdir)]
    return [*argv, "--"]


def _outside_system(paths: Iterable[Path]) -> list[Path]:
    """The paths not already visible through the system folders, each once, parents first."""
    kept: list[Path] = []
    for path in sorted({Path(p) for p in paths}, key=lambda p: len(p.parts)):
        if any(path.is_relative_to(d) for d in _SYSTEM_DIRS if os.path.isdir(d)):
            continue
        if any(path.is_relative_to(k) for k in kept):
            continue
        if path.exists():
            kept.append(path)
    return kept
