"""The plan cache: the same request, with the same model and tools, reuses the last good plan.

Plans from the LLM cost seconds to minutes; a cached one costs a file read. The key covers
everything that shapes a plan: the request (case and spacing ignored), the backend and model,
and each tool's name, kind, description and params. Files are written atomically, and one that
cannot be read back is ignored, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from code_evolver.errors import PlanError
from code_evolver.home import cache_dir
from code_evolver.plan import Plan
from code_evolver.tools.base import Tool


class PlanCache:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or cache_dir("plans")

    @staticmethod
    def key(request: str, model: str, tools: Mapping[str, Tool]) -> str:
        catalogue = sorted(
            (name, t.kind, t.description, sorted(t.required_params)) for name, t in tools.items()
        )
        material = json.dumps(
            {"request": " ".join(request.lower().split()), "model": model, "tools": catalogue}
        )
        return hashlib.sha256(material.encode()).hexdigest()[:32]

    def get(self, key: str) -> Plan | None:
        path = self.directory / f"{key}.json"
        try:
            return Plan.from_json(path.read_text(encoding="utf-8"))
        except (OSError, PlanError, UnicodeDecodeError):
            return None

    def put(self, key: str, plan: Plan) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(plan.to_json())
            os.replace(tmp, self.directory / f"{key}.json")
        except OSError:
            Path(tmp).unlink(missing_ok=True)
