"""What history gives back: plain records of a stored run, for listing, showing, drawing
and resuming. Times of steps are seconds since the run started, so a run's steps share
one axis whatever clock the machine had."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepRecord:
    """One attempt of one step, or (``call_id`` set) one call a step's script made."""

    step_id: str
    attempt: int
    """The step's attempt (for a call: the attempt of the step it ran under)."""
    tool: str
    status: str
    """A StepStatus value: succeeded, failed, timed_out, skipped, cancelled, running."""
    started_s: float | None
    """Seconds from the run's start; None for a step that never started (skipped)."""
    finished_s: float | None
    wave: int | None = None
    parallel_group: str | None = None
    call_id: str | None = None
    """Set for a nested call: the step it ran under is ``step_id``."""
    parent_call: str | None = None
    """For a call made by a node that was itself called: that call's id."""
    input: str | None = None
    output: Any = None
    output_file: str | None = None
    """Where an output too large to keep inline was spilled."""
    error: str | None = None
    tool_digest: str | None = None

    @property
    def duration_s(self) -> float:
        if self.started_s is None or self.finished_s is None:
            return 0.0
        return max(0.0, self.finished_s - self.started_s)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    request: str
    status: str
    """A RunStatus value, or ``planning`` / ``running`` for a run that has not ended (or
    whose process died)."""
    started_at: str
    """ISO 8601, UTC."""
    finished_at: str | None = None
    wall_s: float | None = None
    critical_path_s: float | None = None
    speedup: float | None = None
    peak_concurrency: int | None = None
    planner_source: str | None = None
    backend: str | None = None
    model: str | None = None
    config_digest: str | None = None
    plan: dict[str, Any] | None = None
    """The plan as JSON data (``Plan.to_data``): steps with depends_on, tool, input."""
    run_input: str | None = None
    """The text piped to the run (its steps' ``{input}``), kept so that resume can feed it."""
    steps: tuple[StepRecord, ...] = field(default=())
    """Step attempts and nested calls, in the order they started."""

    @property
    def model_name(self) -> str | None:
        """The model by its one name, ``backend:model``, as every line and document says it."""
        if self.model and self.backend:
            return f"{self.backend}:{self.model}"
        return self.model

    def latest(self) -> dict[str, StepRecord]:
        """Each step's last attempt (calls left out), by step id."""
        found: dict[str, StepRecord] = {}
        for record in self.steps:
            if record.call_id is None:
                mine = found.get(record.step_id)
                if mine is None or record.attempt >= mine.attempt:
                    found[record.step_id] = record
        return found
