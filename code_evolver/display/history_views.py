"""``evolve runs`` and ``evolve runs show``: stored runs as tables."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.table import Table
from rich.text import Text

from code_evolver.display.safe import shown
from code_evolver.display.style import ICONS, clip, seconds
from code_evolver.history.records import RunRecord, StepRecord
from code_evolver.result import StepStatus
from code_evolver.templating import to_text

RUN_COLOURS = {
    "succeeded": "green",
    "failed": "red",
    "interrupted": "magenta",
    "cancelled": "magenta",
    "running": "cyan",
}


def runs_table(runs: Sequence[RunRecord], *, status: str | None = None) -> RenderableType:
    """``status``: the filter the runs were listed with (``--status``)."""
    if runs:
        return RunsTable(runs)
    if status:
        said = "is running" if status == "running" else f"ended {status}"
        return Text(f"No run {said}.", style="dim")
    return Text("No runs yet: each run is kept here once it starts.", style="dim")


class RunsTable:
    """One line a run, at any width: the facts keep their width, and the request gets what
    is left (at least a few words), ending in "…" where it is cut. Where even that does not
    fit, the least needed facts are left out (speedup, then time, then start), never cut."""

    COLUMNS: tuple[tuple[str, bool], ...] = (
        ("id", False),
        ("started", False),
        ("status", False),
        ("ran", True),
        ("speedup", True),
    )
    """Each fact's column, and whether it is right-aligned."""
    DROPPED_FIRST = ("speedup", "ran", "started")
    MIN_REQUEST = 10

    def __init__(self, runs: Sequence[RunRecord]) -> None:
        self.title = f"{len(runs)} run{'s' * (len(runs) != 1)}, newest first"
        self.rows = [
            (
                run.run_id,
                when(run.started_at, short=True),
                run_status(run.status),
                seconds(run.wall_s) if run.wall_s is not None else "-",
                f"{run.speedup:.2f}x" if run.speedup is not None else "-",
                shown(clip(run.request, 70)),
            )
            for run in runs
        ]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Table]:
        widths = {
            name: max(len(name), *(Text.from_markup(row[index]).cell_len for row in self.rows))
            for index, (name, _) in enumerate(self.COLUMNS)
        }

        def used() -> int:  # each fact's padding, and the line between it and the next
            return sum(width + 3 for width in widths.values()) + 2

        for name in self.DROPPED_FIRST:
            if options.max_width - used() >= self.MIN_REQUEST:
                break
            del widths[name]
        table = Table(title=self.title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
        kept = [index for index, (name, _) in enumerate(self.COLUMNS) if name in widths]
        for index in kept:
            name, right = self.COLUMNS[index]
            table.add_column(
                name,
                style="bold cyan" if name == "id" else None,
                justify="right" if right else "left",
                width=widths[name],
                no_wrap=True,
            )
        request = max(self.MIN_REQUEST, options.max_width - used())
        table.add_column("request", width=request, no_wrap=True, overflow="ellipsis")
        for row in self.rows:
            table.add_row(*(row[index] for index in kept), row[-1])
        yield table


def run_detail(run: RunRecord, *, full: bool = False) -> RenderableType:
    """The run's figures, then one row per step attempt with its nested calls under it."""
    figures = [f"[bold]{shown(run.run_id)}[/] {run_status(run.status)}", when(run.started_at)]
    if run.wall_s is not None:
        figures.append(f"ran in {seconds(run.wall_s)}")
    if run.critical_path_s is not None:
        figures.append(f"critical path {seconds(run.critical_path_s)}")
    if run.speedup is not None:
        figures.append(f"speedup {run.speedup:.2f}x")
    if run.peak_concurrency:
        figures.append(f"peak {run.peak_concurrency} at once")
    made = [f"planned by {run.planner_source}"] if run.planner_source else []
    if run.model_name:
        made.append(shown(run.model_name))
    parts: list[RenderableType] = [
        Text.from_markup(" · ".join(figures)),
        Text(f"request: {clip(run.request, 200)}"),
    ]
    if made:
        parts.append(Text.from_markup(f"[dim]{' · '.join(made)}[/]"))
    parts.append(steps_table(run, full=full))
    return Group(*parts)


def steps_table(run: RunRecord, *, full: bool = False) -> RenderableType:
    records = [r for r in run.steps if r.call_id is None]
    planned = [s for s in (run.plan or {}).get("steps", []) if isinstance(s, dict)]
    needs = {s.get("step_id"): ", ".join(map(str, s.get("depends_on") or ())) for s in planned}
    recorded = {r.step_id for r in records}
    table = Table(expand=False, show_lines=full)
    for name, justify in (("step", "left"), ("tool", "left"), ("wave", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("needs")
    table.add_column("attempt", justify="right")
    table.add_column("started", justify="right")
    table.add_column("took", justify="right")
    table.add_column("output" if full else "output or error")
    for record in records:
        _add_step(table, record, full, "", shown(needs.get(record.step_id, "")))
        for call in _calls_of(run, record):
            depth = 2 if call.parent_call else 1
            _add_step(table, call, full, "  " * depth + "↳ ", "")
    for step in planned:
        step_id = step.get("step_id")
        if isinstance(step_id, str) and step_id not in recorded:
            need = shown(needs.get(step_id, ""))
            table.add_row(shown(step_id), "", "", need, "", "", "", "[dim]no end recorded[/]")
    return table


def _calls_of(run: RunRecord, step: StepRecord) -> list[StepRecord]:
    """The calls made during this attempt of the step."""
    return [
        r
        for r in run.steps
        if r.call_id is not None and r.step_id == step.step_id and r.attempt == step.attempt
    ]


def _add_step(table: Table, record: StepRecord, full: bool, indent: str, needs: str) -> None:
    label = f"{indent}{record.tool}" if record.call_id else record.step_id
    text = record.error if record.error else _output_text(record)
    shown_text = shown(text) if full else shown(clip(text, 60))
    if record.error:
        shown_text = f"[red]{shown_text}[/]"
    table.add_row(
        f"{status_icon(record.status)} {shown(label)}",
        "" if record.call_id else shown(record.tool),
        str(record.wave) if record.wave is not None else "",
        needs,
        str(record.attempt) if not record.call_id else "",
        f"+{seconds(record.started_s)}" if record.started_s is not None else "-",
        seconds(record.duration_s) if record.started_s is not None else "-",
        shown_text,
    )


def _output_text(record: StepRecord) -> str:
    if record.output_file is not None:
        return f"(in {record.output_file})"
    return "" if record.output is None else to_text(record.output)


def status_icon(status: str) -> str:
    try:
        symbol, colour = ICONS[StepStatus(status)]
    except ValueError:
        return "?"
    return f"[{colour}]{symbol}[/]"


def run_status(status: str) -> str:
    colour = RUN_COLOURS.get(status, "yellow")
    return f"[{colour}]{shown(status)}[/]"


def when(iso: str, *, short: bool = False) -> str:
    """A stored UTC time in the local zone, to the second (``short``: to the minute, with
    no year)."""
    try:
        local = datetime.fromisoformat(iso).astimezone()
        return local.strftime("%b %d %H:%M" if short else "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return shown(iso)
