"""The repository's config.yaml alone, for the benchmarks.

evolve stacks the runner's ``$EVOLVE_HOME/config.yaml`` on the packaged defaults; a benchmark
must measure the same settings on every machine, so it reads the repository's file only.
"""

from __future__ import annotations

from pathlib import Path

from code_evolver.config import Config, parse_config

REPO = Path(__file__).resolve().parent.parent


def repo_config() -> Config:
    path = REPO / "config.yaml"
    return parse_config(path.read_text(encoding="utf-8"), path=path)
