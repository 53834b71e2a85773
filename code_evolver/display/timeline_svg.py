"""``evolve runs show ID --svg FILE``: the run's timeline as a standalone SVG document.

The rows are :func:`~code_evolver.display.timeline.timeline_rows`, the same the terminal draws,
so both pictures agree. The document is self-contained (no scripts, fonts, stylesheets or
links) so it can be attached to an issue or opened from disk safely. Every piece of text in it
comes from a stored run and is escaped, with characters XML cannot hold replaced, so a request
like ``<script>`` stays text and the file always parses.

Rectangles, by class: one ``background``; one ``bar`` per row (``bar critical`` on the critical
path, ``bar call`` for nested calls; zero width for a row that never started); one ``swatch``
per legend entry.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

from code_evolver.display.style import clip, seconds
from code_evolver.display.timeline import (
    CRITICAL,
    Row,
    axis_end,
    critical_path,
    tick_label,
    ticks,
    timeline_rows,
)
from code_evolver.history.records import RunRecord

SVG_COLOURS: dict[str, str] = {
    "succeeded": "#2e9e44",
    "failed": "#d32f2f",
    "timed_out": "#8e1b1b",
    "skipped": "#e0a800",
    "cancelled": "#a640b5",
    "running": "#0097a7",
    "pending": "#9e9e9e",
}
"""Fill per status: the hues of the terminal's colours, with a timeout a darker red than a
failure because a picture has no icon to tell them apart."""
_UNKNOWN = "#9e9e9e"

_CHAR = 7.2
"""Width of one character of the 12px monospace font, for laying out labels."""
_PAD, _MARK, _AREA, _TOOK = 16.0, 16.0, 720.0, 120.0
_ROW, _BAR, _CALL_BAR = 20.0, 14.0, 8.0
_TOP = 84.0
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: str, limit: int = 80) -> str:
    """Untrusted text as XML character data or attribute value: one line, at most ``limit``
    characters, controls made visible (see ``display.safe``), escaped."""
    return escape(_NOT_XML.sub("\ufffd", clip(value, limit)), {'"': "&quot;"})


def _num(value: float) -> str:
    return f"{value:.1f}"


def timeline_svg(run: RunRecord, *, max_rows: int = 500) -> str:
    """The run as an SVG: title, time axis with ticks in seconds, one bar per row coloured by
    status (critical path outlined), labels, durations and a legend.

    Past ``max_rows`` rows a line counts what is left out, so a 10,000-step run stays a file
    a browser opens.
    """
    rows = timeline_rows(run)
    drawn = rows[: max(0, max_rows)]
    axis = axis_end(run, rows)
    widest = max((2 * row.indent + len(_label(row)) for row in drawn), default=4)
    left = _PAD + _MARK + min(widest, 56) * _CHAR + 8
    width = left + _AREA + _TOOK + _PAD
    bottom = _TOP + _ROW * len(drawn) + (_ROW if len(rows) > len(drawn) else 0.0)
    legend, legend_h = _legend(rows, bottom + _ROW, width)
    height = bottom + _ROW + legend_h + _PAD
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_num(width)}" height="{_num(height)}" '
        f'viewBox="0 0 {_num(width)} {_num(height)}" font-family="monospace" font-size="12">',
        f"<title>run {_text(run.run_id)}: {_text(run.request, 200)}</title>",
        f'<rect class="background" x="0" y="0" width="{_num(width)}" height="{_num(height)}" '
        'fill="#ffffff"/>',
        f'<text x="{_PAD}" y="26" font-size="15" font-weight="bold">run {_text(run.run_id, 40)}'
        f" · {_text(run.request, 100) or '(no request)'}</text>",
        f'<text x="{_PAD}" y="46" fill="#555555">{_summary(run, rows, axis)}</text>',
    ]
    out.extend(_axis(axis, left, bottom))
    for i, row in enumerate(drawn):
        out.append(_row(row, _TOP + i * _ROW, left, axis))
    if len(rows) > len(drawn):
        more = len(rows) - len(drawn)
        out.append(
            f'<text x="{_PAD}" y="{_num(bottom - 6)}" fill="#555555">… {more} more '
            f"row{'s' * (more != 1)} not drawn</text>"
        )
    out.extend(legend)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _label(row: Row) -> str:
    """A row's label; the indent is a shift of its x, so spaces need not survive."""
    return ("↳ " if row.is_call else "") + clip(row.label, 48)


def _summary(run: RunRecord, rows: list[Row], axis: float) -> str:
    """One line under the title: status, wall time, step count and the critical path."""
    steps = len({row.step_id for row in rows})
    parts = [_text(run.status, 20), f"{seconds(axis)} wall", f"{steps} step{'s' * (steps != 1)}"]
    path = critical_path(run)
    if path:
        chain = " → ".join(path[:8]) + (f" → … ({len(path)} steps)" if len(path) > 8 else "")
        parts.append(f"critical path {_text(chain, 200)}")
    return " · ".join(parts)


def _axis(axis: float, left: float, bottom: float) -> list[str]:
    """Tick labels in seconds above the rows, with a faint grid line down through them."""
    out = [
        f'<line x1="{_num(left)}" y1="{_TOP - 4}" x2="{_num(left + _AREA)}" y2="{_TOP - 4}" '
        'stroke="#888888"/>'
    ]
    for tick in ticks(axis, most=8):
        x = left + (tick / axis * _AREA if axis > 0 else 0.0)
        out.append(
            f'<line x1="{_num(x)}" y1="{_TOP - 8}" x2="{_num(x)}" y2="{_num(bottom)}" '
            'stroke="#dddddd"/>'
        )
        out.append(
            f'<text x="{_num(x)}" y="{_TOP - 12}" text-anchor="middle" fill="#555555">'
            f"{tick_label(tick)}</text>"
        )
    return out


def _row(row: Row, y: float, left: float, axis: float) -> str:
    """A row: critical mark, indented label, one bar (with a hover title) and its duration."""
    colour = SVG_COLOURS.get(row.status, _UNKNOWN)
    height = _CALL_BAR if row.is_call else _BAR
    top = y + (_ROW - height) / 2
    base = y + _ROW / 2 + 4
    x, span, took = left, 0.0, _text(row.status.replace("_", " "), 16)
    if row.start_s is not None:
        end = axis if row.end_s is None else row.end_s
        if axis > 0:
            x, span = left + row.start_s / axis * _AREA, (end - row.start_s) / axis * _AREA
        span = max(span, 1.5)
        if row.end_s is not None:
            took = seconds(row.end_s - row.start_s) + (
                "" if row.status == "succeeded" else f" {took}"
            )
    kinds = "bar" + (" critical" if row.on_critical_path else "") + (" call" if row.is_call else "")
    outline = ' stroke="#111111" stroke-width="2.5"' if row.on_critical_path else ""
    when = (
        "never started"
        if row.start_s is None
        else f"{row.start_s:.3f}s → " + ("…" if row.end_s is None else f"{row.end_s:.3f}s")
    )
    parts = [
        '<g class="row">',
        f'<text x="{_PAD}" y="{_num(base)}" font-weight="bold">{CRITICAL}</text>'
        if row.on_critical_path
        else "",
        f'<text x="{_num(_PAD + _MARK + min(row.indent, 8) * 2 * _CHAR)}" y="{_num(base)}">'
        f"{_text(_label(row), 50)}</text>",
        f'<rect class="{kinds}" x="{_num(x)}" y="{_num(top)}" width="{_num(span)}" '
        f'height="{_num(height)}" fill="{colour}"{outline}>'
        f"<title>{_text(row.label)}: {_text(row.status, 20)}, {when}</title></rect>",
        f'<text x="{_num(left + _AREA + 8)}" y="{_num(base)}" fill="#333333">{took}</text>',
        "</g>",
    ]
    return "".join(parts)


def _legend(rows: list[Row], y: float, width: float) -> tuple[list[str], float]:
    """A swatch per status present, then the critical-path outline and the thin call bar,
    wrapped to the picture's width; gives the elements and the height they take."""
    statuses = dict.fromkeys(row.status for row in rows)
    entries = [(status, SVG_COLOURS.get(status, _UNKNOWN), "") for status in statuses]
    if any(row.on_critical_path for row in rows):
        entries.append(("critical path", "#ffffff", ' stroke="#111111" stroke-width="2.5"'))
    if any(row.is_call for row in rows):
        entries.append(("nested call (thin bar)", "#bbbbbb", ""))
    out: list[str] = []
    x, top = _PAD, y
    for name, fill, outline in entries:
        label = clip(name.replace("_", " "), 24)
        room = 18 + len(label) * _CHAR + 20
        if x > _PAD and x + room > width - _PAD:
            x, top = _PAD, top + _ROW
        out.append(
            f'<rect class="swatch" x="{_num(x)}" y="{_num(top)}" width="12" height="12" '
            f'fill="{fill}"{outline}/>'
            f'<text x="{_num(x + 18)}" y="{_num(top + 11)}">{_text(label, 24)}</text>'
        )
        x += room
    return out, top - y + _ROW
