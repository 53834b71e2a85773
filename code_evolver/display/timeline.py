"""The timeline picture of a run: ``evolve runs show ID --gantt`` (and ``--svg FILE``).

One row model, :func:`timeline_rows`, feeds both the terminal drawing (:func:`gantt`) and the
SVG (``display.timeline_svg``), so the two always agree on order, nesting and the critical
path. Times are the run's own (seconds since it started), so steps that ran together have
overlapping bars on one shared axis.

Records come from the history database and are drawn, never trusted: a plan of any shape,
unknown statuses, missing or non-finite times, and call parents that are missing or form a
loop all give a picture instead of an exception.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.console import Group, RenderableType
from rich.text import Text

from code_evolver.display.style import ICONS, clip, seconds
from code_evolver.history.records import RunRecord, StepRecord
from code_evolver.result import StepStatus

CRITICAL = "◆"
_STEP_BAR, _CALL_BAR = "█", "▄"
_DURATION = 9
"""Cells of the duration column: ``timed_out`` and ``cancelled`` are the longest words."""


@dataclass(frozen=True, slots=True)
class Row:
    """One bar: an attempt of a step, or (``is_call``) a call its script made in one; ``attempt``
    is the step's attempt either way."""

    step_id: str
    label: str
    indent: int
    """0 for a step attempt, 1 for its calls, 2 for the calls those made, and so on."""
    start_s: float | None
    """None: never started (skipped, cancelled before it ran, or planned and never reached)."""
    end_s: float | None
    """None with ``start_s`` set: still running, or its process died; the bar runs to the end."""
    status: str
    on_critical_path: bool = False
    is_call: bool = False
    attempt: int = 1


def status_look(status: str) -> tuple[str, str]:
    """The icon and rich colour of a status, as everywhere else in the display; unknown
    statuses (a newer or damaged database) are a dim question mark."""
    try:
        return ICONS[StepStatus(status)]
    except ValueError:
        return ("?", "dim")


def plan_dependencies(run: RunRecord) -> dict[str, tuple[str, ...]]:
    """Each planned step's ``depends_on``, in plan order; empty for a missing or odd plan."""
    steps = run.plan.get("steps") if isinstance(run.plan, dict) else None
    found: dict[str, tuple[str, ...]] = {}
    for step in steps if isinstance(steps, list) else ():
        if isinstance(step, dict) and isinstance(step.get("step_id"), str):
            deps = step.get("depends_on")
            listed = deps if isinstance(deps, list) else ()
            found[step["step_id"]] = tuple(d for d in listed if isinstance(d, str))
    return found


def critical_path(run: RunRecord) -> tuple[str, ...]:
    """The step ids of the longest dependency chain, timed by each step's latest attempt.

    Steps without times count zero; a run where nothing took time has no critical path. Ties
    go to the step earlier in the plan (then in the record), so the answer is stable; a
    dependency loop in damaged data is cut rather than followed.
    """
    latest = run.latest()
    deps = plan_dependencies(run)
    order = list(dict.fromkeys([*deps, *latest]))
    rank = {step_id: i for i, step_id in enumerate(order)}
    pred = {s: [d for d in dict.fromkeys(deps.get(s, ())) if d in rank and d != s] for s in order}
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for step_id in _topological(order, pred, rank):
        done = [d for d in pred[step_id] if d in finish]
        before = min(done, key=lambda d: (-finish[d], rank[d]), default=None)
        record = latest.get(step_id)
        took = _duration(record) if record is not None else 0.0
        finish[step_id] = (finish[before] if before is not None else 0.0) + took
        via[step_id] = before
    if not finish or max(finish.values()) <= 0:
        return ()
    end: str | None = min(finish, key=lambda s: (-finish[s], rank[s]))
    path: list[str] = []
    while end is not None:
        path.append(end)
        end = via[end]
    return tuple(reversed(path))


def _topological(order: list[str], pred: dict[str, list[str]], rank: dict[str, int]) -> list[str]:
    """Kahn's order, earliest planned first among the ready; steps caught in a loop come last."""
    waiting = {s: len(pred[s]) for s in order}
    succ: dict[str, list[str]] = {s: [] for s in order}
    for step_id in order:
        for d in pred[step_id]:
            succ[d].append(step_id)
    ready = [rank[s] for s in order if not waiting[s]]
    heapq.heapify(ready)
    placed: list[str] = []
    while ready:
        step_id = order[heapq.heappop(ready)]
        placed.append(step_id)
        for after in succ[step_id]:
            waiting[after] -= 1
            if not waiting[after]:
                heapq.heappush(ready, rank[after])
    seen = set(placed)
    return placed + [s for s in order if s not in seen]


def _time(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else max(0.0, value)


def _duration(record: StepRecord) -> float:
    start, end = _time(record.started_s), _time(record.finished_s)
    return 0.0 if start is None or end is None else max(0.0, end - start)


def _when(record: StepRecord) -> tuple[bool, float]:
    start = _time(record.started_s)
    return (start is None, start or 0.0)


def _row(record: StepRecord, label: str, indent: int, critical: bool = False) -> Row:
    start, end = _time(record.started_s), _time(record.finished_s)
    if start is None:
        end = None
    elif end is not None:
        end = max(start, end)
    called = record.call_id is not None
    if record.attempt > 1 and not called:  # a call's record names its step's attempt
        label += f" (attempt {record.attempt})"
    return Row(
        record.step_id, label, indent, start, end, record.status, critical, called, record.attempt
    )


def timeline_rows(run: RunRecord) -> list[Row]:
    """Every step attempt of ``run`` in the order steps started (never-started ones last), each
    attempt followed by the calls its script made, nested by caller.

    A call goes under the attempt of the step it ran under. Planned steps with no
    record at all (the run stopped first) are rows with status ``pending``.
    """
    path = set(critical_path(run))
    latest = run.latest()
    attempts: dict[str, list[StepRecord]] = {}
    calls: dict[str, list[StepRecord]] = {}
    for record in run.steps:
        kind = attempts if record.call_id is None else calls
        kind.setdefault(record.step_id, []).append(record)
    groups = list(dict.fromkeys([*(r.step_id for r in run.steps), *plan_dependencies(run)]))

    def first_start(step_id: str) -> tuple[bool, float]:
        records = attempts.get(step_id) or calls.get(step_id) or []
        return min((_when(r) for r in records), default=(True, 0.0))

    rows: list[Row] = []
    for step_id in sorted(groups, key=first_start):
        tries = sorted(attempts.get(step_id, []), key=lambda r: r.attempt)
        mine = calls.get(step_id, [])
        if not tries:
            if not mine:
                rows.append(Row(step_id, step_id, 0, None, None, StepStatus.PENDING.value))
            rows.extend(_call_rows(mine))
            continue
        owner = [_owner(tries, call) for call in mine]
        for i, record in enumerate(tries):
            rows.append(_row(record, step_id, 0, record is latest[step_id] and step_id in path))
            rows.extend(_call_rows([c for c, o in zip(mine, owner, strict=True) if o == i]))
    return rows


def _owner(tries: Sequence[StepRecord], call: StepRecord) -> int:
    """The index of the attempt ``call`` ran under (its record names it; else the last)."""
    for i, record in enumerate(tries):
        if record.attempt == call.attempt:
            return i
    return len(tries) - 1


def _call_rows(calls: Iterable[StepRecord]) -> list[Row]:
    """Calls as rows, each call's attempts followed by the calls it made, one level deeper.

    Walked with a stack, not recursion, so a deep chain of calls cannot overflow; calls whose
    parents form a loop are shown at the top level rather than lost.
    """
    by_id: dict[str, list[StepRecord]] = {}
    for call in sorted(calls, key=_when):
        by_id.setdefault(call.call_id or "", []).append(call)
    under: dict[str | None, list[str]] = {}
    for call_id, records in by_id.items():
        parent = records[0].parent_call
        parent = parent if parent in by_id and parent != call_id else None
        under.setdefault(parent, []).append(call_id)
    rows: list[Row] = []
    done: set[str] = set()
    for root in [*under.get(None, []), *by_id]:
        stack = [(root, 1)]
        while stack:
            call_id, depth = stack.pop()
            if call_id in done:
                continue
            done.add(call_id)
            rows.extend(_row(r, r.tool, depth) for r in by_id[call_id])
            stack.extend((c, depth + 1) for c in reversed(under.get(call_id, [])))
    return rows


def axis_end(run: RunRecord, rows: Iterable[Row]) -> float:
    """Where the shared time axis ends: the run's wall time, or its last known moment if a
    step ran later (or the run never ended)."""
    wall = _time(run.wall_s) or 0.0
    moments = [t for row in rows for t in (row.start_s, row.end_s) if t is not None]
    return max([wall, *moments])


def ticks(end: float, most: int = 6) -> list[float]:
    """Round tick values from 0 to at most ``end`` (steps of 1, 2 or 5 times a power of ten)."""
    if end <= 0 or not math.isfinite(end):
        return [0.0]
    raw = end / most
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    return [i * step for i in range(int(end / step + 1e-9) + 1)]


def tick_label(value: float) -> str:
    return f"{value:.6g}s"


def cells(start: float, end: float | None, axis: float, width: int) -> tuple[int, int]:
    """The half-open cell range of a bar on an axis ``width`` cells wide: edges rounded to the
    nearest cell (so a step that starts as another ends does not seem to overlap it), and at
    least one cell, so an instant step is still seen."""
    if axis <= 0:
        return (0, 1)
    first = min(width - 1, math.floor(start / axis * width + 0.5))
    last = width if end is None else min(width, math.floor(end / axis * width + 0.5))
    return (first, max(first + 1, last))


def gantt(run: RunRecord, width: int, *, max_rows: int = 40) -> RenderableType:
    """The run as text bars: a marker (critical path) and icon, the label (calls indented), a
    bar on the shared axis coloured by status, and the duration; then a legend.

    Every line fits in ``width`` cells; past ``max_rows`` rows a line counts what is left out.
    """
    rows = timeline_rows(run)
    if not rows:
        return Text("no steps recorded for this run", style="dim")
    axis = axis_end(run, rows)
    drawn = rows[: max(1, max_rows)]
    labels = [_label(row) for row in drawn]
    widest = max(cell_len(label) for label in labels)
    label_w = max(4, min(widest, 32, (width - 16) // 3))
    bar_w = max(1, width - label_w - _DURATION - 5)

    def line(head: Text, label: str, bar: Text, took: str) -> Text:
        if cell_len(label) > label_w:
            label = set_cell_size(label, label_w - 1) + "…"
        text = Text(no_wrap=True, overflow="crop").append_text(head)
        text.append(" " + set_cell_size(label, label_w) + " ")
        text.append_text(bar)
        text.append(" " + took.rjust(_DURATION))
        text.truncate(width)
        return text

    lines = [line(Text("  "), "step", _axis_labels(axis, bar_w), "took")]
    rule = ["─"] * bar_w
    for tick in ticks(axis):
        rule[cells(tick, tick, axis, bar_w)[0]] = "┬"
    lines.append(line(Text("  "), "", Text("".join(rule), style="dim"), seconds(axis)))
    for row, label in zip(drawn, labels, strict=True):
        symbol, colour = status_look(row.status)
        bar = Text(" " * bar_w)
        took = clip(row.status.replace("_", " "), _DURATION)
        if row.start_s is not None:
            first, last = cells(row.start_s, row.end_s, axis, bar_w)
            glyph = _CALL_BAR if row.is_call else _STEP_BAR
            bar = Text(" " * first + glyph * (last - first) + " " * (bar_w - last))
            bar.stylize(colour, first, last)
            if row.end_s is not None:
                took = seconds(row.end_s - row.start_s)
        head = Text(CRITICAL if row.on_critical_path else " ", style="bold")
        lines.append(line(head.append(symbol, style=colour), label, bar, took))
    if len(rows) > len(drawn):
        more = len(rows) - len(drawn)
        lines.append(Text(f"… {more} more row{'s' * (more != 1)} not shown", style="dim"))
    lines.append(_legend(run, rows))
    return Group(*lines)


def _label(row: Row) -> str:
    """A row's label for a terminal: one line, control characters made visible, calls
    indented under their step with an arrow."""
    prefix = "  " * (min(row.indent, 8) - 1) + "↳ " if row.indent else ""
    return prefix + clip(row.label, 64)


def _axis_labels(axis: float, width: int) -> Text:
    """Tick values placed at their cells, skipping any that would overlap or not fit."""
    chars = [" "] * width
    free = 0
    for tick in ticks(axis):
        name = tick_label(tick)
        at = cells(tick, tick, axis, width)[0]
        if at + len(name) > width:
            at = width - len(name)
        if at >= free and at >= 0:
            chars[at : at + len(name)] = name
            free = at + len(name) + 1
    return Text("".join(chars), style="dim")


def _legend(run: RunRecord, rows: Sequence[Row]) -> Text:
    """What the marks mean: the critical path with its length, and each status present."""
    path = critical_path(run)
    latest = run.latest()
    legend = Text()
    if path:
        length = sum(_duration(latest[s]) for s in path if s in latest)
        steps = f"{len(path)} step{'s' * (len(path) != 1)}"
        legend.append(f"{CRITICAL} critical path ({steps}, {seconds(length)})", style="bold")
    for status in dict.fromkeys(row.status for row in rows):
        symbol, colour = status_look(status)
        legend.append("  " if legend else "")
        legend.append(f"{symbol} {clip(status.replace('_', ' '), 16)}", style=colour)
    if any(row.is_call for row in rows):
        legend.append(f"  {_CALL_BAR} nested call", style="dim")
    return legend
