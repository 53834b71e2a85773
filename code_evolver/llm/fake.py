"""``ScriptedBackend``: a backend that answers from a script, for tests (ours and yours).

    backend = ScriptedBackend(["a joke", "une blague"])
    backend.enqueue('{"steps": [...]}')                 # more replies, in order
    ScriptedBackend(lambda request: request.messages[-1]["content"].upper())  # computed

Every call is recorded in ``requests``. ``stream`` yields the reply in ``chunk_size`` pieces,
``chunk_delay_s`` apart, to imitate a model generating slowly; ``delay_s`` is a wait before
any reply or first piece (a long prompt being read). A call with no reply left
raises ``BackendError`` naming the request, so a test fails at the call that was not expected.
``context_tokens`` gives it a context to size prompts against (counted with the estimate of
``code_evolver.llm.context``); by default it has none, and nothing is checked.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from code_evolver.errors import BackendError
from code_evolver.llm.base import LLMBackend, Message, Request

Reply = str | BaseException
Script = Iterable[Reply] | Callable[[Request], Reply]


class ScriptedBackend(LLMBackend):
    name = "scripted"

    def __init__(
        self,
        script: Script = (),
        *,
        model: str = "scripted",
        max_concurrency: int = 4,
        chunk_size: int = 8,
        chunk_delay_s: float = 0.0,
        delay_s: float = 0.0,
        context_tokens: int | None = None,
    ) -> None:
        self.model = model
        self.context_tokens = context_tokens
        self.context_fix = "raise the scripted backend's context_tokens"
        self.max_concurrency = max_concurrency
        self.chunk_size = chunk_size
        self.chunk_delay_s = chunk_delay_s
        self.delay_s = delay_s
        self.requests: list[Request] = []
        self.running = 0
        self.peak = 0
        self.closed = False
        self._compute: Callable[[Request], Reply] | None = None
        self._replies: deque[Reply] = deque()
        if callable(script):
            self._compute = script
        else:
            self._replies.extend(script)

    def enqueue(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    def _next(self, request: Request) -> str:
        self.requests.append(request)
        if self._compute is not None:
            reply = self._compute(request)
        elif self._replies:
            reply = self._replies.popleft()
        else:
            last = request.messages[-1]["content"][:80] if request.messages else ""
            raise BackendError(f"ScriptedBackend has no reply left for: {last!r}")
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> str:
        request = Request(tuple(messages), schema, max_tokens, temperature)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return self._next(request)
        finally:
            self.running -= 1

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        request = Request(tuple(messages), schema, max_tokens, temperature)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if self.delay_s:  # the prompt being read: no token yet
                await asyncio.sleep(self.delay_s)
            reply = self._next(request)
            for start in range(0, len(reply), self.chunk_size):
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                yield reply[start : start + self.chunk_size]
        finally:
            self.running -= 1

    async def close(self) -> None:
        self.closed = True
