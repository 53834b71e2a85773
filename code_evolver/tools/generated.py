"""``kind: generated`` (the ``generate`` tool): a step that no other tool can do.

The step's ``task`` param (its description, when the plan gives none) says what is needed.
A stored node that does it (matched by meaning, :mod:`code_evolver.evolve.matching`) runs
at once, with no model call; otherwise a node is written, tested in the strict sandbox,
repaired, stored and run (:mod:`code_evolver.evolve.generator`). When no node passes its
tests, the step is answered by the model instead, with a warning: the run goes on. Stored
nodes keep their record of runs; one that fails more often than not is written again as
its next version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from code_evolver.config import EvolveSettings, ExecutionSettings
from code_evolver.errors import ToolFailed
from code_evolver.evolve.matching import best_match
from code_evolver.evolve.node_store import NodeStore, StoredNode
from code_evolver.llm.base import user
from code_evolver.llm.service import LLMService
from code_evolver.tools.base import Output, Tool, ToolCall
from code_evolver.tools.node import NodeTool

log = logging.getLogger("code_evolver")


class GeneratedTool(Tool):
    kind = "generated"

    def __init__(
        self,
        name: str,
        llm: LLMService,
        *,
        evolve: EvolveSettings | None = None,
        store: NodeStore | None = None,
        tools: tuple[str, ...] = (),
        **settings: Any,
    ) -> None:
        super().__init__(name, **settings)
        self.llm = llm
        self.evolve = evolve or EvolveSettings()
        self._store = store
        self.tools = tools
        """Tools a written node may call (the run's other tools)."""
        self.generations = 0
        """Nodes this tool wrote (or tried to) in this process."""
        self._escalation: LLMService | None = None
        self.on_stored: Callable[[StoredNode], None] | None = None
        """Told of each node it stores (the registry, which makes it a tool at once)."""

    @property
    def store(self) -> NodeStore:
        if self._store is None:
            self._store = NodeStore()
        return self._store

    async def run(self, call: ToolCall) -> Output:
        task = str(call.params.get("task") or "").strip() or call.input.strip()[:300]
        if not task:
            raise ToolFailed("a generate step needs a task (its description)", retryable=False)
        node, unfit = None, None
        if self.evolve.reuse:
            node, unfit = best_match(self.store.all(), task, self.evolve.reuse_threshold)
            if node is not None:  # said where a run's stages are: the live view, the history
                return await self._run(node, call, stage=f"reuse node {node.name} v{node.version}")
        if node is None:
            node = await self._write(task, call, unfit.name if unfit else None)
            if node is None:
                started = time.perf_counter()
                _stage(call, "answer", "answer with the model (no node)", "running")
                answer = await self._answer(task, call)
                seconds = time.perf_counter() - started
                _stage(call, "answer", "answer with the model (no node)", "succeeded", seconds)
                return answer
        return await self._run(node, call)

    async def _write(self, task: str, call: ToolCall, name: str | None) -> StoredNode | None:
        from code_evolver.evolve.generator import NodeGenerator, node_name  # when writing

        execution = call.launcher.settings if call.launcher else ExecutionSettings()
        generator = NodeGenerator(
            self.llm, self.evolve, execution, self.store, tools=self.tools, escalate=self._stronger
        )
        self.generations += 1
        outcome = await generator.generate(task, call.input, name, call.on_stage)
        if outcome.node is not None and self.on_stored is not None:
            self.on_stored(outcome.node)
        if outcome.node is None:
            self.store.record_failure(
                name or node_name(task), task, [a.to_json() for a in outcome.attempts]
            )
            log.warning(
                "step %s: no node for %r after %d attempts (%s); the model answers instead",
                call.step_id,
                task,
                len(outcome.attempts),
                outcome.reason,
            )
        return outcome.node

    def _stronger(self) -> LLMService:
        """The service of ``evolve.escalation_model`` (made once, closed with the tool)."""
        model = self.evolve.escalation_model
        if model is None:
            return self.llm
        if self._escalation is None:
            self._escalation = LLMService(self.llm.settings.model_copy(update={"model": model}))
        return self._escalation

    async def close(self) -> None:
        if self._escalation is not None:
            await self._escalation.close()
            self._escalation = None

    async def _run(self, node: StoredNode, call: ToolCall, stage: str | None = None) -> Output:
        """Run ``node`` with the step's params but ``task`` (this tool's own: what to write);
        ``stage``: name the run as a stage of the step (a reused node)."""
        tool = NodeTool(node.name, node.main, description=node.description)
        params = {k: v for k, v in call.params.items() if k != "task"}
        started = time.perf_counter()
        if stage:
            _stage(call, "reuse", stage, "running")
        try:
            output = await tool.run(replace(call, params=params))
        except ToolFailed as exc:
            seconds = time.perf_counter() - started
            self.store.record_run(node, False, seconds)
            if stage:
                _stage(call, "reuse", stage, "failed", seconds, str(exc))
            raise
        seconds = time.perf_counter() - started
        self.store.record_run(node, True, seconds)
        if stage:
            _stage(call, "reuse", stage, "succeeded", seconds)
        return output

    async def _answer(self, task: str, call: ToolCall) -> Output:
        prompt = f"{task}\n\n{call.input}" if call.input.strip() else task
        return await self.llm.complete([user(prompt)])


def _stage(
    call: ToolCall,
    stage: str,
    name: str,
    status: str,
    seconds: float = 0.0,
    error: str | None = None,
) -> None:
    if call.on_stage is not None:
        call.on_stage(stage, name, status, seconds, error)
