"""The ``evolve`` command: a thin layer over the library API.

Commands parse options, call ``code_evolver.api`` and render with ``code_evolver.display``.
Errors we raise on purpose become one ``error:`` line per problem and an exit code (DESIGN.md):
0 success, 1 the run had failed steps, 2 user error, 3 backend unavailable, 130 interrupted.
Progress goes to stderr and results to stdout, so ``evolve run plan.json > out.txt`` still
shows progress; ``--json`` prints exactly one JSON document on stdout.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from code_evolver import __version__
from code_evolver.api import prepare, resolve_config
from code_evolver.display import (
    LineProgress,
    LiveView,
    plan_tree,
    results_view,
    summary_line,
    tools_table,
)
from code_evolver.errors import EvolverError, UserError
from code_evolver.executor import Executor
from code_evolver.organizer import describe
from code_evolver.plan import plan_json_schema
from code_evolver.result import RunResult, RunStatus
from code_evolver.tools.registry import ToolRegistry

EXIT_OK, EXIT_FAILED_STEPS, EXIT_INTERRUPTED = 0, 1, 130

F = TypeVar("F", bound=Callable[..., Any])


class EvolveGroup(click.Group):
    """Turns our errors into ``error:`` lines and exit codes, for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EvolverError as exc:
            as_json = bool(ctx.meta.get("evolve.json"))
            _report_error(exc, as_json=as_json)
            ctx.exit(exc.exit_code)


def _report_error(exc: EvolverError, *, as_json: bool) -> None:
    problems = exc.problems if isinstance(exc, UserError) else (str(exc),)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for problem in problems:
        err.print(f"[bold red]error:[/] {problem}", markup=True)
    if as_json:
        click.echo(json.dumps({"status": "error", "error": str(exc), "problems": list(problems)}))


def config_option(f: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="config.yaml to use (default: $CODE_EVOLVER_CONFIG, ./config.yaml, then the "
        "packaged one).",
    )(f)


def json_option(f: F) -> F:
    def remember(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        ctx.meta["evolve.json"] = value
        return value

    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        callback=remember,
        is_eager=True,
        help="Print one JSON document on stdout instead of the rich display.",
    )(f)


def execution_options(f: F) -> F:
    options = [
        click.option(
            "--max-parallel",
            type=click.IntRange(min=1),
            help="Most steps running at once (config: execution.max_parallel).",
        ),
        click.option(
            "--scheduling",
            type=click.Choice(["eager", "waves"]),
            help="eager: a step starts when its last dependency succeeds; waves: a barrier "
            "after each wave.",
        ),
        click.option(
            "--on-failure",
            type=click.Choice(["continue", "fail_fast"]),
            help="continue: skip the failed step's dependents, finish the rest; fail_fast: "
            "cancel everything.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.group(cls=EvolveGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="evolve")
def main_group() -> None:
    """Code Evolver: run a plan of steps, every independent step at the same time.

    \b
    evolve run PLAN.json         run a plan with a live view, then show results
    evolve plan --show PLAN.json show a plan's waves without running it
    evolve tools                 list the tools plans can use
    """


@main_group.command("run")
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@config_option
@execution_options
@json_option
def run_command(
    plan_file: Path,
    config_path: Path | None,
    max_parallel: int | None,
    scheduling: str | None,
    on_failure: str | None,
    as_json: bool,
) -> None:
    """Run PLAN_FILE (plan JSON) and print each step's output and a summary.

    Exit status: 0 all steps succeeded, 1 some failed, 2 bad plan or config, 130 interrupted.
    """
    config = resolve_config(
        config_path, max_parallel=max_parallel, scheduling=scheduling, on_failure=on_failure
    )
    organized, registry = prepare(plan_file, config)
    err = Console(stderr=True, highlight=False)
    out = Console(highlight=False)
    if not as_json:
        for warning in organized.warnings:
            err.print(f"[yellow]warning:[/] {warning}")
    executor = Executor(organized, registry, config.execution)
    if as_json:
        result = _run(executor)
    elif err.is_terminal:
        with LiveView(organized, err) as view:
            executor.bus.subscribe(view)
            result = _run(executor)
    else:
        executor.bus.subscribe(LineProgress(err))
        result = _run(executor)
    if as_json:
        click.echo(result.dumps())
    else:
        out.print(results_view(result))
        out.print(summary_line(result), soft_wrap=True)
        if result.status is RunStatus.INTERRUPTED:
            err.print("[magenta]interrupted:[/] finished steps are shown above")
    click.get_current_context().exit(_exit_code(result))


def _run(executor: Executor) -> RunResult:
    """Run on a fresh event loop; the first Ctrl-C stops the run gracefully (finished work is
    kept and shown), a second one during shutdown aborts."""

    async def main() -> RunResult:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, executor.interrupt)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals
            return await executor.run()
        try:
            return await executor.run()
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    return asyncio.run(main())


def _exit_code(result: RunResult) -> int:
    if result.status is RunStatus.SUCCEEDED:
        return EXIT_OK
    if result.status in (RunStatus.INTERRUPTED, RunStatus.CANCELLED):
        return EXIT_INTERRUPTED
    return EXIT_FAILED_STEPS


@main_group.command("plan")
@click.option(
    "--show",
    "show",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PLAN_FILE",
    help="Validate PLAN_FILE and show its waves as a tree, without running anything.",
)
@click.option("--schema", is_flag=True, help="Print the JSON schema of plan files.")
@config_option
@json_option
def plan_command(show: Path | None, schema: bool, config_path: Path | None, as_json: bool) -> None:
    """Show how a plan would run: its waves, dependencies and warnings.

    With --json, print the completed plan (auto-added dependencies included) and its waves.
    """
    if schema:
        names = ToolRegistry.from_config(resolve_config(config_path)) if config_path else None
        click.echo(json.dumps(plan_json_schema(names), indent=2))
        return
    if show is None:
        raise click.UsageError("give a plan file with --show PLAN_FILE (or --schema)")
    organized, registry = prepare(show, resolve_config(config_path))
    if as_json:
        click.echo(json.dumps(describe(organized), indent=2, ensure_ascii=False))
        return
    Console(highlight=False).print(plan_tree(organized, registry))


@main_group.command("tools")
@config_option
@json_option
def tools_command(config_path: Path | None, as_json: bool) -> None:
    """List the tools that plan steps can use, from config.yaml."""
    config = resolve_config(config_path)
    registry = ToolRegistry.from_config(config)
    if as_json:
        listing = {
            name: {
                "kind": tool.kind,
                "description": tool.description,
                "max_concurrency": tool.max_concurrency,
                "timeout_s": tool.timeout_s,
                "required_params": sorted(tool.required_params),
                "default_params": dict(tool.default_params),
            }
            for name, tool in sorted(registry.items())
        }
        click.echo(json.dumps(listing, indent=2))
        return
    console = Console(highlight=False)
    console.print(tools_table(registry))
    console.print(f"[dim]from {config.path or 'built-in settings'}[/]")


def cli(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code instead of exiting (tests call this)."""
    try:
        # Without standalone mode, click returns the code of ``ctx.exit(code)`` instead of exiting.
        code = main_group.main(
            args=list(argv) if argv is not None else None, prog_name="evolve", standalone_mode=False
        )
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else EXIT_OK


def main() -> None:
    """Console-script entry point: the only place that exits the process."""
    sys.exit(cli())
