"""What the conversation remembers: the last answers, bounded in size.

A follow-up ("now translate that to german", "make it shorter") works on the last answer;
``{last}`` names it in any request. Only the newest turns are kept, and only so many
characters of them, so that a long session neither grows without bound nor sends a model
more than it can read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MAX_TURNS = 10
MAX_CHARS = 20_000
PLANNER_CHARS = 1_200
"""How much of the conversation a planning model reads: a small model's context is small."""
PLANNER_ANSWER_CHARS = 240


@dataclass(frozen=True)
class Turn:
    request: str
    answer: str


class Conversation:
    def __init__(self, max_turns: int = MAX_TURNS, max_chars: int = MAX_CHARS) -> None:
        self.max_chars = max_chars
        self.turns: deque[Turn] = deque(maxlen=max_turns)

    @property
    def last(self) -> str | None:
        """The last answer (clipped to ``max_chars``), or None before the first."""
        return self.turns[-1].answer if self.turns else None

    def add(self, request: str, answer: str) -> None:
        self.turns.append(Turn(request, answer[: self.max_chars]))
        while sum(len(t.answer) for t in self.turns) > self.max_chars and len(self.turns) > 1:
            self.turns.popleft()

    def clear(self) -> None:
        self.turns.clear()

    def for_planner(self, max_chars: int = PLANNER_CHARS) -> str | None:
        """The newest turns, each answer clipped, within ``max_chars``: what a model that plans
        a follow-up reads first ("what about dogs?" means little without them)."""
        lines: list[str] = []
        used = 0
        for turn in reversed(self.turns):
            answer = " ".join(turn.answer.split())
            if len(answer) > PLANNER_ANSWER_CHARS:
                answer = answer[:PLANNER_ANSWER_CHARS] + "…"
            line = f"- asked: {' '.join(turn.request.split())}\n  answered: {answer}"
            if used + len(line) > max_chars:
                break
            lines.insert(0, line)
            used += len(line)
        if not lines:
            return None
        return "Earlier in this conversation (oldest first):\n" + "\n".join(lines)

    def describe(self) -> str:
        """``/context``: what a follow-up can build on."""
        if not self.turns:
            return "No context yet: the next answer becomes the context of the one after it."
        size = sum(len(t.answer) for t in self.turns)
        lines = [f"{len(self.turns)} turns, {size:,} characters (at most {self.max_chars:,}):"]
        for number, turn in enumerate(self.turns, start=1):
            answer = " ".join(turn.answer.split())
            lines.append(f"{number}. {turn.request} → {answer[:80]}{'…' * (len(answer) > 80)}")
        lines.append("A follow-up without text of its own works on the last answer ({last}).")
        return "\n".join(lines)
