"""The benchmarks keep working (their figures are read by people, not asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.integration
@pytest.mark.timeout(330)  # the subprocess's own bound (300 s) must be the one that applies
@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("scheduler.py", ("Part A: parallelism", "Part B: scale", "skewed", "random")),
        ("planner.py", ("scripted   first step", "Rules planner:")),
        ("runtime.py", ("call_tools_parallel", "brokered")),
        ("embedded.py", ("threads 1", "+2 busy", "no collapse")),
        ("sandbox.py", ("Part A: spawning", "wide-50", "layered-120", "floor:")),
    ],
)
def test_benchmark_quick_run_prints_its_figures(script: str, expected: tuple[str, ...]) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for figure in expected:
        assert figure in proc.stdout
