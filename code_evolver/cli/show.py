"""Presenting outcomes: results and summary, plan trees, warnings, exit codes."""

from __future__ import annotations

from rich.console import Console

from code_evolver.display import results_view, summary_line
from code_evolver.display.safe import shown
from code_evolver.display.style import seconds
from code_evolver.planner.planner import PlanOutcome
from code_evolver.result import RunResult, RunStatus

EXIT_OK, EXIT_FAILED_STEPS, EXIT_INTERRUPTED = 0, 1, 130


def exit_code(result: RunResult) -> int:
    if result.status is RunStatus.SUCCEEDED:
        return EXIT_OK
    if result.status in (RunStatus.INTERRUPTED, RunStatus.CANCELLED):
        return EXIT_INTERRUPTED
    return EXIT_FAILED_STEPS


def warnings(console: Console, lines: tuple[str, ...] | list[str]) -> None:
    for line in lines:
        console.print(f"[yellow]warning:[/] {shown(line)}")


def results(out: Console, err: Console, result: RunResult, *, markdown: bool = False) -> None:
    out.print(results_view(result, markdown=markdown))
    out.print(summary_line(result), soft_wrap=True)
    if result.status is RunStatus.INTERRUPTED:
        err.print("[magenta]interrupted:[/] finished steps are shown above")


def planner_warnings(outcome: PlanOutcome) -> list[str]:
    """The planner's own warnings (why the model's plan was not used), not the plan's."""
    return [w for w in outcome.warnings if w not in outcome.organized.warnings]


def planner_line(outcome: PlanOutcome, model: str) -> str:
    """How the plan was made, e.g. ``planned by the rules in 0.2ms``."""
    took = seconds(outcome.seconds)
    if outcome.source == "rules":
        return f"planned by the rules in {took}"
    if outcome.source == "cache":
        return f"plan reused from the cache ({took}); --no-cache to plan afresh"
    if outcome.source == "clauses":
        asked = outcome.llm_calls
        return f"planned by the rules in {took}, {asked} tool choice{'s' * (asked != 1)} by {model}"
    if outcome.source == "fallback":
        return f"planned without the model in {took} (see the warning)"
    line = f"planned by {model} in {took}"
    if outcome.llm_calls > 1:
        line += f" ({outcome.llm_calls - 1} repair{'s' * (outcome.llm_calls > 2)})"
    if outcome.first_step_s is not None:
        line += f"; first step started after {seconds(outcome.first_step_s)}"
    return line
