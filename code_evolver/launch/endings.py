"""How a child's ending is told in a message: its exit, and the end of what it wrote."""

from __future__ import annotations

import signal


def describe_exit(returncode: int) -> str:
    """``exited with status 3`` or ``was killed by SIGSEGV``."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def tail(data: bytes, *, lines: int = 12, chars: int = 1500) -> str:
    """The end of a stream, which is where the error usually is, as one line."""
    text = data.decode("utf-8", errors="replace").strip()
    kept = text.splitlines()[-lines:]
    joined = " | ".join(line.strip() for line in kept if line.strip())
    return joined if len(joined) <= chars else "..." + joined[-chars:]
