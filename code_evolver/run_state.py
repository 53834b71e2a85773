"""The mutable bookkeeping of one run: per-step state and concurrency gates.

Only the executor touches these, and only from the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from code_evolver.plan import Step
from code_evolver.result import StepStatus
from code_evolver.templating import Template
from code_evolver.tools.base import Output, Tool

T = TypeVar("T")
NOT_OK = (StepStatus.FAILED, StepStatus.TIMED_OUT, StepStatus.SKIPPED, StepStatus.CANCELLED)


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


@dataclass(slots=True, eq=False, repr=False)
class StepRun:
    """Mutable bookkeeping of one step during a run."""

    step: Step
    tool: Tool
    template: Template
    wave: int
    priority: tuple[int, int]
    waiting: int
    timeout_s: float
    max_attempts: int
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    output: Output | None = None
    error: str | None = None
    started_wall: float | None = None
    finished_wall: float | None = None
    busy_s: float = 0.0
    attempt_began: float = 0.0
    task: asyncio.Task[None] | None = None
    retry_timer: asyncio.TimerHandle | None = None
    dependents: list[StepRun] = field(default_factory=list)

    def __repr__(self) -> str:
        # The generated repr would recurse through every dependent.
        return f"<step {self.step.step_id} {self.status.value} attempt {self.attempts}>"


def first_set(*values: T | None) -> T:
    """The first value that is not None (step setting, then tool setting, then the default)."""
    for value in values:
        if value is not None:
            return value
    raise ValueError("no value given")


def utc(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else None
