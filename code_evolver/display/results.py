"""After a run: one panel per step with its output or error, then the summary line.

Final outputs (steps nothing depends on) are shown whole up to a generous size; intermediate
ones are clipped to a few lines, unless ``full`` (``--full``); all are clipped by characters
too, because laying out one huge line costs the terminal renderer far more than linear time.
In large plans only final outputs and problems are shown. ``--json`` always has every output,
whole and exact.

Outputs of the tools in ``markdown`` (the model's answers) are rendered as Markdown, with the
author's line breaks kept: a poem, an address or a list typed one item per line is text whose
lines matter, and a model's reply is rarely hard-wrapped. Other outputs (commands, functions)
are shown as plain text, exactly.
"""

from __future__ import annotations

from collections.abc import Collection

from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text

from code_evolver.display.safe import shown, terminal_safe
from code_evolver.display.style import ICONS, seconds
from code_evolver.result import RunResult, RunStatus, StepResult, StepStatus
from code_evolver.templating import to_text

_WHOLE = "--full shows every line, --json every output in full"
_INTERMEDIATE_LINES = 12
_INTERMEDIATE_CHARS = 2_000
_FINAL_CHARS = 20_000
_ALL_PANELS_UP_TO = 20


class _LinesKept(Markdown):
    """Markdown whose single line breaks stay line breaks (CommonMark joins them)."""

    def __init__(self, markup: str) -> None:
        super().__init__(markup)
        for token in self.parsed:
            for child in token.children or ():
                if child.type == "softbreak":
                    child.type = "hardbreak"


def results_view(
    result: RunResult, *, markdown: Collection[str] = (), full: bool = False
) -> RenderableType:
    """Panels of outputs; final text outputs of the tools in ``markdown`` as Markdown;
    ``full``: intermediate outputs are not clipped to a few lines."""
    organized = result.organized
    final = {s for s in organized.steps if not organized.graph.succ[s]}
    steps = list(result.steps.values())
    hidden = 0
    if len(steps) > _ALL_PANELS_UP_TO:
        keep = [s for s in steps if s.step_id in final or s.status in _PROBLEMS]
        hidden = len(steps) - len(keep)
        steps = keep
    panels: list[RenderableType] = [
        _panel(
            s, full=full or s.step_id in final, markdown=s.tool in markdown and s.step_id in final
        )
        for s in steps
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
    if step.reused:
        title += " · reused from an earlier run"
    elif step.carried_over:
        title += " · kept from the run"
    elif step.attempts:
        title += f" · {seconds(step.duration_s)}"
    if step.attempts > 1 and not (step.reused or step.carried_over):
        title += f" · {step.attempts} attempts"
    if step.calls:
        failed = sum(1 for c in step.calls if c.status is not StepStatus.SUCCEEDED)
        count = len(step.calls)
        title += f" · {count} tool call{'s' * (count != 1)}"
        title += f" ({failed} failed)" if failed else ""
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
            body = _LinesKept(clipped)
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
    return f"{kept}\n… {', '.join(notes)}; {_WHOLE}"


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


def summary_line(result: RunResult, planned: str | None = None) -> str:
    """Counts, how long planning (``planned``, when this run was planned) and running took,
    then the figures that show what parallelism bought: only for plans of more than one step,
    since for one they mean nothing."""
    counts = [
        f"{n} {status.value.replace('_', ' ')}"
        for status in StepStatus
        if (n := result.count(status))
    ]
    mark = {
        RunStatus.SUCCEEDED: "[green]✓[/]",
        RunStatus.FAILED: "[red]✗[/]",
    }.get(result.status, "[magenta]⊘[/]")
    ran = f"ran in {seconds(result.run_s)}"
    if result.plan_wait_s >= 0.05:
        ran += f" (and {seconds(result.plan_wait_s)} waiting for the plan)"
    parts = [f"{mark} {result.status.value}: {', '.join(counts)}"]
    if result.reused:
        parts[0] += f" ({result.reused} reused from earlier runs)"
    parts += [planned, ran] if planned else [ran]
    if result.parallel and result.speedup is not None and result.efficiency is not None:
        path = " → ".join(result.critical_path)
        if len(path) > 60:
            path = f"{len(result.critical_path)} steps"
        parts += [
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
