"""``evolve runs`` (list, show, rm) and ``evolve resume``: the run history."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from code_evolver.cli import options

if TYPE_CHECKING:
    import sqlite3

    from code_evolver.history.records import RunRecord
    from code_evolver.result import RunResult

STATUSES = ("succeeded", "failed", "interrupted", "cancelled", "running")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@click.group("runs", invoke_without_command=True)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--status", type=click.Choice(STATUSES), help="Only runs that ended so.")
@options.these("json")
@click.pass_context
def runs_command(ctx: click.Context, limit: int, status: str | None) -> None:
    """List stored runs, newest first (in $EVOLVE_HOME/history.db).

    \b
    evolve runs show ID [--gantt] [--svg FILE]   one run: plan, steps, outputs, calls
    evolve runs rm ID... | --older-than 30d      forget runs
    evolve resume ID                             run again what did not succeed
    An ID may be shortened to any unique start of it.
    """
    if ctx.invoked_subcommand is not None:
        return
    from code_evolver.cli import terminal
    from code_evolver.history import store

    with _history(create=False) as db:
        runs = store.list_runs(db, limit=limit, status=status) if db is not None else []
    if options.current().as_json:
        terminal.emit_json([_run_json(run) for run in runs])
        return
    from code_evolver.display.history_views import runs_table

    terminal.stdout_console().print(runs_table(runs, status=status))


@runs_command.command("show")
@click.argument("run_id")
@click.option("--gantt", is_flag=True, help="Draw the run on a time axis, one bar per step.")
@click.option(
    "--svg",
    "svg_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the timeline as a standalone SVG file.",
)
@options.these("full", "json")
def show_command(run_id: str, gantt: bool, svg_path: Path | None) -> None:
    """Show one run: its figures, each step's status, timing and output, nested calls."""
    from code_evolver.cli import terminal

    run = load_run(run_id)
    if svg_path is not None:
        write_svg(run, svg_path)
    opts = options.current()
    if opts.as_json:
        terminal.emit_json(_run_json(run))
        return
    out = terminal.stdout_console()
    if gantt:
        from code_evolver.display.timeline import gantt as draw

        out.print(draw(run, out.width))
    else:
        from code_evolver.display.history_views import run_detail

        out.print(run_detail(run, full=opts.full))
    if svg_path is not None:
        terminal.stderr_console().print(f"[dim]timeline written to {svg_path}[/]")


@runs_command.command("rm")
@click.argument("run_ids", nargs=-1)
@click.option("--older-than", "older_than", metavar="AGE", help="e.g. 30d, 12h, 90m, 2w.")
@options.these("json")
def rm_command(run_ids: tuple[str, ...], older_than: str | None) -> None:
    """Forget runs: by id, or all that started more than AGE ago."""
    from code_evolver.cli import terminal
    from code_evolver.errors import UserError
    from code_evolver.history import store

    if not run_ids and older_than is None:
        raise UserError("say which runs to remove: evolve runs rm ID... or --older-than 30d")
    age = _age(older_than) if older_than is not None else None
    with _history(create=False) as db:
        if db is None and run_ids:
            raise UserError(f"no run {run_ids[0]!r}: no runs are stored yet")
        try:
            removed = store.remove_runs(db, run_ids, older_than=age) if db is not None else 0
        except LookupError as exc:  # an id that names no run, or several
            raise UserError(str(exc)) from None
    if options.current().as_json:
        terminal.emit_json({"removed": removed})
    else:
        terminal.stdout_console().print(f"removed {removed} run{'s' * (removed != 1)}")


@click.command("resume")
@click.argument("run_id")
@options.these("config", *options.MODEL, *options.EXECUTION, "full", "json")
def resume_command(run_id: str) -> None:
    """Run again the steps of a stored run that did not succeed.

    Those are the failed, timed out, skipped and cancelled steps, and any a crash cut short;
    they are fed with the stored outputs of the steps that succeeded. A step whose tool
    changed since the run runs again too, with a note. The new attempts are recorded under
    the same run id.
    """
    from code_evolver.cli import show, terminal
    from code_evolver.cli.present import run_shown
    from code_evolver.history.resume import resumption
    from code_evolver.session import Session

    run = load_run(run_id)
    opts = options.current()
    session = Session(opts.config())
    plan = resumption(run, session.registry)
    err = terminal.stderr_console()
    if not plan.rerun:  # nothing ran: the stored run and its figures stay as they are
        if opts.as_json:  # the stored run, as `evolve runs show --json` gives it
            terminal.emit_json({**_run_json(run), "rerun": [], "notes": plan.notes})
        else:
            err.print(plan.headline(run.run_id))
        return
    if not opts.as_json:
        err.print(f"[dim]{plan.headline(run.run_id)}[/]")
        show.warnings(err, plan.notes)

    async def main() -> RunResult:
        async with session:
            return await session.resume(run, plan)

    extra = {"rerun": plan.rerun, "notes": plan.notes}
    result = run_shown(
        session, plan.organized, main, as_json=opts.as_json, full=opts.full, extra=extra
    )
    click.get_current_context().exit(show.exit_code(result))


def load_run(run_id: str) -> RunRecord:
    from code_evolver.errors import UserError
    from code_evolver.history import store

    with _history(create=False) as db:
        if db is None:
            raise UserError("no runs are stored yet; each run is kept once it starts")
        try:
            return store.find_run(db, run_id)
        except LookupError as exc:
            raise UserError(str(exc)) from None


def check_svg_wanted(opts: options.Options, history_on: bool) -> None:
    """``--svg`` draws from the run history: refuse before running when it is off."""
    from code_evolver.errors import UserError

    if opts.svg_path is None:
        return
    if not history_on:
        raise UserError(
            "--svg draws the run from its history, which is off (execution.history: false)"
        )
    import os

    folder = opts.svg_path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):  # said before the run, not after
        raise UserError(f"--svg {opts.svg_path}: {folder} is not a folder evolve may write in")


def svg_of_run(run_id: str, path: Path) -> None:
    """After a run (its session closed, so its records are committed): its timeline."""
    from code_evolver.cli import terminal

    write_svg(load_run(run_id), path)
    terminal.stderr_console().print(f"[dim]timeline written to {path}[/]")


def write_svg(run: RunRecord, path: Path) -> None:
    from code_evolver.display.timeline_svg import timeline_svg
    from code_evolver.errors import UserError

    try:
        path.write_text(timeline_svg(run), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the timeline to {path}: {exc.strerror or exc}") from None


@contextmanager
def _history(*, create: bool) -> Iterator[sqlite3.Connection | None]:
    """The history database (None when there is none yet); its errors become user errors."""
    from code_evolver.errors import UserError
    from code_evolver.history import store

    try:
        db = store.connect(create=create)
    except FileNotFoundError:
        _home_is_a_folder()
        yield None
        return
    except store.HistoryError as exc:
        raise UserError(str(exc)) from None
    try:
        yield db
    finally:
        db.close()


def _home_is_a_folder() -> None:
    """No history found: say so plainly, unless ``$EVOLVE_HOME`` cannot hold one at all."""
    from code_evolver.errors import UserError
    from code_evolver.home import HOME_ENV, evolve_home, file_in_the_way

    try:
        home = evolve_home()
    except RuntimeError:
        return
    if (blocker := file_in_the_way(home)) is not None:
        what = f"${HOME_ENV} ({home})" if blocker == home else f"{blocker}, above ${HOME_ENV},"
        raise UserError(
            f"{what} is a file, not a folder, so no run history can be kept there; point "
            f"${HOME_ENV} at a folder"
        )


def _age(text: str) -> timedelta:
    from code_evolver.errors import UserError

    match = _AGE.match(text)
    if match is None:
        raise UserError(f"--older-than {text!r}: give a number and a unit, like 30d, 12h or 90m")
    return timedelta(**{_UNITS[match[2]]: float(match[1])})


def _run_json(run: RunRecord) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(run) | {"model": run.model_name}  # one name, as a run's document has it
