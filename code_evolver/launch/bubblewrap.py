"""bubblewrap (``bwrap``): whether it works on this machine, and the argv of each isolation.

``contain`` keeps the file system and network as they are but runs the run's fork server
(``launch.forkserver_main``) in a pid namespace whose init is bubblewrap: when evolve dies
(``--die-with-parent``, ``kill -9`` included) the kernel kills every process left in it,
daemons that called ``setsid`` included; the server kills each step's processes when the step
ends. A fresh ``/proc`` shows no process of evolve, so evolve's environment cannot be read from
``/proc/PPID/environ``; for root the capabilities that could undo that (unmounting ``/proc``,
tracing) are dropped.

``strict`` adds every other namespace (user, network, ipc, uts, cgroup): no network at all,
no capabilities, no further user namespaces, user 65534, a root file system that holds only
read-only views of the system libraries, the interpreter and what a tool needs, a private
writable work folder, a size-bounded ``/tmp`` and a read-only ``/dev``.

Nothing secret goes on bubblewrap's command line (which every local user can read): the
environment inside is the one bubblewrap itself is started with.

Measured by ``bench/sandbox.py`` (part B): a bubblewrap per process costs ~20 ms of start,
which ``strict`` pays for its stronger walls; ``contain`` asks its per-run fork server instead
(~2 ms).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
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
_ROOT_DROPS = ("CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_SYS_RAWIO")
"""What root loses inside ``contain``: remounting (``/proc``), tracing, kernel modules."""


@dataclass(frozen=True)
class Availability:
    """Whether bubblewrap can make a sandbox here; if not, why and what to do."""

    ok: bool
    detail: str
    fix: str = ""
    path: str = ""


@functools.cache
def probe(binary: str) -> Availability:
    """Try, once per process, what strict isolation needs: this interpreter importing
    ``node_runtime`` inside a strict sandbox."""
    path = shutil.which(binary)
    if path is None:
        return Availability(
            False, f"bubblewrap is not installed ({binary} not found)", INSTALL_HINT
        )
    python = [sys.executable, "-c", "import node_runtime"]
    argv = [*strict_argv(path, readable=python_paths(), workdir=None), *python]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, check=False, env=python_env()
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Availability(False, f"bubblewrap does not run: {exc}", INSTALL_HINT, path)
    if done.returncode != 0:
        reason = " ".join(done.stderr.split())[-300:] or f"exit status {done.returncode}"
        fix = USERNS_HINT if "bwrap:" in done.stderr else "report it: the sandbox lacks a path"
        return Availability(False, f"bubblewrap cannot make a sandbox here: {reason}", fix, path)
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return Availability(True, version.stdout.strip() or "bubblewrap", path=path)


def contain_argv(bwrap: str, *, root: bool) -> list[str]:
    """The prefix that runs a command contained: its own pid namespace, the rest as is.

    Not root: also a user namespace (mapping the user to itself), so that a process limit
    counts only the step's processes. Root keeps its file rights (a user namespace would take
    them on other users' files) but loses the capabilities that could reach outside.
    """
    argv = [bwrap]
    if root:
        for cap in _ROOT_DROPS:
            argv += ["--cap-drop", cap]
    else:
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
    tmp_bytes: int = 64 * 1024 * 1024,
) -> list[str]:
    """The prefix that runs a command in the strict sandbox.

    ``readable``: files or folders the command needs (the interpreter, its libraries, the
    script), bound read-only at the same paths. ``workdir``: the private writable folder, also
    the working directory. ``tmp_bytes``: the size of ``/tmp`` (memory: it is a tmpfs).
    """
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",  # not just "-try": the sandbox's own user is part of strict
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
    ]  # fmt: skip
    for system in _SYSTEM_DIRS:
        if os.path.islink(system):  # merged /usr: /bin -> usr/bin
            argv += ["--symlink", os.readlink(system), system]
        elif os.path.isdir(system):
            argv += ["--ro-bind", system, system]
    for system in _SYSTEM_FILES:
        argv += ["--ro-bind-try", system, system]
    argv += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev"]
    argv += ["--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    for path in _outside_system(readable):
        argv += ["--ro-bind", str(path), str(path)]
    if workdir is not None:
        argv += ["--bind", str(workdir), str(workdir), "--chdir", str(workdir)]
    return [*argv, "--"]


def python_paths() -> list[Path]:
    """What a Python node needs to see of this interpreter, and nothing around it: the
    executable as it is named (a venv's ``python``, with its ``pyvenv.cfg``), the standard
    library, the site-packages folders, the interpreter's own library folder (libpython) and
    the ``node_runtime`` package."""
    import sysconfig

    import node_runtime

    paths = [Path(sys.executable), Path(os.path.realpath(sys.executable))]
    venv_cfg = Path(sys.prefix) / "pyvenv.cfg"
    if venv_cfg.exists():
        paths.append(venv_cfg)
    found = sysconfig.get_paths()
    paths += [Path(found[key]) for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    if libdir := sysconfig.get_config_var("LIBDIR"):
        paths.append(Path(libdir))
    paths.append(Path(node_runtime.__file__).resolve().parent)
    return paths


def python_env() -> dict[str, str]:
    """The variables a Python node needs inside the sandbox: where ``node_runtime`` is, in
    case it is importable only through ``PYTHONPATH`` or an editable install's folder."""
    import node_runtime

    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(Path(node_runtime.__file__).resolve().parent.parent),
    }


def _outside_system(paths: Iterable[Path]) -> list[Path]:
    """The paths not already visible through the system folders, each once, parents first."""
    kept: list[Path] = []
    system = [Path(d) for d in _SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    for path in sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: len(p.parts)):
        if any(path.is_relative_to(d) for d in system):
            continue
        if any(path.is_relative_to(k) for k in kept):
            continue
        if path.exists():
            kept.append(path)
    return kept


def tool_path(name: str) -> str | None:
    """A helper program (``prlimit``, ``setpriv``) found on evolve's own PATH, absolute: a
    tool's environment may set a PATH that lacks it."""
    return shutil.which(name)
