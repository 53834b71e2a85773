from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """No test reads or writes the user's state or picks up their config by accident."""
    monkeypatch.setenv("EVOLVE_HOME", str(tmp_path_factory.mktemp("evolve_home")))
    monkeypatch.delenv("CODE_EVOLVER_CONFIG", raising=False)
    return


@pytest.fixture
def repo() -> Path:
    return REPO
