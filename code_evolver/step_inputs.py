"""What a step is given: its input and params, with the references to earlier outputs (and
to the run's ``{input}``) filled in. Rendering happens when an attempt starts, so a retry
sees the same text, and a reference that cannot be filled is that step's RenderError."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from code_evolver.errors import RenderError
from code_evolver.outputs import Spilled
from code_evolver.plan import RUN_INPUT
from code_evolver.run_state import StepRun
from code_evolver.templating import MissingKey, Ref, lookup_path, render_value, to_text


def rendered(
    run: StepRun, runs: Mapping[str, StepRun], run_input: str | None
) -> tuple[str, dict[str, Any]]:
    """The step's input and params (the tool's defaults under the step's own)."""
    step = run.step
    resolve = resolver(step.step_id, runs, run_input)
    params: dict[str, Any] = dict(run.tool.default_params)
    if step.params:
        params.update(render_value(step.params, resolve))
    if run.tool.kind == "generated" and not params.get("task"):
        params["task"] = step.description  # what the node to write must do
    return run.template.render(resolve), params


def resolver(
    step_id: str, runs: Mapping[str, StepRun], run_input: str | None
) -> Callable[[Ref], str]:
    def resolve(ref: Ref) -> str:
        if ref.name == RUN_INPUT:
            if run_input is None:
                raise RenderError(f"step {step_id!r} reads {ref}, but the run has no input")
            value: Any = run_input
        else:
            value = runs[ref.name].output
        if isinstance(value, Spilled):
            value = value.load()
        if not ref.path:
            return to_text(value)
        try:
            return to_text(lookup_path(value, ref.path))
        except MissingKey as exc:
            raise RenderError(f"step {step_id!r} reads {ref}: {exc}") from None

    return resolve
