"""The prompt shows before the editor behind it has loaded (as powerlevel10k's instant prompt).

Loading asyncio and prompt-toolkit takes about twice as long as ``evolve --help``. Meanwhile
the terminal is still in its cooked mode: what the user types is echoed and kept by the
terminal's line discipline, and when prompt-toolkit switches to raw mode it reads those keys
as its first input. So the prompt can be shown first, from this module that imports nothing,
and handed over: the editor clears the line and draws the same prompt with what was typed.
"""

from __future__ import annotations

import sys
from typing import TextIO

PROMPT = "› "
_CLEAR_LINE = "\r\x1b[K"


def show(stream: TextIO | None = None) -> None:
    """Write the prompt now; the keys typed after it wait in the terminal for the editor."""
    out = stream or sys.stdout
    out.write(PROMPT)
    out.flush()


def hand_over(stream: TextIO | None = None) -> None:
    """Clear the early prompt (and the keys the terminal echoed) for the editor to redraw."""
    out = stream or sys.stdout
    out.write(_CLEAR_LINE)
    out.flush()
