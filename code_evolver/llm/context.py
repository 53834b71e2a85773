"""Sizing a prompt against the context of one request, before it is sent.

A model holds each request, prompt and reply together, in a context of ``context_tokens``
tokens (embedded: one slot, ``n_ctx / n_parallel``). Sent anyway, a longer prompt is refused by
llama.cpp, or shortened from the front without a word by Ollama, and a reply that finds the
context full stops mid-sentence. So a prompt is measured first, with ``max_tokens`` kept free
for the reply:

- :func:`fit` cuts the end of the last user message (where a tool's input goes) until the
  prompt fits, and returns a warning saying so;
- :func:`check` refuses with :class:`~code_evolver.errors.PromptTooLong`.

Both name the size, the limit and the setting that makes room. Backends count with their own
tokenizer where they have one at hand (embedded) and otherwise estimate on the high side
(:func:`estimate_tokens`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from code_evolver.errors import PromptTooLong

if TYPE_CHECKING:
    from code_evolver.llm.base import Message

BYTES_PER_TOKEN = 3
"""For estimates. Measured with SmolLM2's tokenizer (49k tokens): English prose 5 UTF-8 bytes per
token, Markdown and code 3.7-4, French 2.6; larger vocabularies (Llama 3: 128k) do better. CJK
text (1.7 in SmolLM2) is underestimated: the backend's own refusal still catches it."""
MESSAGE_TOKENS = 8
"""For estimates: the chat template's markers around each message, and the reply's opening."""
MARGIN_TOKENS = 16
"""Left free: a count and the server's own rendering of the prompt may differ by a few tokens."""
CUT_MARK = " [...]"
"""Ends a shortened message, so the model knows that the text goes on."""
FIT_ROUNDS = 6

Counter = Callable[[Sequence["Message"]], Awaitable[int]]
"""Counts the tokens of a prompt: ``LLMBackend.count_tokens``."""


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A count for backends without a tokenizer at hand: high for most text, never exact."""
    total = MESSAGE_TOKENS
    for message in messages:
        total += MESSAGE_TOKENS + -(-len(message["content"].encode("utf-8")) // BYTES_PER_TOKEN)
    return total


@dataclass(frozen=True, slots=True)
class Budget:
    """One request's context, the part of it kept for the reply, and how to get more."""

    context: int
    """Tokens one request holds, prompt and reply together."""
    reply: int
    """Tokens kept free for the reply (the call's ``max_tokens``)."""
    fix: str
    """The setting that gives a request more room, for messages."""

    @property
    def prompt(self) -> int:
        """The largest prompt that fits."""
        return self.context - self.reply - MARGIN_TOKENS


def too_long(what: str, tokens: int, limit: int, fix: str, reply: int = 0) -> PromptTooLong:
    """The refusal, naming the size, the limit and the fix."""
    kept = f", plus {reply:,} kept for the reply," if reply else ""
    return PromptTooLong(
        f"{what} is too long for the model: {tokens:,} tokens{kept} exceed the {limit:,} "
        f"tokens that one request holds; shorten it, or {fix}",
        tokens=tokens,
        limit=limit,
    )


async def check(messages: Sequence[Message], budget: Budget, count: Counter, *, what: str) -> None:
    """Raise PromptTooLong unless ``messages`` and a reply of ``budget.reply`` tokens fit."""
    tokens = await count(messages)
    if tokens > budget.prompt:
        raise too_long(what, tokens, budget.context, budget.fix, budget.reply)


async def fit(
    messages: Sequence[Message], budget: Budget, count: Counter, *, what: str
) -> tuple[list[Message], str | None]:
    """``messages``, with the end of the last user message cut off if that is needed to fit,
    and a warning saying what was cut (None when nothing was).

    Raises PromptTooLong when even an empty last user message would not fit (a long system
    prompt, a large ``max_tokens``), or when there is no user message to shorten.
    """
    kept = list(messages)
    tokens = await count(kept)
    if tokens <= budget.prompt:
        return kept, None
    index = next((i for i in reversed(range(len(kept))) if kept[i]["role"] == "user"), None)
    if index is None:
        raise too_long(what, tokens, budget.context, budget.fix, budget.reply)
    text = kept[index]["content"]
    fixed = await count(_replaced(kept, index, CUT_MARK))
    room = budget.prompt - fixed
    length = len(text) * room // max(1, tokens - fixed)
    for _ in range(FIT_ROUNDS):
        if room <= 0 or length <= 0:
            break
        shortened = _replaced(kept, index, _cut(text, length))
        size = await count(shortened)
        if size <= budget.prompt:
            cut = len(shortened[index]["content"]) - len(CUT_MARK)
            warning = (
                f"{what} was cut to fit the model's context: the first {cut:,} of "
                f"{len(text):,} characters were kept ({tokens:,} tokens, plus {budget.reply:,} "
                f"kept for the reply, exceed the {budget.context:,} that one request holds); "
                f"to keep all of it, {budget.fix}"
            )
            return shortened, warning
        length = min(length - 1, length * room // max(1, size - fixed))
    raise too_long(what, tokens, budget.context, budget.fix, budget.reply)


def _replaced(messages: list[Message], index: int, content: str) -> list[Message]:
    changed = list(messages)
    changed[index] = {"role": changed[index]["role"], "content": content}
    return changed


def _cut(text: str, length: int) -> str:
    """The first ``length`` characters of ``text`` (ending at a space when one is near) and
    the mark."""
    piece = text[:length]
    space = piece.rfind(" ", length * 4 // 5)
    return (piece[:space] if space > 0 else piece).rstrip() + CUT_MARK
