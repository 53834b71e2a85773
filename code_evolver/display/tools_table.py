"""``evolve tools``: the configured tools with their kind and limits."""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table

from code_evolver.catalogue import Row
from code_evolver.display.safe import shown


def tools_table(rows: Mapping[str, Row]) -> Table:
    """One row per tool of the catalogue (:func:`code_evolver.catalogue.rows`)."""
    table = Table(title=f"{len(rows)} tools", title_justify="left", expand=False)
    table.add_column("tool", style="bold cyan", no_wrap=True)
    table.add_column("kind")
    table.add_column("sandbox")
    table.add_column("limit", justify="right")
    table.add_column("timeout", justify="right")
    table.add_column("params")
    table.add_column("description")
    for name in sorted(rows):
        row = rows[name]
        params = sorted(set(row["required_params"]) | set(row["default_params"]))
        table.add_row(
            name,
            row["kind"],
            row["sandbox"] or "-",
            str(row["max_concurrency"] or "-"),
            f"{row['timeout_s']:g}s" if row["timeout_s"] else "-",
            shown(", ".join(params)) or "-",
            shown(row["description"]),
        )
    return table
