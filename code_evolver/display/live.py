"""Progress while a plan runs: a live table on a terminal, one line per step elsewhere.

Both are event listeners. ``LiveView`` keeps one row object per step and mutates them from the
event loop while rich's refresh thread draws them; rows are added (a plan streamed from the
model grows while it runs) under a lock, and drawing works on a snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from code_evolver import events
from code_evolver.display.safe import shown, terminal_safe
from code_evolver.display.style import clip, icon, seconds
from code_evolver.organizer import OrganizedPlan
from code_evolver.result import StepStatus, skip_reason

_FAILED = (StepStatus.FAILED, StepStatus.TIMED_OUT)
_WRITING_LINES = 8


@dataclass(slots=True)
class _Row:
    step_id: str
    tool: str
    description: str
    status: StepStatus = StepStatus.PENDING
    started: float | None = None
    elapsed: float = 0.0
    note: str = ""
    finished_order: int = 0
    calls_running: set[str] = field(default_factory=set)
    calls_done: int = 0
    calls_failed: int = 0

    def calls_note(self) -> str:
        """What the step's script is doing with its tool calls, e.g. ``↳ 4 calls running``."""
        parts = []
        if self.calls_running:
            parts.append(f"{len(self.calls_running)} running")
        if self.calls_done:
            parts.append(f"{self.calls_done} done")
        if self.calls_failed:
            parts.append(f"{self.calls_failed} failed")
        return f"↳ calls: {', '.join(parts)}" if parts else ""


class LiveView:
    """A rich Live table of every step: state, time, and what it is doing or why it failed.

    Large plans show the running steps, the failures and the latest finished ones, plus counts,
    so a 10,000-step run still draws a screenful.
    """

    def __init__(
        self,
        organized: OrganizedPlan | None,
        console: Console,
        *,
        max_rows: int = 24,
        status: str = "",
    ) -> None:
        self.console = console
        self.max_rows = max_rows
        self.status = status
        """A line shown while there is nothing to run yet (e.g. "planning with ...")."""
        self.planning = ""
        """What the model has done so far, beside the status."""
        self.writing: dict[str, tuple[int, str]] = {}
        """Final answers being written (step: attempt, text so far), shown under the table
        until their step ends; the results show them whole afterwards."""
        self.rows: dict[str, _Row] = {}
        self._lock = threading.Lock()
        self._spinner = Spinner("dots", style="cyan")
        self._finished = 0
        self._t0 = self._status_since = time.monotonic()
        if organized is not None:
            self._add_rows(organized.step_infos())
        self._live = Live(
            self, console=console, refresh_per_second=10, transient=False, redirect_stdout=False
        )

    def __enter__(self) -> LiveView:
        self._t0 = self._status_since = time.monotonic()
        self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._live.refresh()
        self._live.__exit__(exc_type, exc, tb)

    def _add_rows(self, steps: Iterable[events.StepInfo]) -> None:
        with self._lock:
            for s in steps:
                if s.step_id not in self.rows:
                    self.rows[s.step_id] = _Row(
                        s.step_id, s.tool, s.description, note=s.description
                    )

    def __call__(self, event: events.Event) -> None:
        match event:
            case events.Planning(stage=stage, tokens=tokens, steps=steps):
                found = f", {steps} step{'s' * (steps != 1)} so far" if steps else ""
                self.planning = f"{stage}: {tokens} tokens{found}"
            case events.ModelLoading(model=model, done=False):
                self.status, self.planning = f"loading {model}…", ""
                self._status_since = time.monotonic()  # the line's time is the loading's
            case events.RunStarted(steps=steps):
                with self._lock:
                    self.rows = {}  # a new run (e.g. a repaired plan) replaces the old rows
                    self._finished = 0
                self._add_rows(steps)
            case events.PlanExtended(steps=steps):
                self._add_rows(steps)
            case events.StepStarted(step_id=step_id, attempt=attempt):
                row = self.rows[step_id]
                row.status = StepStatus.RUNNING
                row.started = time.monotonic()
                row.note = f"attempt {attempt}" if attempt > 1 else row.description
            case events.StepOutput(step_id=step_id, attempt=attempt, text=text, restart=restart):
                with self._lock:
                    before, so_far = self.writing.get(step_id, (attempt, ""))
                    same = before == attempt and not restart
                    self.writing[step_id] = (attempt, so_far + text if same else text)
            case events.StepSucceeded(step_id=step_id, duration_s=duration):
                self._done(step_id, StepStatus.SUCCEEDED, self.rows[step_id].description, duration)
            case events.StepFailed(step_id=step_id, error=error, status=status):
                self._done(step_id, StepStatus(status), error)
            case events.StepRetrying(step_id=step_id, attempt=attempt, error=error, delay_s=d):
                row = self.rows[step_id]
                row.status = StepStatus.PENDING
                row.note = f"retry in {d:.1f}s after attempt {attempt}: {error}"
                row.started = None
            case events.StepSkipped(step_id=step_id, because_of=cause):
                self._done(step_id, StepStatus.SKIPPED, skip_reason(cause))
            case events.StepCancelled(step_id=step_id):
                self._done(step_id, StepStatus.CANCELLED, "cancelled")
            case events.CallStarted(step_id=step_id, tool=name, stage=True):
                self.rows[step_id].note = name  # e.g. "on gpu-box", "write node (attempt 2)"
            case events.CallFinished(stage=True):
                pass
            case events.CallStarted(step_id=step_id, call_id=call_id):
                self.rows[step_id].calls_running.add(call_id)
            case events.CallFinished(step_id=step_id, call_id=call_id, status=status):
                row = self.rows[step_id]
                row.calls_running.discard(call_id)
                if status == StepStatus.SUCCEEDED:
                    row.calls_done += 1
                elif status in (StepStatus.FAILED, StepStatus.TIMED_OUT):
                    row.calls_failed += 1
            case _:
                pass

    def _done(self, step_id: str, status: StepStatus, note: str, duration: float = 0.0) -> None:
        with self._lock:
            self.writing.pop(step_id, None)
        row = self.rows[step_id]
        if row.started is not None and not duration:
            duration = time.monotonic() - row.started
        row.status, row.note, row.started = status, note, None
        row.elapsed = duration
        self._finished += 1
        row.finished_order = self._finished

    def __rich__(self) -> RenderableType:
        with self._lock:
            rows = list(self.rows.values())
        if not rows:
            waiting = Table.grid(padding=(0, 1))
            if self.status:  # the time is the view's own: it moves before the model's first token
                line = f"{self.status} {time.monotonic() - self._status_since:.0f}s"
                if self.planning:
                    line += f" · {self.planning}"
                waiting.add_row(self._spinner, Text(line, style="dim"))
            return waiting
        visible = rows if len(rows) <= self.max_rows else self._selection(rows)
        table = Table.grid(padding=(0, 1))
        table.add_column(width=1)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(style="cyan", no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        table.add_column(no_wrap=True, overflow="ellipsis")
        now = time.monotonic()
        width = max(20, self.console.width - 45)
        for row in visible:
            mark: RenderableType
            if row.status is StepStatus.RUNNING:
                mark = self._spinner
                took = seconds(now - row.started) if row.started else ""
            else:
                mark = Text.from_markup(icon(row.status))
                took = seconds(row.elapsed) if row.status.is_final and row.elapsed else ""
            style = "red" if row.status in _FAILED else "dim"
            note = row.note
            if row.status is StepStatus.RUNNING and (calls := row.calls_note()):
                note = calls  # what a running node is waiting for says more than its description
            table.add_row(
                mark,
                shown(row.step_id),
                shown(row.tool),
                took,
                Text(clip(note, width), style=style),
            )
        with self._lock:
            writing = [(step_id, text) for step_id, (_, text) in self.writing.items()]
        return Group(
            table,
            Text.from_markup(self._header(rows, len(visible), now)),
            *(self._being_written(step_id, text) for step_id, text in writing),
        )

    def _being_written(self, step_id: str, text: str) -> RenderableType:
        """The last lines of an answer as the model writes it."""
        width = max(20, self.console.width - 4)  # inside the panel's borders
        lines = [
            line[start : start + width]
            for line in terminal_safe(text).splitlines()[-_WRITING_LINES:]
            for start in range(0, max(len(line), 1), width)
        ][-_WRITING_LINES:]  # the newest rows, as the screen shows them
        return Panel(
            Text("\n".join(lines)),
            title=f"{shown(step_id)} writing…",
            title_align="left",
            border_style="dim",
        )

    def _selection(self, rows: list[_Row]) -> list[_Row]:
        running = [r for r in rows if r.status is StepStatus.RUNNING]
        failed = [r for r in rows if r.status in _FAILED]
        room = max(0, self.max_rows - len(running) - len(failed))
        done = sorted(
            (r for r in rows if r.status.is_final and r.status not in _FAILED),
            key=lambda r: r.finished_order,
        )
        recent = done[-room:] if room else []
        keep = {id(r) for r in (*running[: self.max_rows], *failed, *recent)}
        return [r for r in rows if id(r) in keep]

    def _header(self, rows: list[_Row], visible: int, now: float) -> str:
        counts = dict.fromkeys(StepStatus, 0)
        for row in rows:
            counts[row.status] += 1
        parts = [f"[bold]{self._finished}/{len(rows)}[/] done"]
        parts += [f"{counts[s]} {s.value}" for s in StepStatus if s.is_final and counts[s]]
        if counts[StepStatus.RUNNING]:
            parts.append(f"[cyan]{counts[StepStatus.RUNNING]} running[/]")
        hidden = len(rows) - visible
        if hidden:
            parts.append(f"[dim]{hidden} rows hidden[/]")
        parts.append(seconds(now - self._t0))
        return " · ".join(parts)


HEARTBEAT_S = 5.0
"""A log hears of a long planning stage this often."""


class LineProgress:
    """One line per finished step (and per retry), for logs, pipes and CI."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._stage = ""
        self._said_at = 0.0

    def __call__(self, event: events.Event) -> None:
        match event:
            case events.Planning(stage=stage, elapsed_s=elapsed, tokens=tokens, steps=steps):
                # a line per stage, and one every HEARTBEAT_S while it lasts: not per token
                if stage != self._stage or elapsed - self._said_at >= HEARTBEAT_S:
                    so_far = f": {tokens} tokens, {steps} steps so far" if tokens else ""
                    self._stage, self._said_at = stage, elapsed
                    self._say(f"[dim]{shown(stage)} ({elapsed:.0f}s){so_far}…[/]")
            case events.ModelLoading(model=model, done=done, seconds=took):
                if done:
                    self._say(f"[dim]{shown(model)} loaded in {seconds(took)}[/]")
                else:
                    self._say(f"[dim]loading {shown(model)}…[/]")
            case events.CallStarted(step_id=step_id, tool=name, stage=True):
                # a step's own stages (writing a node, an LLM endpoint): a step that takes
                # a minute is not a silent minute
                self._say(f"[dim]  {shown(step_id)}: {shown(name)}…[/]", highlight=False)
            case events.CallFinished(
                step_id=step_id, tool=name, status=status, duration_s=took, error=error, stage=True
            ):
                detail = f"{status.replace('_', ' ')} in {seconds(took)}"
                detail += f": {error}" if error else ""
                self._say(
                    f"[dim]  {shown(step_id)}: {shown(name)} {shown(clip(detail, 200))}[/]",
                    highlight=False,
                )
            case events.StepSucceeded(step_id=step_id, duration_s=duration):
                self._line(StepStatus.SUCCEEDED, step_id, seconds(duration))
            case events.StepFailed(step_id=step_id, error=error, status=status):
                self._line(StepStatus(status), step_id, error)
            case events.StepRetrying(step_id=step_id, attempt=attempt, error=error, delay_s=d):
                self._line(
                    StepStatus.PENDING,
                    step_id,
                    f"attempt {attempt} failed ({clip(error, 150)}); retry in {d:.1f}s",
                )
            case events.StepSkipped(step_id=step_id, because_of=cause):
                self._line(StepStatus.SKIPPED, step_id, skip_reason(cause))
            case events.StepCancelled(step_id=step_id):
                self._line(StepStatus.CANCELLED, step_id, "cancelled")
            case _:
                pass

    def _say(self, text: str, *, highlight: bool | None = None) -> None:
        """One line each, however long: a log is read line by line (and grep'd), so it is
        never wrapped at the console's width (80 columns when stderr is a file)."""
        self.console.print(text, soft_wrap=True, highlight=highlight)

    def _line(self, status: StepStatus, step_id: str, detail: str) -> None:
        self._say(
            f"{icon(status)} [bold]{shown(step_id)}[/] {shown(clip(detail, 200))}",
            highlight=False,
        )
