"""The benchmarks keep working (their figures are read by people, not asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_scheduler_benchmark_quick_run_prints_its_tables() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scheduler.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for heading in ("Part A: parallelism", "Part B: scale", "skewed", "random"):
        assert heading in proc.stdout


@pytest.mark.integration
def test_planner_benchmark_quick_run_prints_its_figures() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "planner.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "scripted   first step" in proc.stdout
    assert "Rules planner:" in proc.stdout


@pytest.mark.integration
def test_runtime_benchmark_quick_run_prints_its_figures() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "runtime.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "call_tools_parallel" in proc.stdout
    assert "brokered" in proc.stdout
