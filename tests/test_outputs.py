"""A run holds outputs in memory up to execution.max_output_bytes_total; past it they are
written to files in the run's folder, read back by the steps that need them, and named by
--json and the results."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import cast

from rich.console import Console

import code_evolver
from code_evolver.display.results import results_view


def big(text: str) -> str:
    return text[0] * 600_000


def test_outputs_past_the_budget_go_to_files_and_still_flow(tmp_path: Path) -> None:
    result = code_evolver.run(
        {
            "steps": [
                {"step_id": "a", "tool": "big", "input": "a"},
                {"step_id": "b", "tool": "big", "input": "b", "depends_on": ["a"]},
                {"step_id": "c", "tool": "length", "input": "{b}", "depends_on": ["b"]},
            ]
        },
        tools={"big": big, "length": lambda text: str(len(text))},
        max_output_bytes_total=1_000_000,
    )
    assert result.ok
    a, b, c = (result.steps[k] for k in "abc")
    assert a.output == "a" * 600_000  # within the budget
    assert a.spilled is None
    assert b.output is None  # past it: in a file in the run's folder
    assert b.spilled is not None
    assert b.spilled.path.read_text() == "b" * 600_000
    assert b.spilled.path.is_relative_to(Path(os.environ["EVOLVE_HOME"]) / "runs")
    assert c.output == "600000"  # the next step read it back whole
    assert result.outputs["b"] == "b" * 600_000
    doc = json.loads(result.dumps())
    assert doc["steps"]["b"]["output"] is None
    assert doc["steps"]["b"]["output_file"] == str(b.spilled.path)
    assert doc["steps"]["b"]["output_bytes"] == 600_000
    console = Console(file=io.StringIO(), width=400, color_system=None)
    console.print(results_view(result))
    shown = cast(io.StringIO, console.file).getvalue()
    assert f"the whole output (600,000 bytes) is in {b.spilled.path}" in shown


def test_json_outputs_spill_as_json() -> None:
    result = code_evolver.run(
        {
            "steps": [
                {"step_id": "a", "tool": "table", "input": "x"},
                {"step_id": "b", "tool": "key", "input": "{a.rows.2}", "depends_on": ["a"]},
            ]
        },
        tools={
            "table": lambda text: {"rows": [f"row {i} " + "x" * 100 for i in range(20_000)]},
            "key": lambda text: text[:5],
        },
        max_output_bytes_total=1024,
    )
    assert result.ok
    assert result.steps["a"].spilled is not None
    assert result.steps["a"].spilled.path.suffix == ".json"
    assert result.steps["b"].output == "row 2"
