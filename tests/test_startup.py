"""Start-up: `evolve --help` loads only the command line, not the library behind it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOT_FOR_HELP = ("networkx", "httpx", "asyncio", "xllamacpp", "pydantic_core", "yaml", "rich")


def modules_after(*argv: str) -> set[str]:
    """The top-level modules loaded by the time ``evolve ARGV`` returns."""
    probe = (
        "import json, sys\n"
        "from code_evolver.cli import cli\n"
        f"cli({list(argv)!r})\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.mark.integration  # starts a Python process: start-up cannot be seen from inside this one
def test_help_imports_none_of_the_library() -> None:
    loaded = modules_after("--help")
    assert not loaded & set(NOT_FOR_HELP), sorted(loaded & set(NOT_FOR_HELP))


@pytest.mark.integration
def test_the_package_imports_its_api_on_first_use() -> None:
    probe = (
        "import sys, code_evolver\n"
        "assert 'code_evolver.api' not in sys.modules\n"
        "import code_evolver.plan\n"
        "print(code_evolver.plan.__module__, code_evolver.Plan.__name__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert proc.stdout.split() == ["code_evolver.api", "Plan"]  # the function, not the module
