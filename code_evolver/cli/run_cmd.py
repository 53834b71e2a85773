"""``evolve run PLAN.json``: run a plan file (the library is imported when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from code_evolver.cli import options, piped, runs_cmd

if TYPE_CHECKING:
    from code_evolver.result import RunResult


@click.command("run")
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@options.these(
    "config", *options.MODEL, *options.EXECUTION, "no_reuse", "reuse", "input", "full", "svg",
    "json"
)  # fmt: skip
def run_command(plan_file: Path) -> None:
    """Run PLAN_FILE (plan JSON) and print each step's output and a summary.

    A plan whose steps read {input} runs on the text piped to it (or --input FILE).

    Exit status: 0 all steps succeeded, 1 some failed, 2 bad plan or config, 3 LLM backend
    unavailable, 130 interrupted.
    """
    from code_evolver.cli import show, terminal
    from code_evolver.cli.present import run_shown
    from code_evolver.organizer import organize
    from code_evolver.plan import load_plan
    from code_evolver.session import Session, require_input

    opts = options.current()
    session = Session(opts.config(), reuse_steps=opts.reuse)
    runs_cmd.check_svg_wanted(opts, session.history is not None)
    organized = organize(load_plan(plan_file), session.registry)
    input_text = piped.read_input(opts.input_path) if organized.reads_input else None
    require_input(organized, input_text)
    if not opts.as_json:
        show.warnings(terminal.stderr_console(), organized.warnings)

    async def main() -> RunResult:
        async with session:
            return await session.run(organized, input_text=input_text)

    result = run_shown(session, organized, main, as_json=opts.as_json, full=opts.full)
    if opts.svg_path is not None:
        runs_cmd.svg_of_run(result.run_id, opts.svg_path)
    click.get_current_context().exit(show.exit_code(result))
