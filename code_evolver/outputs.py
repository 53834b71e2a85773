"""A run's outputs, held in memory up to a budget and written to files beyond it.

A run of many steps with large outputs must not grow without bound (each output is also kept
for the steps that read it and for the run's record). ``execution.max_output_bytes_total``
caps what a run holds; an output that would pass it is written to the run's folder
(``$EVOLVE_HOME/runs/RUN_ID/outputs/``, or a temporary folder when that cannot be written)
and only a :class:`Spilled` pointer is kept. Steps that read it load it when they start;
``--json`` names the file.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from code_evolver.home import state_dir, warn_once
from code_evolver.tools.base import Output


@dataclass(frozen=True)
class Spilled:
    """An output kept in a file instead of memory."""

    path: Path
    size: int
    """Bytes in the file (UTF-8)."""
    is_json: bool

    def load(self) -> Output:
        text = self.path.read_text(encoding="utf-8")
        if not self.is_json:
            return text
        value: dict[str, Any] | list[Any] = json.loads(text)
        return value

    def preview(self, chars: int) -> str:
        """The start of the output, without reading the whole file."""
        with self.path.open(encoding="utf-8", errors="replace") as f:
            return f.read(chars)


class OutputBudget:
    """Keeps outputs in memory while the run's total stays within ``limit`` bytes."""

    def __init__(self, limit: int, run_id: str) -> None:
        self.limit = limit
        self.run_id = run_id
        self.held = 0
        """Bytes of outputs held in memory."""
        self._folder: Path | None = None
        self._files = 0

    def keep(self, name: str, output: Output) -> Output | Spilled:
        """``output`` itself, or a pointer to the file it was written to."""
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        size = len(text.encode("utf-8", errors="replace"))
        if self.held + size <= self.limit:
            self.held += size
            return output
        self._files += 1  # numbered: two long names clipped alike must not share a file
        suffix = "txt" if isinstance(output, str) else "json"
        path = self.folder() / f"{self._files:05d}-{_safe(name)}.{suffix}"
        path.write_text(text, encoding="utf-8", errors="replace")
        return Spilled(path, size, not isinstance(output, str))

    def folder(self) -> Path:
        if self._folder is None:
            folder = state_dir("runs", self.run_id, "outputs", what="run's output files")
            if folder is None:  # warned once: outputs still go somewhere, and say where
                folder = Path(tempfile.mkdtemp(prefix=f"evolve-{self.run_id}-outputs-"))
                warn_once("outputs-temp", f"large outputs of this run are kept in {folder}")
            self._folder = folder
        return self._folder


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100]
