"""After a run: one panel per step with its output or error, then the summary line.

Final outputs (steps nothing depends on) are shown whole up to a generous size; intermediate
ones are clipped to a few lines; both are clipped by characters too, because laying out one
huge line costs the terminal renderer far more than linear time. In large plans only final
outputs and problems are shown. ``--json`` always has every output, whole and exact.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text

from code_evolver.display.safe import shown, terminal_safe
from code_evolver.display.style import ICONS, seconds
from code_evolver.result import RunResult, RunStatus, StepResult, StepStatus
from code_evolver.templating import to_text

_INTERMEDIATE_LINES = 12
_INTERMEDIATE_CHARS = 2_000
_FINAL_CHARS = 20_000
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
    title = f"[{colour}]{symbol}[/] [bold]{shown(step.step_id)}[/] · {shown(step.tool)}"
    if step.attempts:
        title += f" · {seconds(step.duration_s)}"
    if step.attempts > 1:
        title += f" · {step.attempts} attempts"
    if step.calls:
        failed = sum(1 for c in step.calls if c.status is not StepStatus.SUCCEEDED)
        title += f" · {len(step.calls)} tool calls" + (f" ({failed} failed)" if failed else "")
    body: RenderableType
    if step.ok and step.spilled is not None:
        limit = _FINAL_CHARS if full else _INTERMEDIATE_CHARS
        head, _ = _clip(step.spilled.preview(limit), None if full else _INTERMEDIATE_LINES, limit)
        where = f"\n… the whole output ({step.spilled.size:,} bytes) is in {step.spilled.path}"
        body = Text(terminal_safe(head) + terminal_safe(where))
    elif step.ok:
        text = to_text(step.output if step.output is not None else "")
        clipped = terminal_safe(
            clip_output(
                text,
                None if full else _INTERMEDIATE_LINES,
                _FINAL_CHARS if full else _INTERMEDIATE_CHARS,
            )
        )
        if markdown and isinstance(step.output, str) and text:
            body = Markdown(clipped)
        else:
            body = Text(clipped or "(empty output)")
            if not text:
                body.stylize("dim")
    else:
        body = Text(terminal_safe(step.error or step.status.value), style=colour)
    return Panel(body, title=title, title_align="left", border_style=colour, expand=True)


def clip_output(text: str, lines: int | None, chars: int) -> str:
    """At most ``lines`` lines and ``chars`` characters of ``text``, saying what was left out."""
    kept, notes = _clip(text, lines, chars)
    if not notes:
        return kept
    return f"{kept}\n… {', '.join(notes)}; --json has every output in full"


def _clip(text: str, lines: int | None, chars: int) -> tuple[str, list[str]]:
    """The clipped text and what was left out. Linear in the text's length whatever its shape
    (no split of a 10 MB line into pieces)."""
    notes = []
    if lines is not None:
        end = -1
        for _ in range(lines):  # the newline that ends line number ``lines``
            end = text.find("\n", end + 1)
            if end < 0:
                break
        rest = text[end + 1 :] if end >= 0 else ""
        if rest.strip():
            more = rest.count("\n") + (not rest.endswith("\n"))
            notes.append(f"{more:,} more line{'s' * (more != 1)}")
            text = text[:end]
    if len(text) > chars:
        notes.append(f"{len(text) - chars:,} more characters")
        text = text[:chars]
    return text, notes


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
        f"critical path {seconds(result.critical_path_s)} ({shown(path)})",
        f"efficiency {result.efficiency:.0%}",
        f"peak concurrency {result.peak_concurrency}",
    ]
    line = " · ".join(parts)
    if unsandboxed := result.unsandboxed:
        names = ", ".join(unsandboxed[:5]) + (
            f" and {len(unsandboxed) - 5} more" * (len(unsandboxed) > 5)
        )
        line += f"\n[yellow]unsandboxed[/] (sandbox: none): {shown(names)}"
    return line
