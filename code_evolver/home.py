"""Where Code Evolver keeps its state: ``$EVOLVE_HOME``, by default ``~/.code_evolver``."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "EVOLVE_HOME"


def evolve_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".code_evolver").expanduser()


def cache_dir(kind: str) -> Path:
    """``$EVOLVE_HOME/cache/<kind>``, created on demand."""
    path = evolve_home() / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path
