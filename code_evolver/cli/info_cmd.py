"""``evolve tools`` and ``evolve doctor``."""

from __future__ import annotations

import click

from code_evolver.cli import options


@click.command("tools")
@options.these("config", "json")
def tools_command() -> None:
    """List the tools that plan steps can use, from config.yaml."""
    from code_evolver.cli import terminal
    from code_evolver.display.safe import shown
    from code_evolver.display.tools_table import tools_table
    from code_evolver.launch.launcher import Launcher
    from code_evolver.tools.process import ProcessTool
    from code_evolver.tools.registry import ToolRegistry

    opts = options.current()
    config = opts.config()
    registry = ToolRegistry.from_config(config)
    launcher = Launcher(config.execution)
    if opts.as_json:
        terminal.emit_json(
            {
                name: {
                    "kind": tool.kind,
                    "description": tool.description,
                    "max_concurrency": tool.max_concurrency,
                    "timeout_s": tool.timeout_s,
                    "required_params": sorted(tool.required_params),
                    "default_params": dict(tool.default_params),
                    "sandbox": (
                        tool.isolation(launcher) if isinstance(tool, ProcessTool) else None
                    ),
                }
                for name, tool in sorted(registry.items())
            }
        )
        return
    console = terminal.stdout_console()
    console.print(tools_table(registry, launcher))
    files = " + ".join(str(path) for path in config.sources) or "built-in settings"
    console.print(f"[dim]from {shown(files)} (evolve config: which file set what)[/]")


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
        for check in report.checks:
            if check.ok:
                mark, detail = "[green]✓[/]", shown(check.detail)
            elif not check.needed:  # another backend's: not a failure
                backend = report.choice.backend
                mark = "[dim]–[/]"
                detail = f"[dim]not needed ({backend} is used): {shown(check.detail)}[/]"
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
