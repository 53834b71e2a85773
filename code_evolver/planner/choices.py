"""Bounded choices: what the clause planner asks a small model instead of a whole plan.

A 135M model copies examples and repeats itself when it writes a plan, but choosing one word
from a short list, under a grammar that admits only those words, it can do in a second: the
prompt is a few lines (prefill is what costs on one thread) and the reply a few tokens.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from code_evolver.llm.base import user
from code_evolver.llm.service import LLMService
from code_evolver.planner.clauses import Clause
from code_evolver.tools.base import Tool

REPLY_TOKENS = 24
_SHOWN_SOURCE = 160


class ToolChooser:
    """Asks the model which tool fits a clause, from the options the rules left open."""

    def __init__(
        self,
        llm: LLMService,
        tools: Mapping[str, Tool],
        on_first_question: Callable[[], None] | None = None,
    ) -> None:
        self.llm = llm
        self.tools = tools
        self.asked = 0
        self.on_first_question = on_first_question
        """Told before the model is first asked (the progress line): the rules often settle
        every clause themselves, and then no model is asked at all."""

    async def __call__(self, clause: Clause, options: Sequence[str]) -> str:
        if self.asked == 0 and self.on_first_question is not None:
            self.on_first_question()
        self.asked += 1
        listed = "\n".join(f"- {name}: {self._describe(name)}" for name in options)
        text = clause.source or ""
        if len(text) > _SHOWN_SOURCE:
            text = text[:_SHOWN_SOURCE] + "…"
        prompt = (
            f"Which tool does this instruction need?\nTools:\n{listed}\n\n"
            f"Instruction: {clause.text}\nText: {text}\nAnswer with the tool."
        )
        schema = {
            "type": "object",
            "properties": {"tool": {"type": "string", "enum": list(options)}},
            "required": ["tool"],
            "additionalProperties": False,
        }
        messages, _ = await self.llm.fit(
            [user(prompt)], REPLY_TOKENS, what="the tool choice"
        )  # a long instruction is cut: a few words are enough to choose a tool
        reply = await self.llm.complete(
            messages, schema=schema, max_tokens=REPLY_TOKENS, temperature=0.0
        )
        return _parse(reply, options)

    def _describe(self, name: str) -> str:
        tool = self.tools.get(name)
        return (tool.description if tool and tool.description else name).split(".")[0]


def _parse(reply: str, options: Sequence[str]) -> str:
    """The chosen tool; the first option (the writer) when the reply names none."""
    try:
        chosen = json.loads(reply).get("tool")
    except (ValueError, AttributeError):
        chosen = next((o for o in options if o in reply), None)
    return chosen if chosen in options else options[0]
