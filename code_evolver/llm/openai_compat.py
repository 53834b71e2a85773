"""Any OpenAI-compatible chat server: vLLM, llama.cpp's server, LM Studio, Ollama's ``/v1``, or
a hosted API. Plain HTTP with httpx: ``POST {base_url}/chat/completions``, streamed as
server-sent events. The API key, when one is needed, is read from the environment variable
that ``llm.openai.api_key_env`` names, never from the config file.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from code_evolver.errors import BackendError, BackendUnavailable, ModelMissing, PromptTooLong
from code_evolver.llm.addresses import verify_tls
from code_evolver.llm.base import LLMBackend, Message, guard_real_request
from code_evolver.llm.settings import OpenAISettings

CONTEXT_EXCEEDED = (
    "exceed_context_size_error",
    "context_length_exceeded",
    "maximum context length",
)
"""How llama.cpp's server, OpenAI and vLLM say that a prompt does not fit (in a 400 reply)."""


class OpenAIBackend(LLMBackend):
    name = "openai"

    def __init__(self, settings: OpenAISettings, model: str | None = None) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.model = model or settings.model
        self.max_concurrency = settings.max_concurrency
        self.context_tokens = settings.context_tokens
        self.context_fix = (
            "set llm.openai.context_tokens to the server's context per request, if it is larger"
        )
        self.address_setting = "llm.openai.base_url"
        """Where its address is set, for the fix an error names (an endpoint's own entry)."""
        headers = {"Content-Type": "application/json"}
        key = settings.api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=settings.timeout_s,
            verify=verify_tls(self.base_url),
        )

    async def models(self) -> list[str]:
        """The model ids the server lists at ``/models``."""
        guard_real_request(self)
        try:
            response = await self._client.get("/models")
        except httpx.HTTPError as exc:
            raise self._unavailable(exc) from None
        self._check(response)
        try:
            return [m.get("id", "") for m in response.json().get("data", [])]
        except (ValueError, AttributeError, TypeError):
            raise BackendError(
                f"{self.base_url}/models answered, but not like an OpenAI-compatible API"
            ) from None

    async def check(self) -> None:
        await self.models()

    def _body(
        self,
        messages: Sequence[Message],
        schema: dict[str, Any] | None,
        max_tokens: int | None,
        temperature: float | None,
        stream: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": list(messages)}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": schema, "strict": True},
            }
        if stream:
            body["stream"] = True
        return body

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> str:
        guard_real_request(self)
        body = self._body(messages, schema, max_tokens, temperature, stream=False)
        try:
            response = await self._client.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise self._unavailable(exc) from None
        self._check(response)
        try:
            return response.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise BackendError(
                f"unexpected reply from {self.base_url}: {response.text[:200]}"
            ) from None

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        guard_real_request(self)
        body = self._body(messages, schema, max_tokens, temperature, stream=True)
        try:
            async with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._check(response)
                async for line in response.aiter_lines():
                    piece = _sse_content(line)
                    if piece is None:
                        break
                    if piece:
                        yield piece
        except httpx.HTTPError as exc:
            raise self._unavailable(exc) from None

    async def close(self) -> None:
        await self._client.aclose()

    def _check(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        detail = response.text[:300]
        if response.status_code == 404 and "model" in detail.lower():
            raise ModelMissing(
                f"{self.base_url} has no model {self.model!r}; set llm.openai.model or --model"
            )
        if response.status_code == 400 and any(mark in detail for mark in CONTEXT_EXCEEDED):
            raise PromptTooLong(
                f"{self.base_url} refused the prompt as too long for the model's context "
                f"({detail[:200]}); shorten it, or lower max_tokens"
            )
        if response.status_code in (401, 403):
            env = self.settings.api_key_env or "an API key variable"
            raise BackendError(
                f"{self.base_url} refused the request ({response.status_code}); "
                f"check the key in ${env}"
            )
        raise BackendError(f"{self.base_url} answered {response.status_code}: {detail}")

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"no OpenAI-compatible server answers at {self.base_url} ({type(exc).__name__}); "
            f"start it, fix {self.address_setting}, or use --backend embedded"
        )


def _sse_content(line: str) -> str | None:
    """The text of one server-sent event line; ``None`` at ``[DONE]``, ``""`` for others."""
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    try:
        event = json.loads(data)
    except ValueError:
        return ""
    if event.get("error"):
        raise BackendError(f"server error while streaming: {event['error']}")
    text = ""
    for choice in event.get("choices") or ():
        text += (choice.get("delta") or {}).get("content") or ""
    return text
