"""The Ollama backend: the ``ollama`` client against a local (or ``OLLAMA_HOST``) server.

Plans use ``format=<JSON schema>``, so Ollama decodes them under a grammar. Ollama serves
``OLLAMA_NUM_PARALLEL`` requests at once (1 unless the server was started otherwise);
``llm.ollama.max_concurrency`` tells the executor the same number. ``llm.ollama.context_tokens``
is sent as ``num_ctx``: Ollama would otherwise use its own default and drop the beginning of a
longer prompt without a word, where we size prompts against a known context first.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx

from code_evolver.errors import BackendError, BackendUnavailable, ModelMissing
from code_evolver.llm.addresses import verify_tls
from code_evolver.llm.base import LLMBackend, Message, guard_real_request
from code_evolver.llm.settings import OLLAMA_HOST_ENV, OllamaSettings


def _import_ollama() -> ModuleType:
    """``import ollama``, which builds a default client from ``$OLLAMA_HOST`` at import time
    and so raises ValueError when that is malformed; we check the address ourselves
    (``OllamaSettings.resolved_host``) and pass it explicitly, so import without it."""
    try:
        return importlib.import_module("ollama")
    except ValueError:
        saved = os.environ.pop(OLLAMA_HOST_ENV, None)
        try:
            return importlib.import_module("ollama")
        finally:
            if saved is not None:
                os.environ[OLLAMA_HOST_ENV] = saved


if TYPE_CHECKING:
    import ollama
else:
    ollama = _import_ollama()


class OllamaBackend(LLMBackend):
    name = "ollama"

    def __init__(self, settings: OllamaSettings, model: str | None = None) -> None:
        self.settings = settings
        self.host = settings.resolved_host()
        self.model = model or settings.model
        self.max_concurrency = settings.max_concurrency
        self.context_tokens = settings.context_tokens
        self.context_fix = "raise llm.ollama.context_tokens (sent to Ollama as num_ctx)"
        self.address_setting = "OLLAMA_HOST or llm.ollama.host"
        """Where its address is set, for the fix an error names (an endpoint's own entry)."""
        self._client = ollama.AsyncClient(
            host=self.host, timeout=settings.timeout_s, verify=verify_tls(self.host)
        )

    async def installed_models(self) -> list[str]:
        """Model names the server has; raises BackendUnavailable when it does not answer."""
        guard_real_request(self)
        try:
            listing = await self._client.list()
        except (httpx.HTTPError, ConnectionError, OSError) as exc:
            raise self._unavailable(exc) from None
        except ollama.ResponseError as exc:
            raise BackendError(
                f"Ollama at {self.host} answered {exc.status_code}: {exc.error}"
            ) from None
        except ValueError:  # not JSON, or not the shape of Ollama's API
            raise self._not_ollama() from None
        return [m.model for m in listing.models if m.model]

    async def has_model(self) -> bool:
        return model_matches(self.model, await self.installed_models())

    async def check(self) -> None:
        if not await self.has_model():
            raise self._map(ollama.ResponseError("model not found", 404))

    def _options(self, max_tokens: int | None, temperature: float | None) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.context_tokens is not None:
            options["num_ctx"] = self.context_tokens
        if max_tokens is not None:
            options["num_predict"] = max_tokens
        if temperature is not None:
            options["temperature"] = temperature
        return options

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> str:
        guard_real_request(self)
        try:
            reply = await self._client.chat(
                model=self.model,
                messages=list(messages),
                format=schema,
                options=self._options(max_tokens, temperature),
                keep_alive=self.settings.keep_alive,
            )
        except Exception as exc:
            raise self._map(exc) from None
        return reply.message.content or ""

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        guard_real_request(self)
        try:
            parts = await self._client.chat(
                model=self.model,
                messages=list(messages),
                format=schema,
                options=self._options(max_tokens, temperature),
                keep_alive=self.settings.keep_alive,
                stream=True,
            )
            async for part in parts:
                if part.message.content:
                    yield part.message.content
        except Exception as exc:
            raise self._map(exc) from None

    async def close(self) -> None:
        inner = getattr(self._client, "_client", None)
        if isinstance(inner, httpx.AsyncClient):
            await inner.aclose()

    def _map(self, exc: Exception) -> Exception:
        if isinstance(exc, ollama.ResponseError):
            if exc.status_code == 404 or "not found" in str(exc.error).lower():
                return ModelMissing(
                    f"Ollama at {self.host} does not have model {self.model!r}: "
                    f"run `ollama pull {self.model}`, or choose another with --model"
                )
            return BackendError(f"Ollama error {exc.status_code}: {exc.error}")
        if isinstance(exc, httpx.HTTPError | ConnectionError | OSError):
            return self._unavailable(exc)
        if isinstance(exc, ValueError):
            return self._not_ollama()
        return exc

    def _not_ollama(self) -> BackendError:
        return BackendError(
            f"{self.host} answered, but not like Ollama's API; check {self.address_setting}"
        )

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"Ollama is not reachable at {self.host} ({type(exc).__name__}): start it with "
            f"`ollama serve`, fix {self.address_setting}, or use --backend embedded"
        )


def model_matches(wanted: str, installed: Sequence[str]) -> bool:
    """Ollama reads an untagged name as ``:latest``: ``llama3.2`` is ``llama3.2:latest``."""
    tagged = wanted if ":" in wanted.rsplit("/", 1)[-1] else f"{wanted}:latest"
    return tagged in installed or wanted in installed
