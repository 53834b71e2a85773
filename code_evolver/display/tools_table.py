"""``evolve tools``: the configured tools with their kind and limits."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from rich import box
from rich.console import Console, ConsoleOptions, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from code_evolver.catalogue import Row
from code_evolver.display.safe import shown, terminal_safe

WIDE = 110
"""From this width on, one table row per tool; below it (80 columns when stdout is a file
or a pipe), a line of facts per tool with its description under it, so that the description
is never squeezed into a column a word wide."""


class ToolsTable:
    """One entry per tool of the catalogue (:func:`code_evolver.catalogue.rows`), laid out
    for the width it is drawn at."""

    def __init__(self, rows: Mapping[str, Row]) -> None:
        self.rows = rows

    def __rich_console__(
        self, console: Console, options: ConsoleOptions
    ) -> Iterator[RenderableType]:
        title = f"{len(self.rows)} tools"
        if options.max_width >= WIDE:
            yield self._table(title)
            return
        yield Text(title)
        for name in sorted(self.rows):
            yield self._facts(name, self.rows[name])
            yield Padding(Text(terminal_safe(self.rows[name]["description"])), (0, 0, 0, 4))

    def _table(self, title: str) -> Table:
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("tool", style="bold cyan", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        table.add_column("sandbox", no_wrap=True)
        table.add_column("limit", justify="right", no_wrap=True)
        table.add_column("timeout", justify="right", no_wrap=True)
        table.add_column("params")
        table.add_column("description", ratio=1, overflow="fold")  # a long word (a URL) folds
        for name in sorted(self.rows):
            row = self.rows[name]
            table.add_row(
                name,
                row["kind"],
                row["sandbox"] or "-",
                str(row["max_concurrency"] or "-"),
                _timeout(row) or "-",
                shown(", ".join(_params(row))) or "-",
                shown(row["description"]),
            )
        return table

    @staticmethod
    def _facts(name: str, row: Row) -> Text:
        facts = Text(name, style="bold cyan")
        facts.append(f"  {row['kind']}")
        if row["sandbox"]:
            facts.append(f" · sandbox {row['sandbox']}")
        if row["max_concurrency"]:
            facts.append(f" · at most {row['max_concurrency']} at once")
        if timeout := _timeout(row):
            facts.append(f" · timeout {timeout}")
        if params := _params(row):
            facts.append(f" · params {terminal_safe(', '.join(params))}")
        return facts


def tools_table(rows: Mapping[str, Row]) -> ToolsTable:
    return ToolsTable(rows)


def _params(row: Row) -> list[str]:
    return sorted(set(row["required_params"]) | set(row["default_params"]))


def _timeout(row: Row) -> str:
    return f"{row['timeout_s']:g}s" if row["timeout_s"] else ""
