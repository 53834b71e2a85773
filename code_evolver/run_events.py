"""What a run tells its listeners: the executor says what happened to a step, this module
turns it into the event (with the run's id and clock) and emits it.

Nothing is built when nobody listens (a library run without listeners pays no event at all),
and the executor stays about scheduling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from code_evolver import events
from code_evolver.llm.pool import RESTART
from code_evolver.result import CallRecord, RunResult, StepStatus
from code_evolver.run_state import StepRun
from code_evolver.tools.base import Output, StageListener

if TYPE_CHECKING:
    from code_evolver.organizer import OrganizedPlan


class RunReporter:
    def __init__(self, bus: events.EventBus, run_id: str) -> None:
        self.bus = bus
        self.run_id = run_id
        self.t0 = time.perf_counter()
        """When the run started (perf_counter): event times count from it."""

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def _began(self, run: StepRun) -> float:
        return run.attempt_began - self.t0

    # ------------------------------------------------------------------ the run

    def run_started(self, organized: OrganizedPlan, run_input: str | None) -> None:
        if self.bus:
            self.bus.emit(
                events.RunStarted(
                    self.run_id,
                    organized.step_infos(),
                    organized.plan.model_dump_json(),
                    run_input=run_input,
                )
            )

    def plan_extended(self, organized: OrganizedPlan, added: list[str]) -> None:
        if self.bus and added:
            self.bus.emit(
                events.PlanExtended(
                    organized.step_infos(added),
                    organized.plan.model_dump_json(),
                    self.now(),
                    run_id=self.run_id,
                )
            )

    def run_finished(self, result: RunResult) -> None:
        if self.bus:
            self.bus.emit(
                events.RunFinished(
                    result.status.value,
                    result.run_s,
                    result.critical_path_s if result.parallel else None,
                    result.speedup,
                    result.peak_concurrency,
                    self.now(),
                    run_id=self.run_id,
                )
            )

    # ------------------------------------------------------------------ its steps

    def step_started(self, run: StepRun) -> None:
        if self.bus:
            step = run.step
            self.bus.emit(
                events.StepStarted(
                    step.step_id, step.tool, run.attempts, self.now(), run_id=self.run_id
                )
            )

    def step_succeeded(self, run: StepRun, output: Output) -> None:
        if self.bus:
            self.bus.emit(
                events.StepSucceeded(
                    run.step.step_id,
                    run.attempts,
                    run.busy_s,
                    output,
                    self.now(),
                    input=run.rendered_input,
                    run_id=self.run_id,
                    began=self._began(run),
                    params=run.rendered_params,
                    reused=run.reused,
                )
            )

    def step_retrying(self, run: StepRun, error: str, delay: float) -> None:
        if self.bus:
            self.bus.emit(
                events.StepRetrying(
                    run.step.step_id,
                    run.attempts,
                    error,
                    delay,
                    self.now(),
                    input=run.rendered_input,
                    run_id=self.run_id,
                    began=self._began(run),
                )
            )

    def step_failed(self, run: StepRun, error: str, status: StepStatus) -> None:
        if self.bus:
            self.bus.emit(
                events.StepFailed(
                    run.step.step_id,
                    run.attempts,
                    error,
                    status.value,
                    self.now(),
                    input=run.rendered_input,
                    run_id=self.run_id,
                    began=self._began(run),
                )
            )

    def step_skipped(self, run: StepRun, root: str) -> None:
        if self.bus:
            self.bus.emit(
                events.StepSkipped(run.step.step_id, root, self.now(), run_id=self.run_id)
            )

    def step_cancelled(self, run: StepRun, *, was_running: bool) -> None:
        if self.bus:
            self.bus.emit(
                events.StepCancelled(
                    run.step.step_id,
                    was_running,
                    self.now(),
                    run_id=self.run_id,
                    attempt=run.attempts if was_running else 0,
                    began=self._began(run) if was_running else None,
                )
            )

    # ------------------------------------------------------------------ inside an attempt

    def watcher(self, run: StepRun, organized: OrganizedPlan) -> Callable[[str], None] | None:
        """For a final step someone watches, its output as it is written (StepOutput)."""
        if not self.bus.watches_output or organized.graph.succ[run.step.step_id]:
            return None
        bus, step_id, attempt = self.bus, run.step.step_id, run.attempts
        return lambda text: bus.emit(
            events.StepOutput(
                step_id, attempt, text, self.now(), run_id=self.run_id, restart=text is RESTART
            )
        )

    def stages(self, run: StepRun) -> StageListener:
        """A tool's stages as calls under its step: in its record, and as events (the live
        view, the history)."""
        bus, step_id, attempt = self.bus, run.step.step_id, run.attempts

        def report(
            stage: str, name: str, status: str, seconds: float = 0.0, error: str | None = None
        ) -> None:
            call_id, now = f"{step_id}.{stage}", self.now()
            if status == "running":
                event: events.Event = events.CallStarted(
                    step_id, call_id, name, attempt, now, run_id=self.run_id, stage=True
                )
            else:
                event = events.CallFinished(
                    step_id,
                    call_id,
                    name,
                    status,
                    seconds,
                    error,
                    now,
                    run_id=self.run_id,
                    stage=True,
                    step_attempt=attempt,
                )
                run.stages.append(
                    CallRecord(call_id, name, StepStatus(status), 1, seconds, None, error, attempt)
                )
            if bus:
                bus.emit(event)

        return report
