"""Shared look: one icon and one colour per step status, and time formatting."""

from __future__ import annotations

from code_evolver.display.safe import terminal_safe
from code_evolver.result import StepStatus

ICONS: dict[StepStatus, tuple[str, str]] = {
    StepStatus.PENDING: ("·", "dim"),
    StepStatus.RUNNING: ("▶", "cyan"),
    StepStatus.SUCCEEDED: ("✓", "green"),
    StepStatus.FAILED: ("✗", "red"),
    StepStatus.TIMED_OUT: ("⏱", "red"),
    StepStatus.SKIPPED: ("↷", "yellow"),
    StepStatus.CANCELLED: ("⊘", "magenta"),
}


def icon(status: StepStatus) -> str:
    symbol, colour = ICONS[status]
    return f"[{colour}]{symbol}[/]"


def seconds(value: float) -> str:
    """Compact durations: 0.012s, 1.25s, 2m05s."""
    if value < 10:
        return f"{value:.3f}s" if value < 1 else f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    minutes, rest = divmod(int(value), 60)
    return f"{minutes}m{rest:02d}s"


def clip(text: str, width: int) -> str:
    """One line, at most ``width`` characters, safe for a terminal (see ``display.safe``).

    Only the head of a long text is looked at, so clipping a 10 MB output costs nothing.
    """
    line = " ".join(text[: 4 * width + 64].split())
    if len(line) > width or len(text) > 4 * width + 64:
        line = line[: width - 1] + "…"
    return terminal_safe(line)
