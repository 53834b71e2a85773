"""The one writer of run history: an event listener, and a thread that commits what it hears.

Listeners run on the event loop, between steps, so the listener does only what must be done
there (pick the fields of the event, a few dictionary look-ups) and hands a row to the writer
thread. The thread commits as soon as it has rows, all it has in one transaction: a step's
record is on disk (in the WAL, which outlives a killed process) about a millisecond after the
step ended, whatever the run does next, and a 1,000-step run costs one transaction per burst
of steps instead of one per step.

A history that cannot be written never fails a run: the first error is a warning, and the
recorder stops writing.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from code_evolver import events
from code_evolver.history import store
from code_evolver.history.step_cache import cache_key
from code_evolver.home import state_problem

if TYPE_CHECKING:
    from code_evolver.organizer import OrganizedPlan

WHAT = "run history"
MAX_INLINE_OUTPUT = 256 * 1024
"""Outputs larger than this (as JSON) go to a file beside the database; the row points to it."""

_Statement = tuple[str, Sequence[Any]]
_Op = _Statement | Callable[[], _Statement] | threading.Event
"""A statement, one made in the writer thread (JSON of an output), or a flush marker."""
_STOP = threading.Event()

_STEP_SQL = (
    "INSERT OR REPLACE INTO step_executions (run_id, step_id, attempt, call_id, parent_call, "
    "tool, tool_digest, wave, parallel_group, status, started_s, finished_s, input, output, "
    "output_file, error, params, cache_key) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


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
        try:
            self.path = path or store.default_path()
        except RuntimeError as exc:  # no HOME to put it in
            state_problem(WHAT, f"~/.code_evolver/{store.FILE_NAME}", exc)
            self.path = Path(store.FILE_NAME)
            self._failed = True
        self._failed = False
        self._digest = digest
        self._identity = identity
        self._config_digest = config_digest
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._requests: dict[str, str] = {}
        self._sources: dict[str, str] = {}
        self._started: dict[tuple[str, str], tuple[float, int]] = {}
        """When each running step's current attempt began, and its number."""
        self._places: dict[str, dict[str, tuple[int, str | None, str]]] = {}
        self.attempt_offsets: dict[tuple[str, str], int] = {}
        """Attempts a resumed run made before: new attempts are numbered after them."""
        self.time_offsets: dict[str, float] = {}
        """Seconds from a resumed run's first start to this start: its steps' times count
        from the first start, so that all its attempts share one time axis."""

    # ------------------------------------------------------------------ listening

    def __call__(self, event: events.Event) -> None:
        if self._failed:
            return
        match event:
            case events.StepStarted(step_id=step_id, attempt=attempt, at=at, run_id=run_id):
                self._started[run_id, step_id] = (at, attempt)
            case events.StepSucceeded():
                self._step(event, "succeeded", event.output, None, event.input, event.params)
            case events.StepFailed():
                self._step(event, event.status, None, event.error, event.input)
            case events.StepRetrying():
                self._step(event, "failed", None, event.error, event.input)
            case events.StepCancelled() | events.StepSkipped():
                error = "cancelled" if isinstance(event, events.StepCancelled) else None
                if isinstance(event, events.StepSkipped):
                    error = f"skipped: {event.because_of} did not succeed"
                status = "cancelled" if isinstance(event, events.StepCancelled) else "skipped"
                self._step(event, status, None, error, None)
            case events.CallFinished():
                self._call(event)
            case events.PlanStarted(run_id=run_id, request=request):
                self._requests[run_id] = request
            case events.PlanFinished(run_id=run_id, source=source):
                self._sources[run_id] = source
            case events.RunStarted(run_id=run_id, organized=organized, run_input=run_input):
                self._places[run_id] = _places(organized)
                self._run_started(run_id, organized, run_input)
            case events.PlanExtended(run_id=run_id, organized=organized):
                self._places[run_id] = _places(organized)
                plan = organized.plan
                self._put(
                    lambda: ("UPDATE runs SET plan = ? WHERE run_id = ?", (plan.to_json(), run_id))
                )
            case events.RunFinished(result=result, run_id=run_id):
                self._run_finished(run_id, result)

    def _run_started(self, run_id: str, organized: OrganizedPlan, run_input: str | None) -> None:
        plan = organized.plan
        request = self._requests.pop(run_id, plan.request)
        source = self._sources.pop(run_id, None)
        started = datetime.now(UTC).isoformat()
        digest = self._config_digest

        def insert() -> tuple[str, Sequence[Any]]:
            return (
                "INSERT INTO runs (run_id, request, plan, planner_source, config_digest, status, "
                "started_at, run_input) VALUES (?, ?, ?, ?, ?, 'running', ?, ?) "
                "ON CONFLICT (run_id) DO UPDATE SET plan = excluded.plan, status = 'running', "
                "planner_source = coalesce(excluded.planner_source, planner_source)",
                (run_id, request, plan.to_json(), source, digest, started, run_input),
            )

        self._put(insert)

    def _run_finished(self, run_id: str, result: Any) -> None:
        self._places.pop(run_id, None)
        for key in [k for k in self._started if k[0] == run_id]:
            del self._started[key]
        identity = self._identity() or ""
        backend, _, model = identity.partition(":")
        self._put(
            (
                "UPDATE runs SET status = ?, finished_at = ?, wall_s = ?, critical_path_s = ?, "
                "speedup = ?, peak_concurrency = ?, backend = ?, model = ? WHERE run_id = ?",
                (
                    result.status.value,
                    datetime.now(UTC).isoformat(),
                    result.run_s,
                    result.critical_path_s,
                    result.speedup,
                    result.peak_concurrency,
                    backend or None,
                    model or None,
                    run_id,
                ),
            )
        )

    def _step(
        self,
        event: Any,
        status: str,
        output: Any,
        error: str | None,
        text: str | None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        run_id, step_id = event.run_id, event.step_id
        began, attempt = self._started.get((run_id, step_id), (None, 1))
        attempt = getattr(event, "attempt", attempt) + self.attempt_offsets.get(
            (run_id, step_id), 0
        )
        wave, group, tool = self._places.get(run_id, {}).get(step_id, (None, None, ""))
        shift = self.time_offsets.get(run_id, 0.0)
        finished = event.at + shift if began is not None else None
        began = began + shift if began is not None else None
        digest = self._digest(tool) if tool else None
        path = self.path

        def row() -> tuple[str, Sequence[Any]]:
            stored, spilled = _stored_output(output, path, run_id, f"{step_id}-{attempt}")
            key = None
            if params is not None and digest is not None and text is not None:
                key = cache_key(digest, text, params)
            given = json.dumps(params, default=str) if params else None
            return _STEP_SQL, (
                run_id, step_id, attempt, "", None, tool, digest, wave, group, status,
                began, finished, text, stored, spilled, error, given, key,
            )  # fmt: skip

        self._put(row)

    def _call(self, event: events.CallFinished) -> None:
        if event.status == "retrying":
            return
        run_id = event.run_id
        shift = self.time_offsets.get(run_id, 0.0)
        began = max(0.0, event.at - event.duration_s) + shift
        digest = self._digest(event.tool)
        row = (
            run_id, event.step_id, 1, event.call_id, event.parent_call, event.tool, digest,
            None, None, event.status, began, event.at + shift, None, None, None, event.error,
            None, None,
        )  # fmt: skip
        self._put((_STEP_SQL, row))

    # ------------------------------------------------------------------ writing

    def _put(self, op: _Op) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._write, name="history", daemon=True)
            self._thread.start()
        self._queue.put(op)

    def _write(self) -> None:
        """The writer thread: each batch of what came in one transaction, committed at once."""
        try:
            db = store.connect(self.path)
        except store.HistoryError as exc:
            self._failed = True
            state_problem(WHAT, self.path, exc.__cause__ or exc)
            return
        with db:
            while True:
                batch = [self._queue.get()]
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                try:
                    db.execute("BEGIN")
                    for op in batch:
                        statement = op() if callable(op) else op
                        if isinstance(statement, tuple):
                            db.execute(*statement)
                    db.execute("COMMIT")
                except Exception as exc:  # any failure: warn once, stop writing
                    self._failed = True
                    state_problem(WHAT, self.path, exc)
                finally:
                    for op in batch:
                        if isinstance(op, threading.Event):
                            op.set()
                if self._failed or any(op is _STOP for op in batch):
                    return

    def flush(self) -> None:
        """Wait until everything heard so far is committed (tests, and the end of a session)."""
        if self._thread is None or not self._thread.is_alive():
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout=30)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
            self._thread = None


def _places(organized: OrganizedPlan) -> dict[str, tuple[int, str | None, str]]:
    """Each step's wave, parallel group and tool."""
    places: dict[str, tuple[int, str | None, str]] = {}
    steps = organized.steps
    for number, wave in enumerate(organized.waves, start=1):
        for step_id in wave:
            step = steps[step_id]
            group = None if step.parallel_group is None else str(step.parallel_group)
            places[step_id] = (number, group, step.tool)
    return places


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
