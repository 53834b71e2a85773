"""Presenting outcomes: results and summary, plan trees, warnings, exit codes."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from rich.console import Console

from code_evolver.display.results import results_view, summary_line
from code_evolver.display.safe import shown
from code_evolver.display.style import seconds
from code_evolver.planner.planner import PlanOutcome
from code_evolver.result import RunResult, RunStatus
from code_evolver.tools.base import Tool

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


def results(
    out: Console,
    err: Console,
    result: RunResult,
    *,
    markdown: Collection[str] = (),
    full: bool = False,
    planned: str | None = None,
) -> None:
    """Outputs (those of the ``markdown`` tools rendered as Markdown), then the summary."""
    out.print(results_view(result, markdown=markdown, full=full))
    out.print(summary_line(result, planned), soft_wrap=True)
    if result.status is RunStatus.INTERRUPTED:
        err.print("[magenta]interrupted:[/] finished steps are shown above")


def planner_warnings(outcome: PlanOutcome) -> list[str]:
    """The planner's own warnings (why the model's plan was not used), not the plan's."""
    return [w for w in outcome.warnings if w not in outcome.organized.warnings]


def markdown_tools(registry: Mapping[str, Tool]) -> frozenset[str]:
    """The tools whose outputs are a model's answers, shown as Markdown."""
    return frozenset(name for name, tool in registry.items() if tool.kind == "llm")


def planned_in(outcome: PlanOutcome, model: str) -> str:
    """Planning in the summary line, e.g. ``planned in 4.1s by the rules``."""
    who = {
        "rules": "the rules",
        "cache": "the cache",
        "clauses": f"the rules with {model}",
        "fallback": "the fallback",
    }.get(outcome.source, model)
    return f"planned in {seconds(outcome.seconds)} by {who}"


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
