"""The node registry: ``$EVOLVE_HOME/nodes/NAME/vN/`` with ``main.py``, ``test_main.py`` and
``meta.json``.

A version is never changed once written (a better node is ``vN+1``), except for its
``meta.json`` counters (runs, failures, recent run times), which are what the registry knows
of a node's fitness. Versions are written to a temporary folder and renamed into place, so a
crash never leaves half a node; the newest complete version is the one that runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from code_evolver.errors import UserError
from code_evolver.home import evolve_home

NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
RECENT_RUNS = 20


@dataclass(frozen=True)
class StoredNode:
    name: str
    version: int
    folder: Path
    meta: dict[str, Any]

    @property
    def main(self) -> Path:
        return self.folder / "main.py"

    @property
    def tests(self) -> Path:
        return self.folder / "test_main.py"

    @property
    def description(self) -> str:
        return str(self.meta.get("description", ""))

    @property
    def runs(self) -> int:
        return int(self.meta.get("runs", 0))

    @property
    def failures(self) -> int:
        return int(self.meta.get("failures", 0))

    @property
    def median_runtime_s(self) -> float | None:
        times = self.meta.get("runtimes") or []
        return statistics.median(times) if times else None

    @property
    def fitness(self) -> float:
        """Share of its runs that succeeded; 1.0 for a node that passed its tests and has not
        run yet (it has proved what it could)."""
        return 1.0 if not self.runs else (self.runs - self.failures) / self.runs


class NodeStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or evolve_home() / "nodes"

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if NAME.match(p.name) and p.is_dir())

    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [int(p.name[1:]) for p in folder.iterdir() if re.fullmatch(r"v\d+", p.name)]
        return sorted(v for v in found if (folder / f"v{v}" / "meta.json").is_file())

    def latest(self, name: str) -> StoredNode | None:
        versions = self.versions(name)
        return self.get(name, versions[-1]) if versions else None

    def get(self, name: str, version: int) -> StoredNode:
        folder = self.root / name / f"v{version}"
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"node {name} v{version} cannot be read: {exc}") from None
        return StoredNode(name, version, folder, meta if isinstance(meta, dict) else {})

    def find(self, name: str) -> StoredNode:
        """The newest version of ``name``; a UserError naming the stored ones otherwise."""
        node = self.latest(name)
        if node is None:
            known = ", ".join(self.names()) or "none yet"
            raise UserError(f"no node {name!r} in the registry (stored: {known})")
        return node

    def all(self) -> list[StoredNode]:
        return [node for name in self.names() if (node := self.latest(name)) is not None]

    def add(self, name: str, code: str, tests: str, meta: dict[str, Any]) -> StoredNode:
        """Store a new version of ``name`` (``v1`` for a new node); returns it."""
        check_name(name)
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        version = (self.versions(name) or [0])[-1] + 1
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder))
        meta = {"created": datetime.now(UTC).isoformat(), "runs": 0, "failures": 0, **meta}
        (staging / "main.py").write_text(code, encoding="utf-8")
        (staging / "test_main.py").write_text(tests, encoding="utf-8")
        (staging / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        while True:  # another process may have taken this version meanwhile
            try:
                os.rename(staging, folder / f"v{version}")
                break
            except OSError:
                version += 1
        return self.get(name, version)

    def record_run(self, node: StoredNode, ok: bool, seconds: float) -> None:
        """Count a run of ``node`` in its meta.json (best effort: counters, not records)."""
        path = node.folder / "meta.json"
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            meta["runs"] = int(meta.get("runs", 0)) + 1
            meta["failures"] = int(meta.get("failures", 0)) + (not ok)
            meta["runtimes"] = [*(meta.get("runtimes") or []), round(seconds, 4)][-RECENT_RUNS:]
            fd, temporary = tempfile.mkstemp(dir=node.folder, suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=2)
            os.replace(temporary, path)
        except (OSError, ValueError):
            pass

    def record_failure(self, name: str, task: str, attempts: list[dict[str, Any]]) -> None:
        """Keep the attempts of a node that could not be written (``NAME/failures.jsonl``)."""
        entry = {"at": datetime.now(UTC).isoformat(), "task": task, "attempts": attempts}
        try:
            check_name(name)
            (self.root / name).mkdir(parents=True, exist_ok=True)
            with (self.root / name / "failures.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        except (OSError, UserError):
            pass

    def remove(self, name: str) -> int:
        """Delete every version of ``name``; returns how many there were."""
        versions = self.versions(self.find(name).name)
        shutil.rmtree(self.root / name)
        return len(versions)


def check_name(name: str) -> None:
    if not NAME.match(name):
        raise UserError(
            f"node name {name!r}: use lower-case letters, digits and _, starting with a letter"
        )
