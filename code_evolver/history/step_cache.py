"""``--reuse``: a step's output from any earlier run, when it would do the same work again.

The same work means the same tool definition (its digest), the same rendered input and the
same params; the key is a digest of the three, kept with each step's record. A hit is read
from history.db before the tool would start, so the step costs a query instead of a model
call. Opt-in: a tool that reads the world (a clock, a web page, a random number) gives a
different answer to the same input, and only the user knows which runs may be reused.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from code_evolver.history import store
from code_evolver.history.keys import cache_key, params_json

_MISS = object()


class StepCache:
    """Looks up earlier outputs; a history that cannot be read is a cache that misses."""

    def __init__(self, digest: Callable[[str], str | None], path: Path | None = None) -> None:
        self._digest = digest
        self._path = path
        self._db: sqlite3.Connection | None = None
        self._broken = False
        self.hits = 0

    def lookup(self, tool: str, text: str, params: Mapping[str, Any]) -> tuple[bool, Any]:
        """(True, output) for a step done before exactly so; (False, None) otherwise."""
        digest = self._digest(tool)
        db = self._connection()
        if digest is None or db is None:
            return False, None
        try:
            row = db.execute(
                "SELECT output, output_file FROM step_executions WHERE cache_key = ? "
                "AND status = 'succeeded' ORDER BY rowid DESC LIMIT 1",
                (cache_key(digest, text, params_json(params)),),
            ).fetchone()
        except sqlite3.Error:
            return False, None
        if row is None:
            return False, None
        output = _load(*row)
        if output is _MISS:
            return False, None
        self.hits += 1
        return True, output

    def _connection(self) -> sqlite3.Connection | None:
        if self._db is None and not self._broken:
            try:
                self._db = store.connect(self._path, create=False)
            except FileNotFoundError:
                return None  # nothing stored yet: this step runs (a later one may find it)
            except store.HistoryError:
                self._broken = True  # unreadable: every step runs
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _load(output: str | None, output_file: str | None) -> Any:
    try:
        if output_file is not None:
            return json.loads(Path(output_file).read_text(encoding="utf-8"))
        return json.loads(output) if output is not None else _MISS
    except (OSError, ValueError):
        return _MISS
