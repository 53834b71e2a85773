"""The one writer of run history: an event listener, and a thread that commits what it hears.

Listeners run on the event loop, between steps, so the listener only puts the events it
keeps on a queue (well under a microsecond each). Everything else happens in the writer
thread: it reads the events in order, keeps what it needs of them (each step's wave and
tool), turns them into rows and commits them in one transaction per batch. It waits
``GROUP_S`` after the first event of a batch, so that a burst of steps costs one transaction
and the thread wakes rarely (each wake competes with the event loop for the interpreter):
a step's record is on disk (in the WAL, which outlives a killed process) within about
``GROUP_S`` of the step's end, whatever the run does next, provided the event loop pauses now
and then. A loop that never waits (thousands of no-op steps in a row) starves the thread: it
drops the interpreter at every poll and takes it back before the waiting thread can, so the
records are committed at its first pause (measured: a 60 ms run of 1,000 no-op steps is
committed in one batch once it ends).

A history that cannot be written never fails a run: the first error is a warning, and the
recorder stops writing.
"""

from __future__ import annotations

import json
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from code_evolver import events
from code_evolver.history import store
from code_evolver.history.keys import cache_key, params_json
from code_evolver.home import state_problem
from code_evolver.result import skip_reason

if TYPE_CHECKING:
    import sqlite3

WHAT = "run history"
GROUP_S = 0.01
MAX_INLINE_OUTPUT = 256 * 1024
"""Outputs larger than this (as JSON) go to a file beside the database; the row points to it."""

_KEPT = frozenset(
    {
        events.PlanStarted,
        events.PlanFinished,
        events.RunStarted,
        events.PlanExtended,
        events.StepSucceeded,
        events.StepRetrying,
        events.StepFailed,
        events.StepSkipped,
        events.StepCancelled,
        events.CallFinished,
        events.RunFinished,
    }
)
_STOP = object()
_STEP_SQL = (
    "INSERT OR REPLACE INTO step_executions (run_id, step_id, attempt, call_id, parent_call, "
    "tool, tool_digest, wave, parallel_group, status, started_s, finished_s, input, output, "
    "output_file, error, params, cache_key) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_Statement = tuple[str, Sequence[Any]]


class HistoryRecorder:
    """Subscribe an instance to a session's event bus; :meth:`close` when the session ends."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        digest: Callable[[str], str | None] = lambda tool: None,
        identity: Callable[[], str | None] = lambda: None,
        config_digest: str | None = None,
    ) -> None:
        self._failed = False
        try:
            self.path = path or store.default_path()
        except RuntimeError as exc:  # no HOME to put it in
            state_problem(WHAT, f"~/.code_evolver/{store.FILE_NAME}", exc)
            self.path = Path(store.FILE_NAME)
            self._failed = True
        self._digest = digest
        self._identity = identity
        self._config_digest = config_digest
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._urgent = threading.Event()
        """Set by flush and close: commit what there is now, without waiting for more."""
        self._rows = _Rows(self)
        self._open: set[str] = set()
        """Runs started and not finished yet."""
        self.attempt_offsets: dict[tuple[str, str], int] = {}
        """Attempts a resumed run made before: new attempts are numbered after them."""
        self.time_offsets: dict[str, float] = {}
        """Seconds from a resumed run's first start to this start: its steps' times count
        from the first start, so that all its attempts share one time axis."""

    def __call__(self, event: events.Event) -> None:
        kind = type(event)
        if kind in _KEPT and not self._failed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._write, name="history", daemon=True)
                self._thread.start()
                _LIVE.add(self)
            self._queue.put(event)
            if isinstance(event, events.RunStarted):
                self._open.add(event.run_id)
            elif isinstance(event, events.RunFinished):
                self._open.discard(event.run_id)

    def flush(self, timeout_s: float = 30) -> None:
        """Wait until everything heard so far is committed (tests, and ``/runs`` in a chat)."""
        if self._thread is None or not self._thread.is_alive():
            return
        done = threading.Event()
        self._queue.put(done)
        self._urgent.set()
        done.wait(timeout=timeout_s)

    def abandon(self, wait_s: float = 1.0) -> None:
        """The process leaves at once (a second Ctrl-C): commit what was heard, for up to
        ``wait_s``, and mark the runs still under way as interrupted, so that none is listed
        as running for ever. Their unfinished steps have no record, as after ``kill -9``."""
        if not self._open or self._failed:
            return
        self.flush(wait_s)
        try:
            db = store.connect(self.path, create=False)
        except (store.HistoryError, OSError):
            return
        try:
            db.execute(f"PRAGMA busy_timeout = {int(wait_s * 1000)}")
            db.executemany(
                "UPDATE runs SET status = 'interrupted', finished_at = ? "
                "WHERE run_id = ? AND status = 'running'",
                [(datetime.now(UTC).isoformat(), run_id) for run_id in self._open],
            )
        except Exception:  # leaving anyway: the run stays as it was
            return
        finally:
            db.close()
        self._open.clear()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._urgent.set()
            self._thread.join(timeout=30)
            self._thread = None

    # ------------------------------------------------------------------ the writer thread

    def _write(self) -> None:
        try:
            db = store.connect(self.path)
        except store.HistoryError as exc:
            self._failed = True
            state_problem(WHAT, self.path, exc.__cause__ or exc)
            return
        with db:
            while True:
                batch = [self._queue.get()]
                if not isinstance(batch[0], threading.Event) and batch[0] is not _STOP:
                    self._urgent.wait(GROUP_S)  # let the rest of a burst come, unless asked
                    self._urgent.clear()
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if not self._failed:
                    self._commit(db, batch)
                for item in batch:
                    if isinstance(item, threading.Event):
                        item.set()
                if self._failed or any(item is _STOP for item in batch):
                    return

    def _commit(self, db: sqlite3.Connection, batch: list[Any]) -> None:
        try:
            runs, steps, ends = self._rows.of(batch)
            db.execute("BEGIN")
            for statement in runs:  # a run's row before its steps' rows
                db.execute(*statement)
            db.executemany(_STEP_SQL, steps)
            for statement in ends:  # and its end after them
                db.execute(*statement)
            db.execute("COMMIT")
        except Exception as exc:  # any failure: warn once, stop writing
            self._failed = True
            state_problem(WHAT, self.path, exc)


_LIVE: weakref.WeakSet[HistoryRecorder] = weakref.WeakSet()
"""The recorders of this process that have heard a run."""


def abandon_all() -> None:
    """Every recorder's :meth:`~HistoryRecorder.abandon`: the process leaves at once."""
    for recorder in list(_LIVE):
        recorder.abandon()


class _Rows:
    """Events to rows, in the writer thread; remembers what later events need."""

    def __init__(self, recorder: HistoryRecorder) -> None:
        self.recorder = recorder
        self.requests: dict[str, str] = {}
        self.sources: dict[str, str] = {}
        self.places: dict[str, dict[str, tuple[int, str | None, str]]] = {}

    def of(
        self, batch: list[Any]
    ) -> tuple[list[_Statement], list[Sequence[Any]], list[_Statement]]:
        """A batch's run statements, its step rows, and its runs' ends."""
        runs: list[_Statement] = []
        ends: list[_Statement] = []
        steps: list[Sequence[Any]] = []
        for event in batch:
            match event:
                case events.StepSucceeded():
                    steps.append(self.step(event, "succeeded", event.output, None, event.params))
                case events.StepFailed():
                    steps.append(self.step(event, event.status, None, event.error))
                case events.StepRetrying():
                    steps.append(self.step(event, "failed", None, event.error))
                case events.StepCancelled():
                    steps.append(self.step(event, "cancelled", None, "cancelled"))
                case events.StepSkipped():
                    because = skip_reason(event.because_of)
                    steps.append(self.step(event, "skipped", None, because))
                case events.CallFinished() if event.status != "retrying":
                    steps.append(self.call(event))
                case events.PlanStarted(run_id=run_id, request=request):
                    self.requests[run_id] = request
                case events.PlanFinished(run_id=run_id, source=source):
                    self.sources[run_id] = source
                case events.RunStarted(run_id=run_id, steps=infos):
                    self.places[run_id] = _places(infos)
                    runs.append(self.run_started(event))
                case events.PlanExtended(run_id=run_id, steps=infos, plan=plan):
                    self.places.setdefault(run_id, {}).update(_places(infos))
                    text = json.dumps(plan, ensure_ascii=False)
                    runs.append(("UPDATE runs SET plan = ? WHERE run_id = ?", (text, run_id)))
                case events.RunFinished(run_id=run_id):
                    ends.append(self.run_finished(event))
        return runs, steps, ends

    def run_started(self, event: events.RunStarted) -> _Statement:
        run_id = event.run_id
        return (
            "INSERT INTO runs (run_id, request, plan, planner_source, config_digest, status, "
            "started_at, run_input) VALUES (?, ?, ?, ?, ?, 'running', ?, ?) "
            "ON CONFLICT (run_id) DO UPDATE SET plan = excluded.plan, status = 'running', "
            "planner_source = coalesce(excluded.planner_source, planner_source)",
            (
                run_id,
                self.requests.pop(run_id, event.plan.get("request", "")),
                json.dumps(event.plan, ensure_ascii=False),
                self.sources.pop(run_id, None),
                self.recorder._config_digest,
                datetime.now(UTC).isoformat(),
                event.run_input,
            ),
        )

    def run_finished(self, event: events.RunFinished) -> _Statement:
        run_id = event.run_id
        self.places.pop(run_id, None)
        backend, _, model = (self.recorder._identity() or "").partition(":")
        return (
            "UPDATE runs SET status = ?, finished_at = ?, wall_s = ?, critical_path_s = ?, "
            "speedup = ?, peak_concurrency = ?, backend = ?, model = ? WHERE run_id = ?",
            (
                event.status,
                datetime.now(UTC).isoformat(),
                event.run_s,
                event.critical_path_s,
                event.speedup,
                event.peak_concurrency,
                backend or None,
                model or None,
                run_id,
            ),
        )

    def step(
        self,
        event: Any,
        status: str,
        output: Any,
        error: str | None,
        params: Mapping[str, Any] | None = None,
    ) -> Sequence[Any]:
        run_id, step_id = event.run_id, event.step_id
        began = getattr(event, "began", None)
        attempt = (getattr(event, "attempt", 0) or 1) + self.recorder.attempt_offsets.get(
            (run_id, step_id), 0
        )
        wave, group, tool = self.places.get(run_id, {}).get(step_id, (None, None, ""))
        shift = self.recorder.time_offsets.get(run_id, 0.0)
        finished = event.at + shift if began is not None else None
        began = began + shift if began is not None else None
        digest = self.recorder._digest(tool) if tool else None
        text = getattr(event, "input", None)
        stored, spilled = _stored_output(output, self.recorder.path, run_id, f"{step_id}-{attempt}")
        given = params_json(params) if params is not None else None
        key = None
        if given is not None and digest is not None and text is not None:
            key = cache_key(digest, text, given)
        return (
            run_id, step_id, attempt, "", None, tool, digest, wave, group, status,
            began, finished, text, stored, spilled, error, given, key,
        )  # fmt: skip

    def call(self, event: events.CallFinished) -> Sequence[Any]:
        shift = self.recorder.time_offsets.get(event.run_id, 0.0)
        offset = self.recorder.attempt_offsets.get((event.run_id, event.step_id), 0)
        began = max(0.0, event.at - event.duration_s) + shift
        return (
            event.run_id, event.step_id, event.step_attempt + offset, event.call_id,
            event.parent_call, event.tool,
            self.recorder._digest(event.tool), None, None, event.status, began,
            event.at + shift, None, None, None, event.error, None, None,
        )  # fmt: skip


def _places(steps: Iterable[events.StepInfo]) -> dict[str, tuple[int, str | None, str]]:
    """Each step's wave, parallel group and tool."""
    return {
        s.step_id: (s.wave, None if s.parallel_group is None else str(s.parallel_group), s.tool)
        for s in steps
    }


def _stored_output(
    output: Any, folder: Path, run_id: str, name: str
) -> tuple[str | None, str | None]:
    """The output as JSON for its column, or (for a large one) the file it was written to."""
    if output is None:
        return None, None
    text = json.dumps(output, ensure_ascii=False, default=str)
    if len(text) <= MAX_INLINE_OUTPUT:
        return text, None
    target = folder.parent / "history-outputs" / run_id / f"{name}.json"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        return json.dumps(f"(output of {len(text):,} characters not kept: {exc})"), None
    return None, str(target)
