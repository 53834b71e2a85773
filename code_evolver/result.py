"""What a run produced: per-step records and the summary figures.

Figures: ``wall_s`` (start to end), ``plan_wait_s`` (the part of it when every step so far had
ended and the streamed plan was still being written), ``run_s`` (wall without that wait: the
time the run itself took), ``sum_s`` (time steps spent running, all attempts), ``speedup`` (sum /
run: how much parallelism bought), ``critical_path_s`` (the longest dependency chain by measured
step times: no scheduler can beat it), ``efficiency`` (the best possible run time / run: 1.0
means the scheduler added no delay; the best is the critical path, or the step time spread
over the ``max_parallel`` slots when that is longer), and the peak number of steps running at
once. They are about the steps that ran here (not those carried over from an earlier run or
reused from one). Speedup, critical path and efficiency mean nothing when fewer than two
steps ran: the summary leaves them out and ``--json`` has them as null.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from code_evolver.organizer import OrganizedPlan
    from code_evolver.outputs import Spilled
    from code_evolver.tools.base import Output


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self not in (StepStatus.PENDING, StepStatus.RUNNING)


def skip_reason(root: str) -> str:
    """Why a step was skipped, in the same words everywhere: its result, the live view, the
    log lines and the run history."""
    return f"skipped: dependency {root!r} did not succeed"


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """At least one step did not succeed (failed, timed out, skipped or cancelled by fail-fast)."""
    INTERRUPTED = "interrupted"
    """Ctrl-C: finished steps are kept, the rest were cancelled."""
    CANCELLED = "cancelled"
    """The task running the plan was cancelled by its caller."""


@dataclass(frozen=True)
class CallRecord:
    """A tool call made by a step's script (``call_tool``), recorded under the step."""

    call_id: str
    tool: str
    status: StepStatus
    attempts: int
    duration_s: float
    output: Output | None
    error: str | None
    step_attempt: int = 1
    """Which attempt of the step made the call."""
    parent_call: str | None = None
    """The call whose node made this one, for calls nested in calls."""
    spilled: Spilled | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "step_attempt": self.step_attempt,
            "parent_call": self.parent_call,
            "tool": self.tool,
            "status": self.status.value,
            "attempts": self.attempts,
            "duration_s": round(self.duration_s, 6),
            "output": self.output,
            **_spill_fields(self.spilled),
            "error": self.error,
        }


@dataclass(frozen=True)
class StepResult:
    step_id: str
    tool: str
    status: StepStatus
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float = 0.0
    """Time spent running, summed over attempts (backoff waits excluded)."""
    output: Output | None = None
    error: str | None = None
    calls: tuple[CallRecord, ...] = ()
    """Tool calls the step's script made, in the order it made them."""
    spilled: Spilled | None = None
    """Where the output went instead of memory (``output`` is None then)."""
    isolation: str | None = None
    """How the step's processes ran (strict, contain, none); None for in-process tools."""
    input: str | None = None
    """What the step's last attempt was given: its input with the references filled in."""
    reused: bool = False
    """The output came from an earlier run with the same tool, input and params (--reuse)."""
    carried_over: bool = False
    """Kept as it was from an earlier run of this plan (a resume, or a request planned again):
    the step did not run here, so the run's figures leave it out."""

    @property
    def ok(self) -> bool:
        return self.status is StepStatus.SUCCEEDED

    def full_output(self) -> Output | None:
        """The output, read back from its file when it was spilled."""
        return self.spilled.load() if self.spilled is not None else self.output

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "output": self.output,
            **_spill_fields(self.spilled),
            "error": self.error,
            "attempts": self.attempts,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": round(self.duration_s, 6),
            "tool": self.tool,
            "isolation": self.isolation,
            "input": self.input,
            "reused": self.reused,
            "carried_over": self.carried_over,
            "calls": [call.to_json() for call in self.calls],
        }


@dataclass(frozen=True, repr=False)
class RunResult:
    run_id: str
    status: RunStatus
    organized: OrganizedPlan
    steps: dict[str, StepResult]
    wall_s: float
    peak_concurrency: int
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    plan_wait_s: float = 0.0
    max_parallel: int | None = None
    """The run's limit of steps at once: with it, the best possible run time is the step time
    spread over that many slots when that is longer than the critical path."""

    def __repr__(self) -> str:
        # Short on purpose: the full record of a 10,000-step run is megabytes of text.
        return (
            f"<RunResult {self.run_id} {self.status.value} steps={len(self.steps)} "
            f"wall={self.wall_s:.3f}s>"
        )

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.SUCCEEDED

    @property
    def outputs(self) -> dict[str, Output]:
        """Outputs of the steps that succeeded, by step id."""
        return {
            k: output
            for k, s in self.steps.items()
            if s.ok and (output := s.full_output()) is not None
        }

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.organized.warnings

    @cached_property
    def ran(self) -> dict[str, StepResult]:
        """The steps that ran in this run, not those carried over from an earlier one or
        reused from one (``--reuse``): the figures are about them."""
        return {k: s for k, s in self.steps.items() if not (s.carried_over or s.reused)}

    @cached_property
    def sum_s(self) -> float:
        return sum(s.duration_s for s in self.ran.values())

    @property
    def run_s(self) -> float:
        return max(0.0, self.wall_s - self.plan_wait_s)

    @property
    def parallel(self) -> bool:
        """Whether the plan had steps that could run side by side: else speedup and
        efficiency mean nothing."""
        return len(self.ran) > 1

    @property
    def speedup(self) -> float | None:
        if not self.parallel:
            return None
        return self.sum_s / self.run_s if self.run_s > 0 else 1.0

    @cached_property
    def _critical(self) -> tuple[float, list[str]]:
        ran = self.ran
        seconds, path = self.organized.critical_path(
            {k: s.duration_s if k in ran else 0.0 for k, s in self.steps.items()}
        )
        return seconds, [k for k in path if k in ran]

    @property
    def critical_path_s(self) -> float:
        return self._critical[0]

    @property
    def critical_path(self) -> list[str]:
        return self._critical[1]

    @property
    def efficiency(self) -> float | None:
        if not self.parallel:
            return None
        return min(1.0, self.best_s / self.run_s) if self.run_s > 0 else 1.0

    @property
    def best_s(self) -> float:
        """The shortest run the plan allows: its critical path, or its step time over the
        ``max_parallel`` slots, whichever is longer (no scheduler can beat either)."""
        spread = self.sum_s / self.max_parallel if self.max_parallel else 0.0
        return max(self.critical_path_s, spread)

    @property
    def unsandboxed(self) -> list[str]:
        """Steps whose processes ran with ``sandbox: none`` (tools the user trusts)."""
        return [k for k, s in self.ran.items() if s.isolation == "none" and s.attempts]

    @property
    def reused(self) -> int:
        """Steps whose outputs came from earlier runs (``--reuse``)."""
        return sum(1 for s in self.steps.values() if s.reused)

    def count(self, status: StepStatus) -> int:
        return sum(1 for s in self.steps.values() if s.status is status)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (DESIGN.md): run figures and every step's record."""
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "request": self.organized.plan.request,
            "wall_s": round(self.wall_s, 6),
            "run_s": round(self.run_s, 6),
            "plan_wait_s": round(self.plan_wait_s, 6),
            "sum_s": round(self.sum_s, 6),
            "speedup": _rounded(self.speedup, 3),
            "critical_path_s": round(self.critical_path_s, 6) if self.parallel else None,
            "critical_path": self.critical_path if self.parallel else None,
            "efficiency": _rounded(self.efficiency, 3),
            "max_parallel": self.max_parallel,
            "peak_concurrency": self.peak_concurrency,
            "started_at": _iso(self.started_at),
            "warnings": list(self.warnings),
            "unsandboxed": self.unsandboxed,
            "reused": self.reused,
            "steps": {k: s.to_json() for k, s in self.steps.items()},
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, indent=2)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _spill_fields(spilled: Spilled | None) -> dict[str, Any]:
    """``output_file`` and ``output_bytes`` for an output kept in a file, else nothing."""
    if spilled is None:
        return {}
    return {"output_file": str(spilled.path), "output_bytes": spilled.size}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment else None
