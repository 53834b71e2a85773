from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from code_evolver.llm import base as llm_base

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """No test reads or writes the user's state or picks up their config by accident."""
    monkeypatch.setenv("EVOLVE_HOME", str(tmp_path_factory.mktemp("evolve_home")))
    monkeypatch.delenv("CODE_EVOLVER_CONFIG", raising=False)
    return


@pytest.fixture(autouse=True)
def _no_real_models(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests use ScriptedBackend; only `integration` tests may call a real model."""
    if request.node.get_closest_marker("integration") is None:
        monkeypatch.setattr(llm_base, "ALLOW_MODEL_REQUESTS", False)


@pytest.fixture
def repo() -> Path:
    return REPO
