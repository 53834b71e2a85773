"""Start-up: `evolve --help` loads only the command line, not the library behind it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

REPO = Path(__file__).resolve().parent.parent
NOT_FOR_HELP = ("networkx", "httpx", "asyncio", "xllamacpp", "pydantic_core", "yaml", "rich")


def modules_after(*argv: str, env: dict[str, str] | None = None) -> set[str]:
    """The top-level modules loaded by the time ``evolve ARGV`` returns."""
    probe = (
        "import json, sys\n"
        "from code_evolver.cli import cli\n"
        f"cli({list(argv)!r})\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO, env=env
    )
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.mark.integration  # starts a Python process: start-up cannot be seen from inside this one
def test_help_imports_none_of_the_library() -> None:
    loaded = modules_after("--help")
    assert not loaded & set(NOT_FOR_HELP), sorted(loaded & set(NOT_FOR_HELP))


@pytest.mark.integration
def test_a_second_tool_listing_validates_nothing(tmp_path: Path) -> None:
    """The first `evolve tools` validates the config; the second reads its cached catalogue."""
    env = {**os.environ, "EVOLVE_HOME": str(tmp_path)}
    first = modules_after("tools", "--config", str(REPO / "config.yaml"), env=env)
    assert "pydantic_core" in first
    again = modules_after("tools", "--config", str(REPO / "config.yaml"), env=env)
    assert not again & {"pydantic_core", "asyncio", "networkx", "httpx"}, sorted(again)


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


def test_the_command_list_says_what_each_command_says_of_itself() -> None:
    from code_evolver.cli.app import COMMANDS, main_group

    ctx = click.Context(main_group)
    for name, (_, _, line) in COMMANDS.items():
        command = main_group.get_command(ctx, name)
        assert command is not None
        assert (command.help or "").splitlines()[0] == line or name == "ask"


@pytest.mark.integration
def test_help_imports_no_command() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from code_evolver.cli import cli; cli(['--help']); "
            "print(sorted(m for m in sys.modules if m.startswith('code_evolver.cli.')))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout.splitlines()[-1]
    assert "ask_cmd" not in loaded
    assert "info_cmd" not in loaded
