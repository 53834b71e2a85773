"""``kind: llm``: a prompt template answered by the session's model.

The template is read from ``prompts/`` when the tool is built, so a missing file is a config
error before anything runs. All llm tools share one backend, and through their common
``resource`` the executor never runs more llm steps than the backend serves at once.

A prompt is sized against the model's context before it is sent: one that does not fit with
its reply (``max_tokens``) loses the end of its text, the input, with a warning (the
``code_evolver`` logger, which the CLI prints as ``warning:``); one that cannot fit at all
fails the step with PromptTooLong's message, without retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from code_evolver.errors import BackendError, ModelMissing, PromptTooLong, ToolFailed
from code_evolver.llm.base import Message, system, user
from code_evolver.llm.pool import RESTART, RESTARTABLE, ROUTING, RoutingListener
from code_evolver.llm.service import LLMService
from code_evolver.templating import Template
from code_evolver.tools.base import Output, Tool, ToolCall, params_used, tool_resolver

LLM_RESOURCE = "llm"

log = logging.getLogger("code_evolver")


class LlmTool(Tool):
    kind = "llm"

    def __init__(
        self,
        name: str,
        template: Template,
        llm: LLMService,
        *,
        system_prompt: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(name, **settings)
        self.template = template
        self.llm = llm
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens
        self.temperature = temperature

    @property
    def required_params(self) -> frozenset[str]:
        return params_used([self.template]) - set(self.default_params)

    @property
    def resource(self) -> str | None:
        return LLM_RESOURCE

    @property
    def resource_capacity(self) -> int | None:
        return self.llm.max_concurrency

    async def prepare(self) -> None:
        await self.llm.check()

    def messages(self, call: ToolCall) -> list[Message]:
        prompt = self.template.render(tool_resolver(call))
        messages = [system(self.system_prompt)] if self.system_prompt else []
        messages.append(user(prompt))
        return messages

    async def _reply(self, messages: list[Message], on_output: Callable[[str], None] | None) -> str:
        """The model's reply; streamed piece by piece when someone watches it being written."""
        if on_output is None:
            return await self.llm.complete(
                messages, max_tokens=self.max_tokens, temperature=self.temperature
            )
        pieces: list[str] = []
        restartable = RESTARTABLE.set(True)
        try:
            async for piece in self.llm.stream(
                messages, max_tokens=self.max_tokens, temperature=self.temperature
            ):
                if piece is RESTART:  # another server answers from the start
                    pieces.clear()
                pieces.append(piece)
                on_output(piece)
        finally:
            RESTARTABLE.reset(restartable)
        return "".join(pieces)

    async def run(self, call: ToolCall) -> Output:
        where = f"step {call.step_id} ({self.name})" if call.step_id else self.name
        what = f"the prompt of {where}"
        routed = ROUTING.set(_stages_of(call)) if call.on_stage is not None else None
        try:
            messages, warning = await self.llm.fit(self.messages(call), self.max_tokens, what=what)
            if warning and call.attempt == 1:
                log.warning(warning)
            text = await self._reply(messages, call.on_output)
        except PromptTooLong as exc:
            raise ToolFailed(str(exc), retryable=False) from None
        except BackendError as exc:
            raise ToolFailed(str(exc), retryable=not isinstance(exc, ModelMissing)) from None
        finally:
            if routed is not None:
                ROUTING.reset(routed)
        text = text.strip()
        if not text:
            raise ToolFailed("the model returned an empty reply")
        return text


def _stages_of(call: ToolCall) -> RoutingListener:
    """Where a pool sends this step's model calls, as stages of the step (``on NAME``)."""
    count = 0

    def heard(endpoint: str, status: str, seconds: float = 0.0, error: str | None = None) -> None:
        nonlocal count
        count += status == "running"
        if call.on_stage is not None:
            call.on_stage(f"llm{count}", f"on {endpoint}", status, seconds, error)

    return heard
