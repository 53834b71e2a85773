"""Text from tools, models, plans and servers, made safe to show in a terminal.

Step outputs, tool stderr, plan requests and descriptions are untrusted: a control sequence in
them could clear the screen, set the window title (OSC 0), write the clipboard (OSC 52) or hide
a link (OSC 8), and a bidirectional override could show text reversed. Every C0 and C1
control character except newline and tab is shown as a visible ``\\xNN`` escape instead (a
bidirectional control as ``\\uNNNN``); ``--json`` keeps the data exact (JSON-escaped, see
:func:`json_safe`).

Two layers: the display escapes text where it enters a renderable (so widths are measured on
what is shown), and the CLI's console drops any control character still left in rendered text
as a last guard (``code_evolver.cli.terminal``): dropping, because layout is done by then and
controls were measured as zero-width.
"""

from __future__ import annotations

import re

from rich.markup import escape

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
"""The bidirectional marks, embeddings, overrides and isolates: these reorder what the
terminal shows (U+202E turns the rest of a line around), so text could read as something it
is not."""
_CONTROL = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
"""C0 and C1 controls (but newline and tab), and the bidirectional ones."""
_C1_AND_DEL = re.compile(f"[\x7f-\x9f{_BIDI}]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """``text`` with control characters (but newline and tab) as visible ``\\xNN`` escapes;
    Windows line ends become plain newlines."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_visible, text.replace("\r\n", "\n"))


def without_controls(text: str) -> str:
    """``text`` with control characters (but newline and tab) removed."""
    return _CONTROL.sub("", text)


def shown(text: str) -> str:
    """Untrusted text for a rich markup string: terminal-safe, with its markup escaped."""
    return escape(terminal_safe(text))


def json_safe(document: str) -> str:
    """A JSON document with DEL, C1 and bidirectional controls written as ``\\u`` escapes
    (``json.dumps`` with ``ensure_ascii=False`` escapes only C0). They can only occur inside
    strings, so the data stays exactly the same."""
    return _C1_AND_DEL.sub(lambda m: f"\\u{ord(m.group()):04x}", document)
