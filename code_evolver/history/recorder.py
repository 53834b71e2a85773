"""The one writer of run history: an event listener that turns what it hears into messages
for the history's writer process (:mod:`code_evolver.history.link`), which commits them.

Listeners run on the event loop, between steps, so the listener only turns each event it
keeps into a small tuple of plain values (the output as text, the params as JSON) and hands
it to the link, which ships a batch every ``SHIP_S``; the process turns them into rows and
commits them on another core. So history costs the loop about a microsecond a step, and a
finished step's record leaves evolve within ``SHIP_S`` whatever the loop does next; once in
the pipe it is committed even if evolve is killed, since the writer reads until the pipe
closes.

A history that cannot be written never fails a run: the first error (the writer's, or the
writer gone) is a warning, and recording stops.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from code_evolver import events
from code_evolver.history import store
from code_evolver.history.keys import params_json
from code_evolver.history.link import WHAT, Message, WriterLink, link_to
from code_evolver.history.writer import INTERRUPTED_SQL
from code_evolver.home import state_problem
from code_evolver.result import skip_reason

_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


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
        self._link: WriterLink | None = None
        try:
            self.path = path or store.default_path()
        except RuntimeError as exc:  # no HOME to put it in
            state_problem(WHAT, f"~/.code_evolver/{store.FILE_NAME}", exc)
            self.path = Path(store.FILE_NAME)
        else:
            self._link = link_to(self.path)
        self._digest = digest
        self._identity = identity
        self._config_digest = config_digest
        self._sent = False
        """Whether this recorder sent anything: only then does its close wait for a commit."""
        self._open: set[str] = set()
        """Runs started and not finished yet."""
        self._requests: dict[str, str] = {}
        self._sources: dict[str, str] = {}
        """Of requests planned and not run yet: a plan that is not run is not recorded."""
        self.attempt_offsets: dict[tuple[str, str], int] = {}
        """Attempts a resumed run made before: new attempts are numbered after them."""
        self.time_offsets: dict[str, float] = {}
        """Seconds from a resumed run's first start to this start: its steps' times count
        from the first start, so that all its attempts share one time axis."""

    def __call__(self, event: events.Event) -> None:
        convert = _MESSAGES.get(type(event))
        link = self._link
        if convert is None or link is None or link.failed:
            return
        try:
            message = convert(self, event)
            if message is not None:
                self._sent = True
                # a run's start and end go at once: they are what a listing shows
                link.send(message, now=message[0] in ("run", "end"))
        except Exception as exc:  # history never fails a run: warn once, stop recording
            link._fail(exc)

    def start(self) -> None:
        """Start the writer now (if this process has none for the file yet), so that its
        start-up is over before the first run needs it; else the first event starts it."""
        if self._link is not None:
            self._link.start()

    def flush(self, timeout_s: float = 30) -> None:
        """Wait until everything heard so far is committed (tests, and ``/runs`` in a chat)."""
        if self._link is not None and self._sent:
            self._link.flush(timeout_s)

    def abandon(self, wait_s: float = 1.0) -> None:
        """The process leaves at once (a second Ctrl-C): commit what was heard, for up to
        ``wait_s``, and mark the runs still under way as interrupted, so that none is listed
        as running for ever. Their unfinished steps have no record, as after ``kill -9``.

        If the writer cannot be reached in time (a ship it interrupted, a full pipe), the
        runs are marked here, directly: what was not shipped is lost, but no run is left
        "running"."""
        link, runs = self._link, sorted(self._open)
        self._open.clear()
        if link is None or link.failed:
            return
        if runs:
            link.send(("interrupted", runs, _now()))
        if not link.flush(wait_s) and runs:
            _mark_interrupted(self.path, runs, wait_s)

    def close(self) -> None:
        """The session ends: wait until what it recorded is committed. (The writer goes on,
        for the process's next session, and ends with the process.)"""
        self.flush()

    # ------------------------------------------------------------------ events to messages

    def _plan_started(self, event: events.PlanStarted) -> None:
        self._requests[event.run_id] = event.request  # kept for its run, if it runs

    def _plan_finished(self, event: events.PlanFinished) -> Message | None:
        if event.run_id in self._open:  # a streamed plan: its run started before it was done
            return ("source", event.run_id, event.source)
        self._sources[event.run_id] = event.source
        return None

    def _run_started(self, event: events.RunStarted) -> Message:
        run_id = event.run_id
        self._open.add(run_id)
        _LIVE.add(self)
        attempts = {s: n for (r, s), n in self.attempt_offsets.items() if r == run_id}
        return (
            "run", run_id, self._requests.pop(run_id, None), self._sources.pop(run_id, None),
            event.plan_json, *self._places(event.steps), self._config_digest, _now(),
            event.run_input, attempts, self.time_offsets.get(run_id, 0.0),
        )  # fmt: skip

    def _plan_extended(self, event: events.PlanExtended) -> Message:
        return ("extend", event.run_id, event.plan_json, *self._places(event.steps))

    def _places(
        self, steps: tuple[events.StepInfo, ...]
    ) -> tuple[dict[str, int], dict[str, str | None]]:
        """Each step's wave (the rest of its place the writer reads in the plan), and the
        digest of each tool the steps use."""
        tools = {step.tool for step in steps}
        return {s.step_id: s.wave for s in steps}, {t: self._digest(t) for t in tools}

    def _succeeded(self, event: events.StepSucceeded) -> Message:
        output, as_json = event.output, None
        if output is not None and type(output) is not str:
            output, as_json = None, _ENCODER.encode(output)
        params = None if event.params is None else params_json(event.params)
        return (
            "step", event.run_id, event.step_id, event.attempt, "succeeded", event.began,
            event.at, event.input, output, as_json, params, None,
        )  # fmt: skip

    def _failed_attempt(self, event: events.StepFailed | events.StepRetrying) -> Message:
        status = event.status if isinstance(event, events.StepFailed) else "failed"
        return (
            "step", event.run_id, event.step_id, event.attempt, status, event.began, event.at,
            event.input, None, None, None, event.error,
        )  # fmt: skip

    def _cancelled(self, event: events.StepCancelled) -> Message:
        return (
            "step", event.run_id, event.step_id, event.attempt, "cancelled", event.began,
            event.at, None, None, None, None, "cancelled",
        )  # fmt: skip

    def _skipped(self, event: events.StepSkipped) -> Message:
        return (
            "step", event.run_id, event.step_id, 0, "skipped", None, event.at, None, None,
            None, None, skip_reason(event.because_of),
        )  # fmt: skip

    def _call(self, event: events.CallFinished) -> Message | None:
        if event.status == "retrying":
            return None
        return (
            "call", event.run_id, event.step_id, event.step_attempt, event.call_id,
            event.parent_call, event.tool, self._digest(event.tool), event.status,
            max(0.0, event.at - event.duration_s), event.at, event.error,
        )  # fmt: skip

    def _run_finished(self, event: events.RunFinished) -> Message:
        self._open.discard(event.run_id)
        backend, _, model = (self._identity() or "").partition(":")
        return (
            "end", event.run_id, event.status, _now(), event.run_s, event.critical_path_s,
            event.speedup, event.peak_concurrency, backend or None, model or None,
        )  # fmt: skip


_MESSAGES: dict[type, Callable[[HistoryRecorder, Any], Message | None]] = {
    events.PlanStarted: HistoryRecorder._plan_started,
    events.PlanFinished: HistoryRecorder._plan_finished,
    events.RunStarted: HistoryRecorder._run_started,
    events.PlanExtended: HistoryRecorder._plan_extended,
    events.StepSucceeded: HistoryRecorder._succeeded,
    events.StepRetrying: HistoryRecorder._failed_attempt,
    events.StepFailed: HistoryRecorder._failed_attempt,
    events.StepSkipped: HistoryRecorder._skipped,
    events.StepCancelled: HistoryRecorder._cancelled,
    events.CallFinished: HistoryRecorder._call,
    events.RunFinished: HistoryRecorder._run_finished,
}
"""The events history keeps, and the message each becomes."""

_LIVE: weakref.WeakSet[HistoryRecorder] = weakref.WeakSet()
"""The recorders of this process that have heard a run."""


def abandon_all() -> None:
    """Every recorder's :meth:`~HistoryRecorder.abandon`: the process leaves at once."""
    for recorder in list(_LIVE):
        recorder.abandon()


def _mark_interrupted(path: Path, runs: list[str], wait_s: float) -> None:
    try:
        db = store.connect(path, create=False)
    except (store.HistoryError, OSError):
        return
    try:
        db.execute(f"PRAGMA busy_timeout = {int(wait_s * 1000)}")
        db.executemany(INTERRUPTED_SQL, [(_now(), run_id) for run_id in runs])
    except Exception:  # leaving anyway: the run stays as it was
        return
    finally:
        db.close()


def _now() -> str:
    return datetime.now(UTC).isoformat()
