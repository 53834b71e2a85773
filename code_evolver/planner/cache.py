"""The plan cache: the same request, with the same model and tools, reuses the last good plan.

Plans from the LLM cost seconds to minutes; a cached one costs a file read. The key covers
everything that shapes a plan: the request (case and spacing ignored), the backend and model,
and each tool's name, kind, description and params. Files are written atomically, and one that
cannot be read back is ignored, never fatal. A cache that cannot be written (``EVOLVE_HOME`` is a
file, read-only or full) warns once and is switched off: a cache never fails a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from code_evolver.errors import PlanError
from code_evolver.home import state_dir, state_problem
from code_evolver.plan import Plan
from code_evolver.tools.base import Tool

WHAT = "plan cache"


class PlanCache:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or state_dir("cache", "plans", what=WHAT)
        """None: the cache is off (its folder could not be made)."""

    @staticmethod
    def key(
        request: str,
        model: str,
        tools: Mapping[str, Tool],
        *,
        has_input: bool = False,
        context: str | None = None,
    ) -> str:
        """``has_input``: the plan reads piped text as ``{input}``; the text itself is not part
        of the key, so the plan serves any text piped to the same request. ``context``: the
        conversation the model read with the request, which may have shaped its plan."""
        catalogue = sorted(
            (name, t.kind, t.description, sorted(t.required_params)) for name, t in tools.items()
        )
        material: dict[str, object] = {
            "request": " ".join(request.lower().split()),
            "model": model,
            "tools": catalogue,
        }
        if has_input:  # only when set: the keys of plans cached without input stay the same
            material["input"] = True
        if context:
            material["context"] = context
        return hashlib.sha256(json.dumps(material).encode()).hexdigest()[:32]

    def get(self, key: str) -> Plan | None:
        if self.directory is None:
            return None
        path = self.directory / f"{key}.json"
        try:
            return Plan.from_json(path.read_text(encoding="utf-8"))
        except (OSError, PlanError, UnicodeDecodeError):
            return None

    def put(self, key: str, plan: Plan) -> None:
        """Store ``plan``; on any write error warn once and switch the cache off."""
        if self.directory is None:
            return
        tmp: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(plan.to_json())
            os.replace(tmp, self.directory / f"{key}.json")
        except OSError as exc:
            state_problem(WHAT, self.directory, exc)
            self.directory = None
            if tmp is not None:
                with contextlib.suppress(OSError):
                    Path(tmp).unlink(missing_ok=True)
