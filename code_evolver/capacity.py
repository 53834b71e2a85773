"""Concurrency limits of a run: ``max_parallel`` slots, and one gate per tool.

A tool's gate may be chained to a shared one (all ``llm`` tools share their backend's
capacity). Steps take a global slot and their tool's gate; a step waiting for the tool calls
of its script *lends* its slot to them (see ``code_evolver.calls``), so nested calls only take
tool gates and extra global slots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from code_evolver.tools.base import Tool


@dataclass(slots=True)
class Gate:
    """A concurrency limit: a tool's own, optionally chained to a resource it shares."""

    limit: float
    shared: Gate | None = None
    running: int = 0

    def free(self) -> bool:
        return self.running < self.limit and (
            self.shared is None or self.shared.running < self.shared.limit
        )

    def take(self) -> None:
        self.running += 1
        if self.shared is not None:
            self.shared.running += 1

    def release(self) -> None:
        self.running -= 1
        if self.shared is not None:
            self.shared.running -= 1


class Capacity:
    def __init__(self, max_parallel: int) -> None:
        self.max_parallel = max_parallel
        self.running = 0
        """Global slots in use."""
        self.lent = 0
        """Calls running on a slot lent by their waiting caller (no slot of their own)."""
        self.peak = 0
        """The most steps and calls running at once, on slots of their own or lent ones."""
        self.gates: dict[str, Gate] = {}

    def open(self, tools: Mapping[str, Tool]) -> None:
        """One gate per tool, chained to one shared gate per resource.

        Read when the run starts, after the tools' ``prepare()``: a backend's capacity is only
        known once it has been chosen.
        """
        shared: dict[str, Gate] = {}
        for name, tool in tools.items():
            resource = tool.resource
            if resource is not None:
                capacity = tool.resource_capacity or math.inf
                gate = shared.setdefault(resource, Gate(capacity))
                gate.limit = min(gate.limit, capacity)
            self.gates[name] = Gate(
                tool.max_concurrency or math.inf, shared[resource] if resource else None
            )

    def refresh(self, tools: Mapping[str, Tool], name: str) -> None:
        """Re-read a tool's shared capacity, e.g. once its LLM backend has been chosen."""
        tool, gate = tools[name], self.gates.get(name)
        if gate is not None and gate.shared is not None:
            gate.shared.limit = tool.resource_capacity or math.inf

    def slot_free(self) -> bool:
        return self.running < self.max_parallel

    def take(self, tool: str, *, slot: bool = True) -> None:
        self.gates[tool].take()
        if slot:
            self.running += 1
            self.peak = max(self.peak, self.running + self.lent)

    def release(self, tool: str, *, slot: bool = True) -> None:
        self.gates[tool].release()
        if slot:
            self.running -= 1

    def lend(self) -> None:
        """A call starts on its caller's lent slot."""
        self.lent += 1
        self.peak = max(self.peak, self.running + self.lent)

    def unlend(self) -> None:
        self.lent -= 1
