"""Choosing and holding the backend of a session.

``LLMService`` is what the planner and every ``llm`` tool share: it decides which backend to
use (``auto`` asks Ollama first), creates it on first use (the embedded model loads lazily, so
a plan with no LLM step never pays for it) and closes it at the end. Before a prompt is sent,
:meth:`LLMService.fit` or :meth:`LLMService.check_fits` sizes it against the context of one
request (``code_evolver.llm.context``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from code_evolver.errors import BackendError, BackendUnavailable, ConfigError
from code_evolver.home import warn_once
from code_evolver.llm import context
from code_evolver.llm.base import LLMBackend, Message
from code_evolver.llm.embedded import BUNDLED_MODEL
from code_evolver.llm.settings import LlmSettings


def create_backend(name: str, settings: LlmSettings) -> LLMBackend:
    """A backend object for ``name`` (not auto); nothing is loaded or contacted yet."""
    if name == "ollama":
        from code_evolver.llm.ollama import OllamaBackend

        return OllamaBackend(settings.ollama, settings.model)
    if name == "openai":
        from code_evolver.llm.openai_compat import OpenAIBackend

        return OpenAIBackend(settings.openai, settings.model)
    if name == "embedded":
        from code_evolver.llm.embedded import EmbeddedBackend

        embedded = settings.embedded
        if settings.model:
            embedded = embedded.model_copy(update={"model_path": settings.model})
        return EmbeddedBackend(embedded)
    raise BackendError(f"unknown backend {name!r}; use auto, ollama, embedded or openai")


@dataclass
class Choice:
    """Which backend ``auto`` picked, and why (shown by ``evolve doctor``)."""

    backend: str
    reasons: list[str] = field(default_factory=list)


def create_pool(settings: LlmSettings) -> LLMBackend:
    """The endpoints of ``llm.endpoints`` (only the pinned one with ``llm.endpoint``)."""
    from code_evolver.llm.pool import Endpoint, PoolBackend

    endpoints = []
    for entry in settings.chosen_endpoints():
        backend = create_backend(entry.backend, settings.for_endpoint(entry))
        if hasattr(backend, "address_setting"):  # its fix names its entry, not llm.ollama
            backend.address_setting = f"llm.endpoints ({entry.name})"
        endpoints.append(Endpoint(entry.name, backend, entry.max_concurrency, entry.weight))
    return PoolBackend(endpoints)


async def choose_backend(settings: LlmSettings) -> Choice:
    """Resolve ``auto``: Ollama when it answers and has the model, else the embedded model."""
    if settings.pooled:
        names = [e.name for e in settings.chosen_endpoints()]
        return Choice("pool", [f"llm.endpoints: {', '.join(names)}"])
    if settings.backend != "auto":
        return Choice(settings.backend, [f"set by --backend or llm.backend: {settings.backend}"])
    from code_evolver.llm.ollama import OllamaBackend, model_matches

    try:
        ollama = OllamaBackend(settings.ollama, settings.model)
    except ConfigError as exc:  # a malformed $OLLAMA_HOST: auto can do without Ollama
        warn_once("ollama-host", f"{exc}; using the embedded model")
        return Choice("embedded", [f"Ollama not used: {exc}"])
    try:
        installed = await asyncio.wait_for(ollama.installed_models(), settings.probe_timeout_s)
    except (BackendError, TimeoutError) as exc:  # a reason, not a fix: Ollama is not needed
        if isinstance(exc, BackendUnavailable):
            reason = f"nothing answers at {ollama.host}"
        elif isinstance(exc, TimeoutError):
            reason = f"no answer from {ollama.host} within {settings.probe_timeout_s:g}s"
        else:
            reason = str(exc)
        return Choice("embedded", [f"Ollama not used: {reason}"])
    finally:
        await ollama.close()
    if model_matches(ollama.model, installed):
        return Choice("ollama", [f"Ollama at {ollama.host} has {ollama.model}"])
    return Choice(
        "embedded",
        [f"Ollama at {ollama.host} lacks {ollama.model} (`ollama pull {ollama.model}` to use it)"],
    )


class LLMService:
    """The session's backend: chosen once, created on first use, closed at the end."""

    def __init__(self, settings: LlmSettings, backend: LLMBackend | None = None) -> None:
        self.settings = settings
        self._backend = backend
        self.choice: Choice | None = Choice(backend.name, ["given"]) if backend else None
        self._checking: asyncio.Future[None] | None = None
        self._given = backend
        self.on_loading: Callable[[str, bool, float], None] | None = None
        """Told (model, done, seconds) around the one load of the model, so it can be shown."""

    async def resolve(self) -> Choice:
        """Decide which backend to use (probing Ollama for ``auto``); cheap after the first."""
        if self.choice is None:
            self.choice = await choose_backend(self.settings)
        return self.choice

    @property
    def max_concurrency(self) -> int:
        """Requests the chosen backend serves at once (from config; nothing is loaded)."""
        if self._backend is not None:
            return self._backend.max_concurrency
        if self.settings.pooled:
            return sum(e.max_concurrency for e in self.settings.chosen_endpoints())
        backend = self.choice.backend if self.choice else self.settings.backend
        return {
            "ollama": self.settings.ollama.max_concurrency,
            "openai": self.settings.openai.max_concurrency,
        }.get(backend, self.settings.embedded.n_parallel)

    async def check(self) -> None:
        """Make sure the chosen backend can serve (once per session, however many ask at
        once); raises BackendError, and the next call checks again."""
        checking = self._checking
        if (
            checking is not None
            and checking.done()
            and not checking.cancelled()
            and checking.exception() is None
        ):
            return  # checked: every model call comes here, and pays nothing more
        if checking is None or checking.done():
            # never checked, or the last check failed (a later one may find the backend up)
            checking = self._checking = asyncio.ensure_future(self._check())
            # its failure is each waiter's to raise; with none left (a step timed out), it
            # must not be reported as an exception nobody retrieved
            checking.add_done_callback(lambda done: done.cancelled() or done.exception())
        await asyncio.shield(checking)  # a caller that gives up does not stop the others' check

    async def _check(self) -> None:
        backend = await self.backend()
        started = time.perf_counter()
        if self.on_loading is not None:
            self.on_loading(self.identity, False, 0.0)
        await backend.check()
        if self.on_loading is not None:
            self.on_loading(self.identity, True, time.perf_counter() - started)

    async def _ready(self) -> LLMBackend:
        """The backend, checked (and its model loaded) first: whoever asks a model first, a
        step, the planner or a node being written, the loading line shows before the wait."""
        await self.check()
        return await self.backend()

    async def backend(self) -> LLMBackend:
        if self._backend is None:
            choice = await self.resolve()
            if self._backend is None:  # creating does no I/O, so no other caller got here first
                self._backend = (
                    create_pool(self.settings)
                    if choice.backend == "pool"
                    else create_backend(choice.backend, self.settings)
                )
        return self._backend

    @property
    def identity(self) -> str:
        """Backend and model, for cache keys and messages.

        Worked out from the settings alone, so it is the same before and after the backend is
        created (the plan cache reads and writes under one key). A backend given directly
        (tests, embedding applications) names itself.
        """
        if self._given is not None:
            return f"{self._given.name}:{self._given.model}"
        if self.settings.pooled:
            models = sorted(
                {
                    self.settings.for_endpoint(e).model or e.backend
                    for e in self.settings.chosen_endpoints()
                }
            )
            return f"pool:{'+'.join(models)}"
        backend = self.choice.backend if self.choice else self.settings.backend
        if backend == "embedded":
            path = self.settings.model or self.settings.embedded.model_path
            return f"embedded:{Path(path).name if path else BUNDLED_MODEL}"
        model = self.settings.model or {
            "ollama": self.settings.ollama.model,
            "openai": self.settings.openai.model,
        }.get(backend, "")
        return f"{backend}:{model}"

    @property
    def known_identity(self) -> str | None:
        """:attr:`identity` once it names a model: None while ``auto`` has not chosen yet
        (nothing asked a model), so no line shows a half name such as ``auto:``."""
        if self.choice is None and self._given is None and self.settings.backend == "auto":
            return None
        return self.identity

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> str:
        backend = await self._ready()
        return await backend.complete(
            messages, schema=schema, **self._limits(max_tokens, temperature)
        )

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        backend = await self._ready()
        async for piece in backend.stream(
            messages, schema=schema, **self._limits(max_tokens, temperature)
        ):
            yield piece

    async def budget(self, max_tokens: int | None = None) -> context.Budget | None:
        """One request's context, with ``max_tokens`` (else the configured number) kept for the
        reply; None when the backend's context is unknown, and prompts go unchecked."""
        backend = await self._ready()
        if backend.context_tokens is None:
            return None
        reply = self._limits(max_tokens, None)["max_tokens"]
        return context.Budget(backend.context_tokens, reply, backend.context_fix)

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        """The size of ``messages`` as a prompt of the chosen backend (loads the embedded model)."""
        return await (await self._ready()).count_tokens(messages)

    async def fit(
        self, messages: Sequence[Message], max_tokens: int | None = None, *, what: str
    ) -> tuple[list[Message], str | None]:
        """``messages`` ready to send with a reply of ``max_tokens``: the end of the last user
        message cut off if the prompt would not fit otherwise, and a warning saying so (else
        None). ``what`` names the prompt in messages ("the prompt of step s1 (translator)").

        Raises PromptTooLong when not even an empty last user message fits.
        """
        budget = await self.budget(max_tokens)
        if budget is None:
            return list(messages), None
        backend = await self.backend()
        return await context.fit(messages, budget, backend.count_tokens, what=what)

    async def check_fits(
        self, messages: Sequence[Message], max_tokens: int | None = None, *, what: str
    ) -> None:
        """Raise PromptTooLong (naming the size, the limit and the fix) unless ``messages`` and
        a reply of ``max_tokens`` fit in one request."""
        budget = await self.budget(max_tokens)
        if budget is not None:
            backend = await self.backend()
            await context.check(messages, budget, backend.count_tokens, what=what)

    def _limits(self, max_tokens: int | None, temperature: float | None) -> dict[str, Any]:
        """A call's own limits, else the configured ones."""
        return {
            "max_tokens": max_tokens or self.settings.max_tokens,
            "temperature": self.settings.temperature if temperature is None else temperature,
        }

    async def close(self) -> None:
        checking, self._checking = self._checking, None
        if checking is not None and not checking.done():
            checking.cancel()  # no model loads for a service that is closed
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.close()
