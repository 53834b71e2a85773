"""LLM backends behind one interface: embedded (xllamacpp), ollama, openai, and a scripted fake.

Backend modules are imported on demand, so using Code Evolver without a model costs nothing.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from code_evolver.llm.base import LLMBackend, Message, Request
    from code_evolver.llm.fake import ScriptedBackend
    from code_evolver.llm.service import LLMService, choose_backend, create_backend
    from code_evolver.llm.settings import LlmSettings

_LAZY = {
    "LLMBackend": "base",
    "Message": "base",
    "Request": "base",
    "ScriptedBackend": "fake",
    "LLMService": "service",
    "choose_backend": "service",
    "create_backend": "service",
    "LlmSettings": "settings",
}
"""Imported on first use: reading the settings (``llm.settings``) does not load a backend."""


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'code_evolver.llm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"code_evolver.llm.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "LLMBackend",
    "LLMService",
    "LlmSettings",
    "Message",
    "Request",
    "ScriptedBackend",
    "choose_backend",
    "create_backend",
]
