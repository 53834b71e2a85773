"""The mutable bookkeeping of one run: the state of each step.

Only the executor touches these, and only from the event loop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from code_evolver.errors import StepError, StepTimeout, ToolFailed
from code_evolver.outputs import Spilled
from code_evolver.plan import Step
from code_evolver.result import CallRecord, StepResult, StepStatus
from code_evolver.templating import Template
from code_evolver.tools.base import Output, Tool, ToolCall

if TYPE_CHECKING:
    from code_evolver.calls import CallChannel

T = TypeVar("T")
NOT_OK = (StepStatus.FAILED, StepStatus.TIMED_OUT, StepStatus.SKIPPED, StepStatus.CANCELLED)


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
    output: Output | Spilled | None = None
    """The output, or where it went when the run's output budget was spent."""
    error: str | None = None
    rendered_input: str | None = None
    """The last attempt's input, its references filled in."""
    rendered_params: dict[str, Any] | None = None
    reused: bool = False
    """Its output came from an earlier run (``--reuse``)."""
    carried_over: bool = False
    """Kept as it was from an earlier run of this plan (a resume, a request planned again)."""
    started_wall: float | None = None
    finished_wall: float | None = None
    busy_s: float = 0.0
    attempt_began: float = 0.0
    task: asyncio.Task[None] | None = None
    retry_timer: asyncio.TimerHandle | None = None
    channel: CallChannel | None = None
    """The current attempt's channel for its script's tool calls."""
    dependents: list[StepRun] = field(default_factory=list)
    stages: list[CallRecord] = field(default_factory=list)
    """Stages its tool reported (the endpoint of an LLM call, a generate attempt)."""

    def __repr__(self) -> str:
        # The generated repr would recurse through every dependent.
        return f"<step {self.step.step_id} {self.status.value} attempt {self.attempts}>"

    def carry_over(self, earlier: StepResult) -> None:
        """A step that succeeded in an earlier run of the same step: keep its result."""
        self.output = earlier.spilled or earlier.output
        self.rendered_input = earlier.input
        self.attempts = earlier.attempts
        self.busy_s = earlier.duration_s
        self.started_wall = earlier.started_at.timestamp() if earlier.started_at else None
        self.status = StepStatus.SUCCEEDED
        self.finished_wall = earlier.finished_at.timestamp() if earlier.finished_at else None
        self.carried_over = True

    def record(self, calls: tuple[CallRecord, ...], isolation: str | None) -> StepResult:
        """What the run's result says of this step."""
        output, spilled = self.output, None
        if isinstance(output, Spilled):
            output, spilled = None, output
        return StepResult(
            step_id=self.step.step_id,
            tool=self.step.tool,
            status=self.status,
            attempts=self.attempts,
            started_at=utc(self.started_wall),
            finished_at=utc(self.finished_wall),
            duration_s=self.busy_s,
            output=output,
            input=self.rendered_input,
            reused=self.reused,
            carried_over=self.carried_over,
            error=None if self.status is StepStatus.SUCCEEDED else self.error,
            calls=calls,
            spilled=spilled,
            isolation=isolation,
        )


@dataclass(slots=True)
class PlanWait:
    """Time in which every step so far had ended and the plan was still being written: the
    run waited for the planner, not for steps (left out of its speedup and efficiency)."""

    seconds: float = 0.0
    since: float | None = None

    def note(self, idle: bool) -> None:
        """Whether the run is idle for the planner now; called whenever that may change."""
        if idle and self.since is None:
            self.since = time.perf_counter()
        elif not idle and self.since is not None:
            self.seconds += time.perf_counter() - self.since
            self.since = None


def first_set(*values: T | None) -> T:
    """The first value that is not None (step setting, then tool setting, then the default)."""
    for value in values:
        if value is not None:
            return value
    raise ValueError("no value given")


def utc(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else None


async def attempt(
    tool: Tool, call: ToolCall, timeout_s: float
) -> tuple[Output | None, StepError | None]:
    """Run one attempt of ``tool`` under ``timeout_s``: ``(output, None)`` or ``(None, error)``
    with the error as a StepError (a timeout, the tool's own, or anything else it raised).

    Shared by steps and by the calls their scripts make, so both classify failures alike.
    """
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            return await tool.run(call), None
    except TimeoutError:
        if deadline.expired():
            return None, StepTimeout(f"timed out after {timeout_s:g}s")
        return None, ToolFailed("TimeoutError raised by the tool")
    except StepError as exc:
        return None, exc
    except (Exception, SystemExit) as exc:  # a tool's SystemExit must not end the program
        return None, ToolFailed(f"{type(exc).__name__}: {exc}")
