"""Start-up benchmark: what a command costs before it does anything, against its floor.

A command should import only what it needs. Each command is timed beside the floor it is
measured against, in one run, rounds interleaved (so that a competing load hits both alike),
and the best time of each is compared:

- ``evolve --help`` against ``python -c "import click"`` (target <= 1.5x);
- ``evolve tools`` against ``python -c "import click, yaml, pydantic, rich.console"``
  (target <= 1.5x). ``import pydantic`` alone is lazy: the floor leaves out building any
  model, which validating config.yaml cannot. So the catalogue is cached
  (:mod:`code_evolver.catalogue`) and a listing after the first reads it: that is the
  listing timed against the target. Beside it, with no target, the first listing (the cache
  removed before each round), which validates the config.

Also listed: which heavy modules each command imported (they should be absent from --help).
Commands run with a temporary ``$EVOLVE_HOME``, so the user's state is neither read nor written.
Targets are printed as PASS/FAIL and never change the exit code.

    python bench/startup.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from verdicts import verdict

REPO = Path(__file__).resolve().parent.parent
CONFIG = str(REPO / "config.yaml")
TARGET = 1.5
HEAVY = ("networkx", "httpx", "asyncio", "xllamacpp", "pydantic_core", "rich")
EVOLVE = [sys.executable, "-c", "from code_evolver.cli import main; main()"]
HOME = Path(tempfile.mkdtemp(prefix="evolve-startup-"))
ENV = {**os.environ, "EVOLVE_HOME": str(HOME)}
TOOLS_FLOOR = "import click, yaml, pydantic, rich.console"


def forget_catalogue() -> None:
    shutil.rmtree(HOME / "cache", ignore_errors=True)


def nothing() -> None:
    pass


@dataclass(frozen=True)
class Pair:
    """A command timed beside its floor (``python -c FLOOR``)."""

    name: str
    args: list[str]
    floor: str
    prepare: Callable[[], None] = nothing
    """What to do before each round."""
    targeted: bool = True
    """Whether the 1.5x target applies (the first listing is printed beside, for honesty)."""


TOOLS = ["tools", "--config", CONFIG]
PAIRS = (
    Pair("evolve --help", ["--help"], "import click"),
    Pair("evolve tools", TOOLS, TOOLS_FLOOR),
    Pair("  first time", TOOLS, TOOLS_FLOOR, forget_catalogue, targeted=False),
)


def best_of(command: list[str], times: list[float]) -> None:
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True, cwd=REPO, env=ENV)
    times.append(time.perf_counter() - started)


def imported(command: list[str]) -> list[str]:
    """The heavy top-level modules a command has loaded by the time it exits."""
    probe = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: print(json.dumps(sorted({{m.split('.')[0] for m in "
        f"sys.modules}} & set({list(HEAVY)!r}))), file=sys.stderr))\n"
        "sys.argv = ['evolve', *sys.argv[1:]]\n"
        "from code_evolver.cli import main\nmain()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *command[3:]],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env=ENV,
    )
    return list(json.loads(proc.stderr.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 15")
    rounds = 3 if parser.parse_args().quick else 15
    print(f"Start-up: best of {rounds} interleaved rounds, {sys.executable}")
    try:
        for pair in PAIRS:
            command, floor = [*EVOLVE, *pair.args], [sys.executable, "-c", pair.floor]
            mine: list[float] = []
            base: list[float] = []
            for _ in range(rounds):
                pair.prepare()
                best_of(command, mine)
                best_of(floor, base)
            ratio = min(mine) / min(base)
            said = f"target <= {TARGET}x  {verdict(ratio <= TARGET)}"
            print(
                f"  {pair.name:<14} {min(mine) * 1000:6.0f} ms   floor ({pair.floor}) "
                f"{min(base) * 1000:5.0f} ms   {ratio:.2f}x  "
                f"{said if pair.targeted else 'no target'}"
            )
            pair.prepare()
            heavy = imported(command)
            print(f"  {'':<14} heavy modules imported: {', '.join(heavy) or 'none'}")
    finally:
        shutil.rmtree(HOME, ignore_errors=True)


if __name__ == "__main__":
    main()
