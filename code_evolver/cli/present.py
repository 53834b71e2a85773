"""Showing one request as it goes: its plan, a live view while it runs, then the results.

The one-shot command (``evolve "REQUEST"``) and the REPL show a request the same way, so the
sequence lives here, not in a click command: the plan's waves and how it was made (stderr),
progress while planning and running (stderr), then the outputs and the summary line (stdout),
or the one JSON document with ``--json``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from code_evolver.cli import show, terminal
from code_evolver.display.plan_tree import plan_tree
from code_evolver.organizer import OrganizedPlan
from code_evolver.planner.planner import PlanOutcome
from code_evolver.result import RunResult
from code_evolver.session import Answer, Session


@dataclass
class RequestPresenter:
    session: Session
    err: Console
    out: Console
    as_json: bool = False
    full: bool = False

    def on_plan(self, outcome: PlanOutcome) -> None:
        """The plan as waves, and how it was made (nothing with --json: stdout is data)."""
        if self.as_json:
            return
        self.err.print(plan_tree(outcome.organized, self.session.registry))
        self.err.print(f"[dim]{show.planner_line(outcome, self.session.llm.identity)}[/]")
        show.warnings(self.err, show.planner_warnings(outcome))

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Progress while the request is planned and run."""
        status = "planning…"  # the model is named once it is known (auto: after choosing)
        enabled = terminal.progress_wanted(self.as_json, self.err)
        with (
            terminal.quiet_stdout(self.as_json),
            terminal.progress(self.session.bus, self.err, enabled=enabled, status=status),
        ):
            yield

    def answer(self, answer: Answer) -> int:
        """The outputs and the summary (or the JSON document); returns the exit code."""
        if self.as_json:
            terminal.emit_json(answer.to_json())
        else:
            planned = show.planned_in(answer.outcome, self.session.llm.identity)
            markdown = show.markdown_tools(self.session.registry)
            show.results(
                self.out,
                self.err,
                answer.result,
                markdown=markdown,
                full=self.full,
                planned=planned,
            )
        return show.exit_code(answer.result)


def run_shown(
    session: Session,
    organized: OrganizedPlan,
    main: Callable[[], Awaitable[RunResult]],
    *,
    as_json: bool,
    full: bool,
    extra: Mapping[str, Any] | None = None,
) -> RunResult:
    """``main`` (a run of ``organized``) with progress on stderr, then its outputs and the
    summary, or the JSON document (with ``extra`` keys). ``evolve run``, ``evolve resume``
    and ``evolve nodes run`` show a plan's run this way."""
    err = terminal.stderr_console()
    enabled = terminal.progress_wanted(as_json, err)
    with (
        terminal.quiet_stdout(as_json),
        terminal.progress(session.bus, err, organized, enabled=enabled),
    ):
        result = terminal.run_async(main, session.interrupt)
    if as_json:  # the model by its one name, as a request's document has it
        document = result.to_json() | {"model": session.llm.known_identity}
        terminal.emit_json(document | dict(extra or {}))
    else:
        markdown = show.markdown_tools(session.registry)
        show.results(terminal.stdout_console(), err, result, markdown=markdown, full=full)
    return result
