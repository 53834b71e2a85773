"""Closest-name suggestions for error messages ("did you mean ...?")."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The candidates that look most like ``word``, best first (case-insensitive)."""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    matches = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=cutoff)
    return [lowered[m] for m in matches]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``" (did you mean 'a' or 'b'?)"`` or ``""`` when nothing is close."""
    names = closest(word, candidates)
    if not names:
        return ""
    quoted = [repr(n) for n in names]
    options = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f" (did you mean {options}?)"
