"""``evolve tools`` and ``evolve doctor``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from code_evolver.cli import options
from code_evolver.errors import EvolverError

if TYPE_CHECKING:
    from code_evolver import catalogue


@click.command("tools")
@options.these("config", "json")
def tools_command() -> None:
    """List the tools that plan steps can use, from config.yaml."""
    from dataclasses import replace

    from code_evolver import catalogue
    from code_evolver.cli import terminal
    from code_evolver.display.safe import shown
    from code_evolver.display.tools_table import tools_table

    opts = options.current()
    try:  # the options that shape the config; --json only shapes the output
        key: str | None = catalogue.key(opts.config_path, repr(replace(opts, as_json=False)))
    except (OSError, EvolverError):
        key = None  # the slow way says what is wrong
    listing = catalogue.cached(key) if key else None
    if listing is None:
        listing = _catalogue(opts)
        if key:
            catalogue.save(key, listing)
    if opts.as_json:
        terminal.emit_json(listing.tools)
        return
    console = terminal.stdout_console()
    console.print(tools_table(listing.tools))
    files = " + ".join(listing.sources) or "built-in settings"
    console.print(f"[dim]from {shown(files)} (evolve config: which file set what)[/]")


def _catalogue(opts: options.Options) -> catalogue.Listing:
    """The catalogue made from the validated config (and the stored nodes)."""
    from code_evolver import catalogue
    from code_evolver.launch.launcher import Launcher
    from code_evolver.tools.registry import ToolRegistry

    config = opts.config()
    files = catalogue.named_files(config)
    read = catalogue.seen(files)  # before the tools read them: a later change is a miss
    registry = ToolRegistry.from_config(config)
    rows = catalogue.rows(registry, Launcher(config.execution))
    return catalogue.Listing(rows, [str(p) for p in config.sources], [str(f) for f in files], read)


@click.command("doctor")
@options.these("config", *options.MODEL, "json")
def doctor_command() -> None:
    """Check the setup: which LLM backend would be used, where its model is, what is missing.

    Exit status 0 when that backend can serve requests, 3 when it cannot.
    """
    import asyncio

    from rich.table import Table

    from code_evolver.cli import terminal
    from code_evolver.display.safe import shown
    from code_evolver.doctor import diagnose
    from code_evolver.errors import BackendUnavailable

    opts = options.current()
    report = asyncio.run(diagnose(opts.config()))
    if opts.as_json:
        terminal.emit_json(report.to_json())
    else:
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")  # a long path folds whole, never cut with "…"
        for check in report.checks:
            if not check.needed:  # another backend's: neither a failure nor a promise
                backend = report.choice.backend
                mark = "[dim]–[/]"
                detail = f"[dim]not needed ({backend} is used): {shown(check.detail)}[/]"
            elif check.ok:
                mark, detail = "[green]✓[/]", shown(check.detail)
            else:
                mark, detail = "[red]✗[/]", shown(check.detail)
                if check.fix:
                    detail += f"  [yellow]→ {shown(check.fix)}[/]"
            table.add_row(mark, f"[bold]{check.name}[/]", detail)
        console = terminal.stdout_console()
        console.print(table)
        verdict = "ready" if report.usable else "[red]not ready[/]"
        console.print(
            f"\nbackend: [bold]{report.choice.backend}[/] ({verdict}) · "
            + shown("; ".join(report.choice.reasons))
        )
    if not report.usable:
        click.get_current_context().exit(BackendUnavailable.exit_code)
