from __future__ import annotations

import io
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

import pytest

from code_evolver.history import link, writer
from code_evolver.llm import base as llm_base

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """No test reads or writes the user's state or picks up their config by accident."""
    monkeypatch.setenv("EVOLVE_HOME", str(tmp_path_factory.mktemp("evolve_home")))
    monkeypatch.delenv("CODE_EVOLVER_CONFIG", raising=False)
    yield
    link.close_all()  # a history writer lives as long as its process: here, its test


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
    monkeypatch.setattr(link, "launch_writer", WriterThread)


class WriterThread:
    """The history writer on a thread, over pipes, for unit tests (which start no process):
    the same framing, messages, rows and answers as the writer process."""

    def __init__(self, path: Path) -> None:
        into, self._source = os.pipe()[::-1]
        self._answers, back = os.pipe()[::-1]
        self.stdin: IO[bytes] | None = os.fdopen(into, "wb", buffering=0)
        self.stdout: IO[bytes] | None = os.fdopen(back, "rb")
        self.stderr: IO[bytes] | None = io.BytesIO()
        self._thread = threading.Thread(target=self._serve, args=(path,), daemon=True)
        self._thread.start()

    def _serve(self, path: Path) -> None:
        try:
            writer.serve(path, self._source, self._answers)
        finally:
            os.close(self._source)
            os.close(self._answers)

    def wait(self, timeout: float | None = None) -> int:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired("history writer", timeout or 0)
        return 0


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def template_config(tmp_path: Path) -> str:
    """A config whose one tool, ``template``, gives its input back (no process, no model)."""
    path = tmp_path / "config.yaml"
    path.write_text("tools:\n  template: {kind: template, description: Its input.}\n")
    return str(path)
