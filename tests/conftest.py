from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from code_evolver.llm import base as llm_base

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads or writes the user's state or picks up their config by accident."""
    monkeypatch.setenv("EVOLVE_HOME", str(tmp_path_factory.mktemp("evolve_home")))
    monkeypatch.delenv("CODE_EVOLVER_CONFIG", raising=False)


@pytest.fixture(autouse=True)
def _unit_tests_stay_in_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `integration` marker means exactly "starts processes, servers or models": a test
    without it that calls a real model, probes a server, starts a process or connects to a
    network address fails loudly, naming what it tried."""
    if request.node.get_closest_marker("integration") is not None:
        return
    monkeypatch.setattr(llm_base, "ALLOW_MODEL_REQUESTS", False)

    def refuse(what: str) -> Callable[..., NoReturn]:
        def refused(*args: object, **kwargs: object) -> NoReturn:
            raise RuntimeError(f"a unit test tried to {what}; mark it `integration`")

        return refused

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse("start a process"))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
        monkeypatch.setattr(os, name, refuse(f"start a process (os.{name})"))
    original_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family != socket.AF_UNIX:
            refuse(f"connect to {address!r}")()
        original_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect to a network address"))


@pytest.fixture
def repo() -> Path:
    return REPO
