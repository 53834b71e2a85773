"""The one writer of run history: an event listener that ships what it hears to a writer
process (:mod:`code_evolver.history.writer`), which commits it.

Listeners run on the event loop, between steps, so the listener only turns each event it
keeps into a small tuple of plain values (the output as text, the params as JSON) and
appends it. ``SHIP_S`` after the first of a batch, the batch goes down the pipe in one
write; the process turns it into rows and commits them on another core. So history costs
the loop about a microsecond a step, and a finished step's record leaves evolve within
``SHIP_S`` whatever the loop does next; once in the pipe, it is committed even if evolve is
killed, since the writer reads until the pipe closes.

The writer starts with the first event kept (a request's planning, in a one-shot run), so
its start-up overlaps the planning. A history that cannot be written never fails a run:
the first error (the writer's, or the writer gone) is a warning, and the recorder stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from code_evolver import events
from code_evolver.history import store
from code_evolver.history.keys import params_json
from code_evolver.history.writer import HEADER
from code_evolver.home import state_problem, warn_once
from code_evolver.result import skip_reason

WHAT = "run history"
SHIP_S = 0.005
"""How long a record may wait in evolve before it is shipped: a burst of steps is one write."""
PIPE_BYTES = 1 << 20
"""The pipe's buffer (the default is 64 KiB): a burst of large outputs need not wait."""
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def start_command(then: str = "main(sys.argv[1])") -> str:
    """The writer's ``python -S -I -c`` program (no site: only the standard library and this
    package, found where it is): import the writer, then ``then``."""
    return (
        f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
        f"from code_evolver.history.writer import main; {then}"
    )


_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)

Message = tuple[Any, ...]


class WriterProcess(Protocol):
    """The writer as the recorder sees it: what it is sent, what it answers, its end."""

    stdin: IO[bytes] | None
    stdout: IO[bytes] | None
    stderr: IO[bytes] | None

    def wait(self, timeout: float | None = None) -> int: ...


def launch_writer(path: Path) -> WriterProcess:
    """The writer process for the history at ``path``. (Unit tests, which start no process,
    put the same writer on a thread instead.)"""
    return subprocess.Popen(
        [sys.executable, "-S", "-I", "-c", start_command(), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # Ctrl-C is evolve's to handle, not the writer's
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
        self._pending: list[Message] = []
        self._backlog = bytearray()
        """Shipped, not yet taken by the pipe (it was full)."""
        self._shipping_on: asyncio.AbstractEventLoop | None = None
        """The loop a ship is scheduled on (a loop that closed drops it, so this is checked)."""
        self._process: WriterProcess | None = None
        self._reader: threading.Thread | None = None
        self._acked = threading.Condition()
        self._last_ack = 0
        self._flushes = 0
        self._gone = False
        self._closing = False
        self._sent = False
        """Whether anything was shipped: only then do flush and close wait for the writer."""
        self._lock = threading.Lock()
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
        if convert is None or self._failed:
            return
        message = convert(self, event)
        if message is None:
            return
        if self._process is None and not self._start():
            return
        self._pending.append(message)
        if message[0] in ("end", "run"):
            self._ship()  # a run's start and end go at once: they are what a listing shows
        else:
            self._ship_soon()

    def start(self) -> None:
        """Start the writer now, so that its start-up (tens of milliseconds, on another core)
        is over before the first run needs it; else it starts with the first event kept."""
        if self._process is None and not self._failed:
            self._start()

    def flush(self, timeout_s: float = 30) -> None:
        """Wait until everything heard so far is committed (tests, and ``/runs`` in a chat)."""
        if self._process is None or self._failed or not self._sent:
            return
        self._flushes += 1
        wanted = self._flushes
        self._pending.append(("flush", wanted))
        deadline = time.monotonic() + timeout_s
        self._ship(deadline)
        with self._acked:
            self._acked.wait_for(
                lambda: self._last_ack >= wanted or self._gone or self._failed,
                timeout=max(0.0, deadline - time.monotonic()),
            )

    def abandon(self, wait_s: float = 1.0) -> None:
        """The process leaves at once (a second Ctrl-C): commit what was heard, for up to
        ``wait_s``, and mark the runs still under way as interrupted, so that none is listed
        as running for ever. Their unfinished steps have no record, as after ``kill -9``."""
        if not self._open or self._failed or self._process is None:
            return
        self._pending.append(("interrupted", sorted(self._open), _now()))
        self._open.clear()
        self.flush(wait_s)

    def close(self) -> None:
        """Ship what is left and wait for the writer to commit it and end."""
        process = self._process
        if process is None:
            return
        self._closing = True
        if not self._failed:
            self._ship(time.monotonic() + 30)
        self._process = None
        assert process.stdin is not None
        with contextlib.suppress(OSError):  # its last write failed: the writer is gone
            process.stdin.close()
        if self._sent and self._reader is not None:
            self._reader.join(timeout=30)  # it ends when the writer has committed all and ended
            # (else the writer goes on committing on its own)

    # ------------------------------------------------------------------ shipping

    def _start(self) -> bool:
        try:
            process = launch_writer(self.path)
        except OSError as exc:
            self._fail(exc)
            return False
        assert process.stdin is not None
        fd = process.stdin.fileno()
        os.set_blocking(fd, False)
        with contextlib.suppress(OSError):  # a smaller pipe only means more waits when full
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
        self._process = process
        weakref.finalize(self, _close, process)  # a recorder nobody closed: the writer ends
        self._reader = threading.Thread(
            target=_listen, args=(process, weakref.ref(self)), name="history", daemon=True
        )
        self._reader.start()
        _LIVE.add(self)
        return True

    def _ship_soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to wait on: now, waiting for a full pipe if need be
            self._ship(time.monotonic() + 30)
            return
        if self._shipping_on is not loop:
            self._shipping_on = loop
            loop.call_later(SHIP_S, self._ship)

    def _ship(self, deadline: float | None = None) -> None:
        """Write what is pending; ``deadline``: wait for a full pipe until then, else leave
        the rest for a later ship."""
        self._shipping_on = None
        process = self._process
        if process is None or process.stdin is None or self._failed:
            return
        if self._pending:
            self._sent = True
            frame = pickle.dumps(self._pending, protocol=pickle.HIGHEST_PROTOCOL)
            self._pending = []
            self._backlog += HEADER.pack(len(frame))
            self._backlog += frame
        fd = process.stdin.fileno()
        while self._backlog:
            try:
                written = os.write(fd, self._backlog)
            except BlockingIOError:
                if deadline is None:
                    self._ship_soon()
                    return
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [fd], [], left)[1]:
                    return
                continue
            except OSError as exc:  # the writer is gone: its reader says why
                self._fail_later(exc)
                return
            del self._backlog[:written]

    # ------------------------------------------------------------------ the writer's answers

    def _heard(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "ack":
            with self._acked:
                self._last_ack = int(rest)
                self._acked.notify_all()
        elif word == "error":
            self._fail(store.HistoryError(rest))

    def _ended(self, code: int, trouble: str) -> None:
        if not self._closing or code != 0:
            self._fail(None, stopped=_why_it_ended(code, trouble))
        with self._acked:
            self._gone = True
            self._acked.notify_all()

    def _fail(self, exc: BaseException | None, *, stopped: str = "") -> None:
        """Stop recording, with one warning: why the history cannot be written (``exc``),
        or why the writer ended before it was told to (``stopped``)."""
        with self._lock:
            if self._failed:
                return
            self._failed = True
        self._pending = []
        if exc is not None:
            state_problem(WHAT, self.path, exc)
        else:
            warn_once(
                f"state:{WHAT}",
                f"the {WHAT}'s writer process stopped ({stopped}): what it had not committed "
                f"is lost, and this evolve goes on without {WHAT}",
            )
        with self._acked:
            self._acked.notify_all()

    def _fail_later(self, exc: BaseException) -> None:
        """A write failed: the writer ended. Its reader warns with the writer's own reason
        (it has ended too, so this wait is short); this one counts only if it gave none."""
        if self._reader is not None:
            self._reader.join(timeout=1)
        self._fail(None, stopped=f"its pipe: {exc}")

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


def _listen(process: WriterProcess, recorder: weakref.ref[HistoryRecorder]) -> None:
    """The writer's acks and its error, until it ends (a thread: it blocks on the pipe, which
    costs nothing). It holds its recorder weakly, so that one nobody closed can be collected,
    and the writer then ends too."""
    assert process.stdout is not None
    assert process.stderr is not None
    for line in process.stdout:
        if (alive := recorder()) is not None:
            alive._heard(line.decode(errors="replace").rstrip("\n"))
            del alive
    trouble = process.stderr.read().decode(errors="replace").strip()
    process.stdout.close()
    process.stderr.close()
    code = process.wait()
    if (alive := recorder()) is not None:
        alive._ended(code, trouble)


def _why_it_ended(code: int, trouble: str) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    last = trouble.splitlines()[-1] if trouble else "no reason given"
    return f"exit code {code}: {last}"


def _close(process: WriterProcess) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()


def _now() -> str:
    return datetime.now(UTC).isoformat()
