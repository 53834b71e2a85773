"""After a run: one panel per step with its output or error, then the summary line.

Final outputs (steps nothing depends on) are shown in full; intermediate ones are clipped, and
in large plans only final outputs and problems are shown (``--json`` always has everything).
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from code_evolver.display.style import ICONS, seconds
from code_evolver.result import RunResult, RunStatus, StepResult, StepStatus
from code_evolver.templating import to_text

_INTERMEDIATE_LINES = 12
_ALL_PANELS_UP_TO = 20


def results_view(result: RunResult, *, markdown: bool = False) -> RenderableType:
    """Panels of outputs; ``markdown`` renders final text outputs as Markdown (model answers)."""
    organized = result.organized
    final = {s for s in organized.steps if not organized.graph.succ[s]}
    steps = list(result.steps.values())
    hidden = 0
    if len(steps) > _ALL_PANELS_UP_TO:
        keep = [s for s in steps if s.step_id in final or s.status in _PROBLEMS]
        hidden = len(steps) - len(keep)
        steps = keep
    panels: list[RenderableType] = [
        _panel(s, full=s.step_id in final, markdown=markdown and s.step_id in final) for s in steps
    ]
    if hidden:
        panels.append(
            Text(f"{hidden} intermediate steps not shown; --json has every output", style="dim")
        )
    return Group(*panels)


_PROBLEMS = (StepStatus.FAILED, StepStatus.TIMED_OUT, StepStatus.SKIPPED, StepStatus.CANCELLED)


def _panel(step: StepResult, *, full: bool, markdown: bool = False) -> Panel:
    symbol, colour = ICONS[step.status]
    title = f"[{colour}]{symbol}[/] [bold]{escape(step.step_id)}[/] · {escape(step.tool)}"
    if step.attempts:
        title += f" · {seconds(step.duration_s)}"
    if step.attempts > 1:
        title += f" · {step.attempts} attempts"
    if step.calls:
        failed = sum(1 for c in step.calls if c.status is not StepStatus.SUCCEEDED)
        title += f" · {len(step.calls)} tool calls" + (f" ({failed} failed)" if failed else "")
    body: RenderableType
    if step.ok:
        text = to_text(step.output if step.output is not None else "")
        if markdown and isinstance(step.output, str) and text:
            body = Markdown(text)
        else:
            body = Text(
                _clip_lines(text, None if full else _INTERMEDIATE_LINES) or "(empty output)"
            )
            if not text:
                body.stylize("dim")
    else:
        body = Text(step.error or step.status.value, style=colour)
    return Panel(body, title=title, title_align="left", border_style=colour, expand=True)


def _clip_lines(text: str, limit: int | None) -> str:
    lines = text.splitlines()
    if limit is None or len(lines) <= limit:
        return text
    return "\n".join(lines[:limit]) + f"\n… {len(lines) - limit} more lines"


def summary_line(result: RunResult) -> str:
    """Counts, then the figures that show what parallelism bought."""
    counts = [f"{n} {status.value}" for status in StepStatus if (n := result.count(status))]
    mark = {
        RunStatus.SUCCEEDED: "[green]✓[/]",
        RunStatus.FAILED: "[red]✗[/]",
    }.get(result.status, "[magenta]⊘[/]")
    path = " → ".join(result.critical_path)
    if len(path) > 60:
        path = f"{len(result.critical_path)} steps"
    parts = [
        f"{mark} {result.status.value}: {', '.join(counts)}",
        f"wall {seconds(result.wall_s)}",
        f"step time {seconds(result.sum_s)}",
        f"speedup {result.speedup:.2f}x",
        f"critical path {seconds(result.critical_path_s)} ({escape(path)})",
        f"efficiency {result.efficiency:.0%}",
        f"peak concurrency {result.peak_concurrency}",
    ]
    return " · ".join(parts)
