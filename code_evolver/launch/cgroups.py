"""A ``pids`` cgroup per child process, where evolve may make one (as root, usually).

The kernel never applies ``RLIMIT_NPROC`` to processes whose user is root outside their
namespace, so for root the process limit of a tool is a cgroup's ``pids.max``: its fork
bomb stops at the limit, and ``pids.events`` says that the limit was hit. Both cgroup
versions are handled: v1's ``pids`` hierarchy, or a v2 hierarchy whose ``pids`` controller is
enabled. Where no such cgroup can be made, :func:`pids_root` is None and the process limit
of root's tools is not enforced (``evolve doctor`` says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
from pathlib import Path

_V1 = Path("/sys/fs/cgroup/pids")
_V2 = Path("/sys/fs/cgroup")
_numbers = itertools.count(1)


@functools.cache
def pids_root() -> Path | None:
    """A folder in which this process may make pids cgroups, or None. Cgroups left behind by
    evolve processes that are gone (killed with SIGKILL) are removed on the way."""
    for base in _candidates():
        parent = base / "code_evolver"
        try:
            parent.mkdir(exist_ok=True)
            if base == _V2:  # children of ``parent`` need the controller delegated to them
                (parent / "cgroup.subtree_control").write_text("+pids")
            probe = parent / f"probe-{os.getpid()}"
            probe.mkdir()
            usable = (probe / "pids.max").exists()
            probe.rmdir()
        except OSError:
            continue
        if usable:
            sweep_stale(parent)
            return parent
    return None


def sweep_stale(parent: Path) -> None:
    """Remove the cgroups of evolve processes that no longer exist."""
    for child in parent.iterdir():
        owner = child.name.split("-", 1)[0]
        if child.is_dir() and owner.isdigit() and not Path(f"/proc/{owner}").exists():
            with contextlib.suppress(OSError):
                child.rmdir()


def _candidates() -> list[Path]:
    if (_V1 / "cgroup.procs").exists():
        return [_V1]
    controllers = _V2 / "cgroup.controllers"
    if controllers.exists() and "pids" in controllers.read_text().split():
        return [_V2]
    return []


def child_path(root: Path) -> Path:
    """A name for one child's cgroup under ``root`` (the owner's pid first, see
    :func:`sweep_stale`)."""
    return root / f"{os.getpid()}-{next(_numbers)}"


class PidsCgroup:
    """One child's cgroup: created with its limit, entered by the child, removed after.

    (A contained fork server's supervisor does the same for the steps it starts.)"""

    def __init__(self, root: Path, limit: int) -> None:
        self.path = child_path(root)
        self.path.mkdir()
        try:
            (self.path / "pids.max").write_text(str(limit))
        except OSError:
            self.try_remove()
            raise

    def enter_argv(self) -> list[str]:
        """A prefix that moves the child into this cgroup before it runs anything else."""
        procs = self.path / "cgroup.procs"
        return [
            "/bin/sh",
            "-c",
            'echo $$ > "$1" && shift && exec "$@"',
            "evolve-cgroup",
            str(procs),
        ]

    def limit_was_hit(self) -> bool:
        """Whether a fork was refused because of ``pids.max``."""
        try:
            events = (self.path / "pids.events").read_text()
        except OSError:
            return False
        counts = dict(line.split(maxsplit=1) for line in events.splitlines() if " " in line)
        return counts.get("max", "0").strip() != "0"

    def try_remove(self) -> bool:
        """Remove the cgroup if it is empty; whether it is gone."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True

    async def remove(self) -> None:
        """Remove the cgroup once it is empty (killed processes take a moment to leave); one
        still busy after two seconds is left to :func:`sweep_stale` of a later run."""
        for _ in range(100):
            if self.try_remove():
                return
            await asyncio.sleep(0.02)
