"""The history file's schema and how it is opened: WAL, migrations, the version.

Only the standard library, so that the history writer (a process of its own, see
:mod:`code_evolver.history.writer`) starts in a few milliseconds.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable

TYPE_CHECKING = False  # not typing's: see code_evolver/__init__.py
if TYPE_CHECKING:
    from pathlib import Path  # not at run time: 4 ms of the writer's start

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


class HistoryError(Exception):
    """The history file cannot be opened, read or written."""


def connect(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """A connection with the schema brought up to date. ``create=False``: a missing file is
    an empty history (None of it is made just to be read)."""
    if not create and not os.path.exists(path):
        raise FileNotFoundError(path)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
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
