"""``evolve tools``: the configured tools with their kind and limits."""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table

from code_evolver.display.safe import shown
from code_evolver.launch.launcher import Launcher
from code_evolver.tools.base import Tool
from code_evolver.tools.process import ProcessTool


def tools_table(tools: Mapping[str, Tool], launcher: Launcher | None = None) -> Table:
    """One row per tool; ``sandbox`` is how its processes run under ``launcher``'s settings."""
    table = Table(title=f"{len(tools)} tools", title_justify="left", expand=False)
    table.add_column("tool", style="bold cyan", no_wrap=True)
    table.add_column("kind")
    table.add_column("sandbox")
    table.add_column("limit", justify="right")
    table.add_column("timeout", justify="right")
    table.add_column("params")
    table.add_column("description")
    for name in sorted(tools):
        tool = tools[name]
        params = sorted(tool.required_params | set(tool.default_params))
        table.add_row(
            name,
            tool.kind,
            tool.isolation(launcher) if isinstance(tool, ProcessTool) else "-",
            str(tool.max_concurrency or "-"),
            f"{tool.timeout_s:g}s" if tool.timeout_s else "-",
            shown(", ".join(params)) or "-",
            shown(tool.description),
        )
    return table
