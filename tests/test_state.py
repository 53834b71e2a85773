"""State under EVOLVE_HOME (the plan cache): helpful when it can be written, never a failure.

A home that is a regular file, read-only, full or out of inodes warns once and the run goes on
without the state; steps already started from a streamed plan keep their results.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import pytest
from click.testing import CliRunner

from code_evolver import home
from code_evolver.cli import main_group
from code_evolver.config import load_config
from code_evolver.llm import service
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.plan import Plan
from code_evolver.planner.cache import PlanCache
from code_evolver.result import RunStatus
from code_evolver.session import Answer, Session

REPO = Path(__file__).resolve().parent.parent
REQUEST = "do something the rules do not know about"
PLAN = json.dumps(
    {
        "steps": [
            {
                "step_id": "step1",
                "description": "a",
                "tool": "combine",
                "input": "one",
                "depends_on": [],
            },
            {
                "step_id": "step2",
                "description": "b",
                "tool": "combine",
                "input": "{step1} two",
                "depends_on": ["step1"],
            },
        ]
    }
)


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(home, "_warned", set())


def ask_streamed(request: str = REQUEST) -> Answer:
    backend = ScriptedBackend([PLAN], chunk_size=16)
    session = Session(load_config(REPO / "config.yaml"), backend=backend)

    async def main() -> Answer:
        async with session:
            return await session.ask(request)

    return asyncio.run(main())


def state_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "code_evolver"]


@pytest.mark.parametrize("broken", ["a regular file", "a folder under a file"])
def test_a_home_that_is_not_a_folder_warns_once_and_the_run_goes_on(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    broken: str,
) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("not a folder")
    target = blocker if broken == "a regular file" else blocker / "deeper"
    monkeypatch.setenv("EVOLVE_HOME", str(target))
    with caplog.at_level(logging.WARNING, logger="code_evolver"):
        first = ask_streamed()
        second = ask_streamed()
    for answer in (first, second):
        assert answer.result.status is RunStatus.SUCCEEDED
        assert answer.result.outputs == {"step1": "one", "step2": "one two"}
    cache, history = sorted(state_warnings(caplog))  # each piece of state warns once
    assert cache.startswith(f"cannot write the plan cache at {target}")
    assert history.startswith(f"cannot write the run history at {target}")
    for warning in (cache, history):
        assert "going on without it" in warning
        assert "EVOLVE_HOME" in warning


def test_a_cache_that_fills_up_keeps_the_streamed_steps(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def disk_full(*args: Any, **kwargs: Any) -> NoReturn:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", disk_full)
    started: list[str] = []
    backend = ScriptedBackend([PLAN], chunk_size=16)
    session = Session(load_config(REPO / "config.yaml"), backend=backend)
    session.bus.subscribe(lambda e: started.append(type(e).__name__))

    async def main() -> Answer:
        async with session:
            return await session.ask(REQUEST)

    with caplog.at_level(logging.WARNING, logger="code_evolver"):
        answer = asyncio.run(main())
    assert answer.result.status is RunStatus.SUCCEEDED
    assert started.count("RunStarted") == 1  # the streamed run was kept, not restarted
    (warning,) = state_warnings(caplog)
    assert "No space left on device" in warning


def test_a_cache_write_that_fails_switches_the_cache_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = PlanCache(tmp_path / "plans")
    (tmp_path / "plans").mkdir()

    def read_only(**_: Any) -> NoReturn:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)

    cache.put("key", Plan.from_json(PLAN))
    assert cache.directory is None
    assert cache.get("key") is None
    cache.put("key", Plan.from_json(PLAN))  # off: nothing tried, nothing raised


def test_no_home_at_all_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("EVOLVE_HOME")

    def no_home() -> NoReturn:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with caplog.at_level(logging.WARNING, logger="code_evolver"):
        assert home.state_dir("cache", what="plan cache") is None
    assert "Could not determine home directory" in state_warnings(caplog)[0]


def test_the_cli_prints_the_warning_once_and_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = ScriptedBackend([PLAN], chunk_size=16)
    monkeypatch.setattr(service, "create_backend", lambda name, settings: scripted)
    monkeypatch.setattr(service, "choose_backend", _embedded_choice)
    (tmp_path / "home").write_text("a file")
    monkeypatch.setenv("EVOLVE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(
        main_group, [REQUEST, "--planner", "llm", "--config", str(REPO / "config.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert "one two" in result.stdout
    assert result.stderr.count("warning: cannot write the plan cache") == 1


async def _embedded_choice(settings: Any) -> service.Choice:
    return service.Choice("embedded", ["test"])


def test_a_home_that_is_a_file_is_named_by_runs_and_doctor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from code_evolver.doctor import _home_check

    (tmp_path / "home").write_text("a file")
    monkeypatch.setenv("EVOLVE_HOME", str(tmp_path / "home"))
    listed = CliRunner().invoke(main_group, ["runs"])
    assert listed.exit_code == 2
    assert f"$EVOLVE_HOME ({tmp_path / 'home'}) is a file, not a folder" in listed.stderr
    check = _home_check()
    assert not check.ok
    assert f"{tmp_path / 'home'} is a file, not a folder" in check.detail
    monkeypatch.setenv("EVOLVE_HOME", str(tmp_path / "home" / "below"))  # the file is above
    assert f"({tmp_path / 'home'} is a file, not a folder)" in _home_check().detail
