"""Reading a plan while the model is still writing it.

``StepStream`` is fed the reply piece by piece and hands out each step object the moment its
closing brace arrives. A small scanner tracks strings and nesting, so it knows exactly when an
object inside the top-level ``steps`` array is complete (a partial parse alone cannot tell a
finished object from one whose remaining keys are still to come); the text up to that point is
then parsed with ``pydantic_core.from_json(..., allow_partial=True)``.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json


class StepStream:
    def __init__(self) -> None:
        self.text = ""
        self._stack: list[str] = []
        self._in_string = False
        self._escaped = False
        self._complete = 0  # step objects closed so far
        self._given = 0  # step objects handed out so far

    def feed(self, piece: str) -> list[dict[str, Any]]:
        """Add ``piece``; return the step objects completed by it (in order)."""
        start = len(self.text)
        self.text += piece
        closed_at: int | None = None
        for offset, char in enumerate(piece):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._stack.append(char)
            elif char in "}]" and self._stack:
                opened = self._stack.pop()
                if opened == "{" and self._stack == ["{", "["]:
                    self._complete += 1
                    closed_at = start + offset + 1
        if closed_at is None:
            return []
        return self._steps_up_to(closed_at)

    def _steps_up_to(self, end: int) -> list[dict[str, Any]]:
        try:
            data = from_json(self.text[:end], allow_partial=True)
        except ValueError:
            return []
        fresh = _steps_of(data)[self._given : self._complete]
        self._given = self._complete
        return [step for step in fresh if isinstance(step, dict)]


def _steps_of(data: Any) -> list[Any]:
    if isinstance(data, dict):
        steps = data.get("steps")
        return steps if isinstance(steps, list) else []
    return []
