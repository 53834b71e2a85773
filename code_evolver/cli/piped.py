"""The request's input: text piped on stdin, or ``--input FILE`` (``-`` for stdin).

The convention of ``llm`` and shell tools: ``cat notes.txt | evolve "summarize this"``. Stdin is
read only when something was piped or redirected into it (a pipe, a file, a socket): a
terminal is never read (it would wait for typing), nor is a character device such as
``/dev/null`` (the stdin of cron jobs and daemons). Empty input counts as none, so the request
asks for text instead of working on nothing.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO

from code_evolver.errors import UserError

STDIN = "-"
MAX_BYTES = 64 * 1024 * 1024
"""More than this is not a request's text: a model's context holds a tiny fraction of it."""


def read_input(path: Path | None, *, stdin: BinaryIO | None = None) -> str | None:
    """The text the request works on, or None when there is none."""
    stdin = stdin if stdin is not None else sys.stdin.buffer
    if path is not None and str(path) != STDIN:
        try:
            with path.open("rb") as f:
                return _text(f, f"--input {path}")
        except OSError as exc:
            raise UserError(f"cannot read --input {path}: {exc.strerror or exc}") from None
    if path is None and not _piped(stdin):
        return None
    return _text(stdin, "the piped input")


def has_text(stdin: BinaryIO | None = None, wait_s: float = 0.2) -> bool:
    """Whether text was piped in, blank text counting as none (reads up to its first word:
    for a caller that will not run a request). A pipe nobody writes to within ``wait_s``
    counts as none, so that this never hangs."""
    import select

    stdin = stdin if stdin is not None else sys.stdin.buffer
    if not _piped(stdin):
        return False
    while isinstance(stdin, io.BytesIO) or select.select([stdin], [], [], wait_s)[0]:
        chunk = stdin.read1(4096) if hasattr(stdin, "read1") else stdin.read(4096)
        if not chunk:
            return False
        if chunk.strip():  # blank input counts as none, as for a request
            return True
    return False


def _piped(stream: BinaryIO) -> bool:
    if isinstance(stream, io.BytesIO):
        return True  # in memory (a test's CliRunner input): it holds data on purpose
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False  # no descriptor and not data (pytest's stand-in that refuses reads)
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


def _text(stream: BinaryIO, what: str) -> str | None:
    data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise UserError(
            f"{what} is over {MAX_BYTES // 2**20} MiB; give the part the request is about"
        )
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{what} is not UTF-8 text (byte {exc.start}); convert it first, e.g. with iconv"
        ) from None
    return text if text.strip() else None
