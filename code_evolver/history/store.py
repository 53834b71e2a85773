"""``$EVOLVE_HOME/history.db``: the runs and their step executions, in SQLite.

WAL mode, so that ``evolve runs`` can read while a run writes; the schema version is
SQLite's ``user_version`` and each migration moves it one step. Reads and writes go through
this module only: the recorder writes (from its own thread, with its own connection), the
CLI reads.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from code_evolver.history.records import RunRecord, StepRecord
from code_evolver.home import evolve_home

FILE_NAME = "history.db"

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        request TEXT NOT NULL,
        plan TEXT,
        planner_source TEXT,
        config_digest TEXT,
        backend TEXT,
        model TEXT,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        wall_s REAL,
        critical_path_s REAL,
        speedup REAL,
        peak_concurrency INTEGER,
        run_input TEXT
    );
    CREATE INDEX runs_by_start ON runs (started_at);
    CREATE TABLE step_executions (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        call_id TEXT NOT NULL DEFAULT '',
        parent_call TEXT,
        tool TEXT NOT NULL,
        tool_digest TEXT,
        wave INTEGER,
        parallel_group TEXT,
        status TEXT NOT NULL,
        started_s REAL,
        finished_s REAL,
        input TEXT,
        output TEXT,
        output_file TEXT,
        error TEXT,
        PRIMARY KEY (run_id, step_id, attempt, call_id)
    );
    """,
    """
    ALTER TABLE step_executions ADD COLUMN params TEXT;
    ALTER TABLE step_executions ADD COLUMN cache_key TEXT;
    CREATE INDEX steps_by_cache_key ON step_executions (cache_key) WHERE status = 'succeeded';
    """,
)
"""Migration N takes the schema from version N to N + 1; append, never edit."""
SCHEMA_VERSION = len(MIGRATIONS)

RUN_COLUMNS = (
    "run_id, request, status, started_at, finished_at, wall_s, critical_path_s, speedup, "
    "peak_concurrency, planner_source, backend, model, config_digest"
)
STEP_COLUMNS = (
    "step_id, attempt, tool, status, started_s, finished_s, wave, parallel_group, call_id, "
    "parent_call, input, output, output_file, error, tool_digest"
)


class HistoryError(Exception):
    """The history file cannot be opened, read or written."""


def default_path() -> Path:
    return evolve_home() / FILE_NAME


def connect(path: Path | None = None, *, create: bool = True) -> sqlite3.Connection:
    """A connection with the schema brought up to date. ``create=False``: a missing file is
    an empty history (None of it is made just to be read)."""
    path = path or default_path()
    if not create and not path.exists():
        raise FileNotFoundError(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        _use_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a killed process
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db)
    except (OSError, sqlite3.Error) as exc:
        raise HistoryError(f"cannot open the run history {path}: {exc}") from exc
    return db


def _use_wal(db: sqlite3.Connection) -> None:
    """WAL mode (kept in the file: set once, by whichever opener comes first). Switching needs
    the file to itself, and SQLite answers "locked" at once instead of waiting when another
    opener holds it, so a few tries are made."""
    for attempt in range(50):
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.01 * (1 + attempt % 5))


def migrate(db: sqlite3.Connection) -> None:
    """Bring the schema up to date; two processes opening a new file at once migrate it once
    (the second waits for the first's write lock, then finds nothing left to do)."""
    if _version(db) == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = _version(db)
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"the run history has schema version {version}, newer than this evolve "
                f"knows ({SCHEMA_VERSION}); upgrade evolve, or move the file away"
            )
        for number in range(version, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[number]):
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _version(db: sqlite3.Connection) -> int:
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def _statements(script: str) -> Iterable[str]:
    return (s.strip() for s in script.split(";") if s.strip())


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
