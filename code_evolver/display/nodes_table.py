"""``evolve nodes``: the registry as a table, fittest first."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from code_evolver.display.safe import shown
from code_evolver.display.style import clip
from code_evolver.evolve.node_store import StoredNode


def nodes_table(nodes: Sequence[StoredNode]) -> RenderableType:
    if not nodes:
        return Text(
            "No nodes yet: `evolve nodes add` stores your own, and steps that no tool fits "
            "will store the ones written for them.",
            style="dim",
        )
    title = f"{len(nodes)} node{'s' * (len(nodes) != 1)}"
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("node", style="bold cyan", no_wrap=True)
    table.add_column("version", justify="right")
    table.add_column("fitness", justify="right")
    table.add_column("runs", justify="right")
    table.add_column("median", justify="right")
    table.add_column("by")
    table.add_column("description")
    for node in sorted(nodes, key=lambda n: (-n.fitness, n.name)):
        runtime = node.median_runtime_s
        table.add_row(
            node.name,
            f"v{node.version}",
            f"{node.fitness:.0%}",
            f"{node.runs} ({node.failures} failed)" if node.runs else "0",
            f"{runtime:.3f}s" if runtime is not None else "-",
            shown(str(node.meta.get("model", "?"))),
            shown(clip(node.description, 60)),
        )
    return table
