"""The history writer: a process of its own that turns what the recorder ships into rows.

Why a process: turning a step's record into a row and committing it costs about 20 us of
interpreter time. In a thread of the evolve process that time is taken from the event loop
(one interpreter lock), and while the loop is busy the thread barely gets it, so records
were committed only when the loop paused. Here the work runs on another core, and a record
is out of the evolve process (in the pipe, which a killed evolve leaves to be read) about
``SHIP_S`` after its step ends.

It starts fast because it imports only the standard library and the history's own
stdlib-only modules (started with ``python -S -I``). It ignores Ctrl-C (its own session), reads
until the pipe closes, and so commits everything evolve sent, also after evolve was killed.

The protocol (stdin): frames of a 4-byte little-endian length and a pickled list of
messages, tuples whose first item names them:

- ``("run", run_id, request, planner_source, plan_json, waves, digests, config_digest,
  started_at, run_input, attempt_offsets, time_offset)``: a run starts (or a resumed one
  starts again); ``request``: None for the plan's own; ``waves``: each step's wave;
  ``digests``: each tool's digest;
- ``("source", run_id, planner_source)``: a streamed plan was finished after its run began;
- ``("extend", run_id, plan_json, waves, digests)``: steps were added to a run's plan
  (``waves``: of the new steps);
- ``("step", run_id, step_id, attempt, status, began, at, input, output, output_json,
  params_json, error)``: an attempt ended; the output is text (``output``) or JSON already
  (``output_json``);
- ``("call", run_id, step_id, step_attempt, call_id, parent_call, tool, digest, status,
  began, at, error)``: a call made under a step (or a stage of its tool) ended;
- ``("end", run_id, status, finished_at, run_s, critical_path_s, speedup, peak, backend,
  model)``: the run ended;
- ``("interrupted", run_ids, finished_at)``: evolve leaves at once; these runs are not running;
- ``("flush", n)``: answered with ``ack n`` once everything before it is committed.

Stdout carries ``ack N`` lines and at most one ``error open|write DETAIL`` line (the file
could not be opened, or a batch not written), after which nothing more is written (the rest
is read and dropped, so that evolve's writes never fail).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import struct
from collections.abc import Sequence

from code_evolver.history.keys import cache_key
from code_evolver.history.schema import HistoryError, connect

TYPE_CHECKING = False  # typing, pathlib, dataclasses would make the start twice as slow
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

HEADER = struct.Struct("<I")
MAX_INLINE_OUTPUT = 256 * 1024
"""Outputs larger than this (as JSON) go to a file beside the database; the row points to it."""

_STEP_SQL = (
    "INSERT OR REPLACE INTO step_executions (run_id, step_id, attempt, call_id, parent_call, "
    "tool, tool_digest, wave, parallel_group, status, started_s, finished_s, input, output, "
    "output_file, error, params, cache_key) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_RUN_SQL = (
    "INSERT INTO runs (run_id, request, plan, planner_source, config_digest, status, "
    "started_at, run_input) VALUES (?, ?, ?, ?, ?, 'running', ?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET plan = excluded.plan, status = 'running', "
    "planner_source = coalesce(excluded.planner_source, planner_source)"
)
_END_SQL = (
    "UPDATE runs SET status = ?, finished_at = ?, wall_s = ?, critical_path_s = ?, "
    "speedup = ?, peak_concurrency = ?, backend = ?, model = ? WHERE run_id = ?"
)
INTERRUPTED_SQL = (
    "UPDATE runs SET status = 'interrupted', finished_at = ? "
    "WHERE run_id = ? AND status = 'running'"
)

_TEXT = json.JSONEncoder(ensure_ascii=False)
"""A text as JSON (``json.dumps`` with an option builds an encoder for every call)."""

Place = tuple[int, str | None, str]
"""A step's wave, parallel group and tool."""


class _Run:
    """What the rows of a run's steps need from its start."""

    __slots__ = ("attempt_offsets", "digests", "places", "time_offset")

    def __init__(
        self,
        places: dict[str, Place] | None = None,
        digests: dict[str, str | None] | None = None,
        attempt_offsets: dict[str, int] | None = None,
        time_offset: float = 0.0,
    ) -> None:
        self.places = places or {}
        self.digests = digests or {}
        self.attempt_offsets = attempt_offsets or {}
        self.time_offset = time_offset


class Writer:
    """Messages to rows; one transaction a batch, in the order the messages came."""

    def __init__(self, db: sqlite3.Connection, path: str | Path) -> None:
        self.db = db
        self.folder = os.path.dirname(path)
        self.runs: dict[str, _Run] = {}

    def write(self, messages: Sequence[tuple[Any, ...]]) -> None:
        db, steps = self.db, []
        db.execute("BEGIN")
        try:
            for message in messages:
                kind = message[0]
                if kind == "step":
                    steps.append(self.step(*message[1:]))
                    continue
                if kind == "call":
                    steps.append(self.call(*message[1:]))
                    continue
                if steps:  # rows keep their order with the run's own statements
                    db.executemany(_STEP_SQL, steps)
                    steps = []
                self.other(message)
            if steps:
                db.executemany(_STEP_SQL, steps)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def other(self, message: tuple[Any, ...]) -> None:
        match message:
            case ("run", run_id, request, source, plan, waves, digests, config, *rest):
                started, run_input, *offsets = rest
                steps = json.loads(plan)
                self.runs[run_id] = _Run(places(steps, waves), digests, *offsets)
                self.db.execute(
                    _RUN_SQL,
                    (
                        run_id,
                        steps.get("request", "") if request is None else request,
                        plan,
                        source,
                        config,
                        started,
                        run_input,
                    ),
                )
            case ("source", run_id, source):
                self.db.execute(
                    "UPDATE runs SET planner_source = ? WHERE run_id = ?", (source, run_id)
                )
            case ("extend", run_id, plan, waves, digests):
                run = self.runs.setdefault(run_id, _Run())
                run.places.update(places(json.loads(plan), waves))
                run.digests.update(digests)
                self.db.execute("UPDATE runs SET plan = ? WHERE run_id = ?", (plan, run_id))
            case ("end", run_id, *figures):
                self.runs.pop(run_id, None)
                self.db.execute(_END_SQL, (*figures, run_id))
            case ("interrupted", run_ids, finished):
                self.db.executemany(INTERRUPTED_SQL, [(finished, r) for r in run_ids])
            case ("flush", _):
                pass
            case _:
                raise ValueError(f"unknown history message {message[0]!r}")

    def step(
        self,
        run_id: str,
        step_id: str,
        attempt: int,
        status: str,
        began: float | None,
        at: float,
        text: str | None,
        output: str | None,
        output_json: str | None,
        params: str | None,
        error: str | None,
    ) -> Sequence[Any]:
        run = self.runs.get(run_id) or _Run()
        attempt = (attempt or 1) + run.attempt_offsets.get(step_id, 0)
        wave, group, tool = run.places.get(step_id, (None, None, ""))
        finished = at + run.time_offset if began is not None else None
        began = began + run.time_offset if began is not None else None
        digest = run.digests.get(tool) if tool else None
        if output is not None:
            output_json = _TEXT.encode(output)
        stored, spilled = self.stored(output_json, run_id, f"{step_id}-{attempt}")
        key = None
        if params is not None and digest is not None and text is not None:
            key = cache_key(digest, text, params)
        return (
            run_id, step_id, attempt, "", None, tool, digest, wave, group, status,
            began, finished, text, stored, spilled, error, params, key,
        )  # fmt: skip

    def call(
        self,
        run_id: str,
        step_id: str,
        step_attempt: int,
        call_id: str,
        parent_call: str | None,
        tool: str,
        digest: str | None,
        status: str,
        began: float,
        at: float,
        error: str | None,
    ) -> Sequence[Any]:
        run = self.runs.get(run_id) or _Run()
        shift = run.time_offset
        return (
            run_id, step_id, step_attempt + run.attempt_offsets.get(step_id, 0), call_id,
            parent_call, tool, digest, None, None, status, began + shift, at + shift,
            None, None, None, error, None, None,
        )  # fmt: skip

    def stored(self, text: str | None, run_id: str, name: str) -> tuple[str | None, str | None]:
        """The output's JSON for its column, or (for a large one) the file it was written to."""
        if text is None or len(text) <= MAX_INLINE_OUTPUT:
            return text, None
        target = os.path.join(self.folder, "history-outputs", run_id, f"{name}.json")
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as file:
                file.write(text)
        except OSError as exc:
            return json.dumps(f"(output of {len(text):,} characters not kept: {exc})"), None
        return None, target


def places(plan: dict[str, Any], waves: dict[str, int]) -> dict[str, Place]:
    """The place of each step in ``waves`` (the steps that are new, for a plan extended)."""
    return {
        step["step_id"]: (
            waves[step["step_id"]],
            None if step.get("parallel_group") is None else str(step["parallel_group"]),
            step["tool"],
        )
        for step in plan["steps"]
        if step["step_id"] in waves
    }


def frames(buffer: bytearray) -> list[bytes]:
    """The whole frames at the start of ``buffer``, taken out of it."""
    found, start = [], 0
    while len(buffer) - start >= HEADER.size:
        (size,) = HEADER.unpack_from(buffer, start)
        end = start + HEADER.size + size
        if end > len(buffer):
            break
        found.append(bytes(buffer[start + HEADER.size : end]))
        start = end
    del buffer[:start]
    return found


def detail(exc: BaseException) -> str:
    """What went wrong, in a few words for the warning evolve prints."""
    cause = exc.__cause__ if isinstance(exc, HistoryError) and exc.__cause__ else exc
    text = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
    return " ".join(text.split())


def serve(path: str | Path, source: int = 0, answers: int = 1) -> None:
    """Commit what comes from ``source`` until it closes; answer on ``answers``."""

    def say(line: str) -> None:
        try:
            os.write(answers, f"{line}\n".encode())
        except OSError:  # evolve has gone: commit the rest all the same
            return

    def drop_the_rest() -> None:
        """Read and drop the rest, so that evolve's writes do not fail (it was told why)."""
        while os.read(source, 1 << 20):
            pass

    try:
        writer = Writer(connect(path), path)
    except HistoryError as exc:
        say(f"error open {detail(exc)}")
        drop_the_rest()
        return
    buffer = bytearray()
    while chunk := os.read(source, 1 << 20):
        buffer += chunk
        try:
            messages = [m for frame in frames(buffer) for m in pickle.loads(frame)]
            if not messages:
                continue
            writer.write(messages)
        except Exception as exc:
            say(f"error write {detail(exc)}")
            drop_the_rest()
            return
        for message in messages:
            if message[0] == "flush":
                say(f"ack {message[1]}")


def main(path: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # evolve decides when this ends: at EOF
    serve(path)
