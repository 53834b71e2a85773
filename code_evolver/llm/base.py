"""The seam between Code Evolver and any language model: one small backend interface.

A backend answers chat messages with text, either whole (:meth:`LLMBackend.complete`) or as a
stream of text pieces (:meth:`LLMBackend.stream`). With ``schema`` the reply is constrained to
JSON matching that JSON schema wherever the backend can decode under a grammar (Ollama
``format=``, llama.cpp ``response_format`` / llguidance). ``max_concurrency`` says how many
requests the backend serves at once; the executor never sends it more.

A request holds its prompt and its reply in ``context_tokens`` tokens, where the backend knows
that number; :meth:`LLMBackend.count_tokens` measures a prompt against it before it is sent
(``code_evolver.llm.context``).

Each backend maps its own failures once, where they enter: nothing reachable becomes
``BackendUnavailable``, an unknown model ``ModelMissing``, a prompt the model refuses as too
long ``PromptTooLong``, anything else ``BackendError``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from code_evolver.llm.context import estimate_tokens

ALLOW_MODEL_REQUESTS = True
"""Unit tests set this to False, so an accidental call to a real model fails loudly."""


class Message(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Request:
    """One call as a backend received it (kept by the scripted backend for assertions)."""

    messages: tuple[Message, ...]
    schema: dict[str, Any] | None = None
    max_tokens: int | None = None
    temperature: float | None = None


class LLMBackend(abc.ABC):
    """A chat model. Implementations: embedded, ollama, openai, and the scripted fake."""

    name: str = "backend"
    model: str = ""
    max_concurrency: int = 1
    completion_tokens: int = 0
    """Tokens generated so far, where the backend reports them (for throughput figures)."""
    context_tokens: int | None = None
    """Tokens one request holds, prompt and reply together; None: unknown, nothing is checked."""
    context_fix: str = "use a model with a larger context"
    """How the user gives a request more room (ends a PromptTooLong message)."""

    @abc.abstractmethod
    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> str:
        """The whole reply."""

    @abc.abstractmethod
    def stream(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        """The reply in pieces, as the model produces them."""

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        """The size of ``messages`` as a prompt, in tokens; an estimate unless the backend has
        its tokenizer at hand."""
        return estimate_tokens(messages)

    async def check(self) -> None:  # noqa: B027 - optional hook
        """Raise BackendUnavailable or ModelMissing (with the fix) if requests cannot succeed."""

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the model or connection; the backend is not used afterwards."""

    def describe(self) -> str:
        return f"{self.name} ({self.model})" if self.model else self.name


def guard_real_request(backend: LLMBackend) -> None:
    """Refuse real model calls and server probes while tests have switched them off."""
    if not ALLOW_MODEL_REQUESTS:
        raise RuntimeError(
            f"a unit test tried to call the real {backend.name} backend; use "
            "code_evolver.llm.fake.ScriptedBackend, or mark the test `integration`"
        )


def user(content: str) -> Message:
    return {"role": "user", "content": content}


def system(content: str) -> Message:
    return {"role": "system", "content": content}


def assistant(content: str) -> Message:
    return {"role": "assistant", "content": content}
