"""LLM backends behind one interface: embedded (xllamacpp), ollama, openai, and a scripted fake.

Backend modules are imported on demand, so using Code Evolver without a model costs nothing.
"""

from code_evolver.llm.base import LLMBackend, Message, Request
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.llm.service import LLMService, choose_backend, create_backend
from code_evolver.llm.settings import LlmSettings

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
