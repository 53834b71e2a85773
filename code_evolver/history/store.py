"""``$EVOLVE_HOME/history.db``: the runs and their step executions, in SQLite.

WAL mode, so that ``evolve runs`` can read while a run writes; the schema version is
SQLite's ``user_version`` and each migration moves it one step (:mod:`schema`). Reads go
through this module; the one writer is the recorder's writer process.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from code_evolver.history import schema
from code_evolver.history.records import RunRecord, StepRecord
from code_evolver.history.schema import (
    MIGRATIONS as MIGRATIONS,
)
from code_evolver.history.schema import (
    SCHEMA_VERSION as SCHEMA_VERSION,
)
from code_evolver.history.schema import (
    HistoryError as HistoryError,
)
from code_evolver.history.schema import (
    migrate as migrate,
)
from code_evolver.home import evolve_home

FILE_NAME = "history.db"


RUN_COLUMNS = (
    "run_id, request, status, started_at, finished_at, wall_s, critical_path_s, speedup, "
    "peak_concurrency, planner_source, backend, model, config_digest"
)
STEP_COLUMNS = (
    "step_id, attempt, tool, status, started_s, finished_s, wave, parallel_group, call_id, "
    "parent_call, input, output, output_file, error, tool_digest"
)


def default_path() -> Path:
    return evolve_home() / FILE_NAME


def connect(path: Path | None = None, *, create: bool = True) -> sqlite3.Connection:
    """:func:`schema.connect` to ``path``, by default ``$EVOLVE_HOME/history.db``."""
    return schema.connect(path or default_path(), create=create)


# ---------------------------------------------------------------------- reading


def list_runs(
    db: sqlite3.Connection, *, limit: int = 20, status: str | None = None
) -> list[RunRecord]:
    """Newest first, without their steps."""
    where, args = ("WHERE status = ?", [status]) if status else ("", [])
    rows = db.execute(
        f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY started_at DESC, rowid DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [_run(row) for row in rows]


def find_run(db: sqlite3.Connection, prefix: str) -> RunRecord:
    """The run whose id is ``prefix`` or starts with it, with its plan and steps."""
    rows = db.execute(
        f"SELECT {RUN_COLUMNS}, plan, run_input FROM runs WHERE run_id LIKE ? ESCAPE '\\' "
        "ORDER BY started_at DESC LIMIT 2",
        (_like_prefix(prefix),),
    ).fetchall()
    if not rows:
        raise LookupError(f"no run {prefix!r} in the history; `evolve runs` lists them")
    if len(rows) > 1 and rows[0][0] != prefix:
        raise LookupError(f"{prefix!r} names more than one run; give more of its id")
    row = rows[0]
    steps = db.execute(
        f"SELECT {STEP_COLUMNS} FROM step_executions WHERE run_id = ? "
        "ORDER BY started_s IS NULL, started_s, step_id, attempt, call_id",
        (row[0],),
    ).fetchall()
    plan = json.loads(row[-2]) if row[-2] else None
    return _run(row[:-2], plan=plan, steps=tuple(_step(s) for s in steps), run_input=row[-1])


def remove_runs(
    db: sqlite3.Connection, run_ids: Sequence[str] = (), *, older_than: timedelta | None = None
) -> int:
    """Delete runs by id (prefixes allowed) or by age; returns how many went."""
    ids = [find_run(db, prefix).run_id for prefix in run_ids]
    if older_than is not None:
        cutoff = (datetime.now(UTC) - older_than).isoformat()
        ids += [r[0] for r in db.execute("SELECT run_id FROM runs WHERE started_at < ?", (cutoff,))]
    if not ids:
        return 0
    db.execute("BEGIN IMMEDIATE")
    for run_id in dict.fromkeys(ids):
        db.execute("DELETE FROM step_executions WHERE run_id = ?", (run_id,))
        db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
    db.execute("COMMIT")
    return len(dict.fromkeys(ids))


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


def _run(
    row: Sequence[Any],
    *,
    plan: dict[str, Any] | None = None,
    steps: tuple[StepRecord, ...] = (),
    run_input: str | None = None,
) -> RunRecord:
    (run_id, request, status, started, finished, wall, critical, speedup, peak) = row[:9]
    source, backend, model, digest = row[9:13]
    return RunRecord(
        run_id=run_id,
        request=request,
        status=status,
        started_at=started,
        finished_at=finished,
        wall_s=wall,
        critical_path_s=critical,
        speedup=speedup,
        peak_concurrency=peak,
        planner_source=source,
        backend=backend,
        model=model,
        config_digest=digest,
        plan=plan,
        steps=steps,
        run_input=run_input,
    )


def _step(row: Sequence[Any]) -> StepRecord:
    (step_id, attempt, tool, status, started, finished, wave, group, call_id) = row[:9]
    parent, text, output, output_file, error, digest = row[9:15]
    return StepRecord(
        step_id=step_id,
        attempt=attempt,
        tool=tool,
        status=status,
        started_s=started,
        finished_s=finished,
        wave=wave,
        parallel_group=group,
        call_id=call_id or None,
        parent_call=parent,
        input=text,
        output=json.loads(output) if output is not None else None,
        output_file=output_file,
        error=error,
        tool_digest=digest,
    )
