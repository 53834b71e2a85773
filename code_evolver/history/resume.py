"""Resume: a stored run again, re-running only what did not succeed.

A step whose last attempt succeeded keeps its stored output, which feeds the steps that run
again, exactly as a re-planned run keeps identical finished steps (the executor's ``reuse``).
Everything else runs: failed, timed out, skipped, cancelled, and steps still marked running
by a process that died. A step whose tool changed since the run (its definition digest
differs) runs again too, and so does everything downstream of it, since its input may now
differ; each such step gets a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from code_evolver.errors import PlanError
from code_evolver.history.records import RunRecord, StepRecord
from code_evolver.organizer import OrganizedPlan, organize
from code_evolver.plan import Plan
from code_evolver.result import StepResult, StepStatus
from code_evolver.tools.registry import ToolRegistry


@dataclass
class Resumption:
    organized: OrganizedPlan
    kept: dict[str, StepResult]
    """Steps that succeeded and keep their outputs, by step id."""
    rerun: list[str]
    """Steps that run again, in plan order."""
    attempts_before: dict[str, int] = field(default_factory=dict)
    """Attempts each step made before: the new ones are numbered after them."""
    notes: list[str] = field(default_factory=list)

    def headline(self, run_id: str) -> str:
        """What resuming does, in one line (the command line's and the chat's)."""
        if not self.rerun:
            return f"nothing to resume: every step of run {run_id} succeeded"
        count = len(self.rerun)
        return (
            f"resuming {run_id}: {count} step{'s' * (count != 1)} to run, "
            f"{len(self.kept)} kept from the run"
        )


def resumption(run: RunRecord, registry: ToolRegistry) -> Resumption:
    """What resuming ``run`` keeps and what it runs again."""
    if not run.plan:
        raise PlanError(f"run {run.run_id} has no stored plan; nothing to resume")
    organized = organize(Plan.from_data(run.plan, source=f"run {run.run_id}"), registry)
    latest = run.latest()
    changed = {
        step_id
        for step_id, record in latest.items()
        if record.status == StepStatus.SUCCEEDED
        and step_id in organized.steps
        and _tool_changed(record, organized.steps[step_id].tool, registry)
    }
    downstream = set(changed)
    for step_id in changed:
        downstream |= nx.descendants(organized.graph, step_id)
    notes = [
        f"{step_id}: tool {organized.steps[step_id].tool!r} changed since the run; running it "
        "again"
        + (" and the steps that read it" if nx.descendants(organized.graph, step_id) else "")
        for step_id in sorted(changed)
    ]
    kept: dict[str, StepResult] = {}
    rerun: list[str] = []
    for step in organized.plan.steps:
        record = latest.get(step.step_id)
        succeeded = record is not None and record.status == StepStatus.SUCCEEDED
        if record is not None and succeeded and step.step_id not in downstream:
            kept[step.step_id] = _kept(record)
        else:
            rerun.append(step.step_id)
    attempts = {step_id: record.attempt for step_id, record in latest.items()}
    return Resumption(organized, kept, rerun, attempts, notes)


def _tool_changed(record: StepRecord, tool: str, registry: ToolRegistry) -> bool:
    if record.tool_digest is None or tool not in registry:
        return False
    return registry.digest(tool) != record.tool_digest


def _kept(record: StepRecord) -> StepResult:
    return StepResult(
        step_id=record.step_id,
        tool=record.tool,
        status=StepStatus.SUCCEEDED,
        attempts=record.attempt,
        duration_s=record.duration_s,
        output=_output(record),
        input=record.input,
    )


def _output(record: StepRecord) -> Any:
    if record.output_file is None:
        return record.output
    try:
        return json.loads(Path(record.output_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanError(
            f"the stored output of {record.step_id} ({record.output_file}) cannot be read: "
            f"{exc}; `evolve runs rm` the run and run the plan afresh"
        ) from None
