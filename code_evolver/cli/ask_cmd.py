"""``evolve "REQUEST"`` (plan and run) and ``evolve plan`` (plan only).

The library is imported inside the commands, not here: ``evolve --help`` and the other
commands do not pay for what only these use (``tests/test_startup.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from code_evolver.cli import options, piped, runs_cmd

if TYPE_CHECKING:
    from code_evolver.planner.planner import PlanOutcome
    from code_evolver.session import Answer


class _RequestContext(click.Context):
    @property
    def command_path(self) -> str:
        """``evolve``, not ``evolve ask``: a request is typed without a command name, so its
        usage line and "Try ... --help" must not name one."""
        return self.parent.command_path if self.parent is not None else super().command_path


class _RequestCommand(click.Command):
    context_class = _RequestContext


@click.command("ask", cls=_RequestCommand, hidden=True)
@click.argument("request", nargs=-1, required=True)
@options.these(*options.REQUEST)
def ask_command(request: tuple[str, ...]) -> None:
    """Plan REQUEST, show the plan, run it with a live view, and print the results."""
    from code_evolver.cli import terminal
    from code_evolver.cli.present import RequestPresenter
    from code_evolver.session import Session

    opts = options.current()
    text, input_text = _request_and_input(request, opts)
    session = Session(opts.config(), reuse_steps=opts.reuse, force_evolve=opts.evolve)
    runs_cmd.check_svg_wanted(opts, session.history is not None)
    present = RequestPresenter(
        session,
        terminal.stderr_console(),
        terminal.stdout_console(),
        as_json=opts.as_json,
        full=opts.full,
    )

    async def main() -> Answer:
        async with session:
            return await session.ask(
                text, use_cache=not opts.no_cache, on_plan=present.on_plan, input_text=input_text
            )

    with present.running():
        answer = terminal.run_async(main, session.interrupt)
    code = present.answer(answer)
    if opts.svg_path is not None:
        runs_cmd.svg_of_run(answer.result.run_id, opts.svg_path)
    click.get_current_context().exit(code)


@click.command("plan")
@click.argument("request", nargs=-1)
@click.option(
    "--show",
    "plan_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PLAN_FILE",
    help="Validate PLAN_FILE and show its waves, without planning or running anything.",
)
@click.option("--schema", is_flag=True, help="Print the JSON schema of plan files.")
@options.these("config", *options.MODEL, *options.PLANNING, "input", "json")
def plan_command(request: tuple[str, ...], plan_file: Path | None, schema: bool) -> None:
    """Plan REQUEST (or check PLAN_FILE) and show its waves, without running anything.

    With --json, print the plan itself: save it and run it later with `evolve run`.
    """
    from code_evolver.cli import show, terminal
    from code_evolver.display.plan_tree import plan_tree
    from code_evolver.organizer import organize
    from code_evolver.plan import load_plan, plan_json_schema
    from code_evolver.session import Session

    opts = options.current()
    config = opts.config()
    if schema:
        tools = Session(config).registry if opts.config_path else None
        terminal.emit_json(plan_json_schema(tools))
        return
    if plan_file is None and not request:
        raise click.UsageError('give a request (evolve plan "...") or --show PLAN_FILE')
    text, input_text = _request_and_input(request, opts) if request else ("", None)
    session = Session(config)
    err = terminal.stderr_console()
    if plan_file is not None:
        organized = organize(load_plan(plan_file), session.registry)
        line = f"{plan_file}: valid"
        warnings = organized.warnings
    else:

        async def main() -> PlanOutcome:
            async with session:
                return await session.plan(
                    text, use_cache=not opts.no_cache, has_input=input_text is not None
                )

        status = "planning…"  # the model is named once it is known (auto: after choosing)
        with terminal.progress(
            session.bus, err, enabled=terminal.progress_wanted(opts.as_json, err), status=status
        ):
            outcome = terminal.run_async(main, session.interrupt)
        organized = outcome.organized
        line = show.planner_line(outcome, session.llm.identity)
        warnings = outcome.warnings
    if opts.as_json:  # stdout is the plan itself; how it was made goes to stderr
        err.print(f"[dim]{line}[/]")
        show.warnings(err, warnings)
        terminal.emit_json(json.loads(organized.plan.to_json()))
        return
    console = terminal.stdout_console()
    console.print(plan_tree(organized, session.registry))
    console.print(f"[dim]{line}[/]")
    show.warnings(err, [w for w in warnings if w not in organized.warnings])  # the tree has those


def _request_and_input(words: tuple[str, ...], opts: options.Options) -> tuple[str, str | None]:
    """The request, and the text it works on: piped, ``--input FILE``, or a last word ``-``
    (read stdin) as in ``evolve "summarize this" - < notes.txt``."""
    path = opts.input_path
    if len(words) > 1 and words[-1] == piped.STDIN:
        words, path = words[:-1], path or Path(piped.STDIN)
    return " ".join(words), piped.read_input(path)
