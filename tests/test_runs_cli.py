"""The history's commands: evolve runs (list, show, rm), --svg, evolve resume, --reuse's
summary; through click's runner, in process."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support import echo_model, write_plan

from code_evolver.cli import main_group
from code_evolver.history import store
from code_evolver.llm import service
from code_evolver.llm.fake import ScriptedBackend

REPO = Path(__file__).resolve().parent.parent
CONFIG = str(REPO / "config.yaml")


def evolve(*args: str) -> Any:
    return CliRunner().invoke(main_group, list(args))


def test_runs_lists_shows_and_removes(tmp_path: Path, template_config: str) -> None:
    assert "No runs yet" in evolve("runs").output
    ran = evolve("run", str(write_plan(tmp_path)), "--config", template_config, "--json")
    assert ran.exit_code == 0, ran.output
    run_id = json.loads(ran.output)["run_id"]
    listed = evolve("runs", "--json")
    assert [r["run_id"] for r in json.loads(listed.output)] == [run_id]
    shown = evolve("runs", "show", run_id[:5])
    assert shown.exit_code == 0, shown.output
    assert "hello again" in shown.output
    assert "shout twice" in shown.output
    detail = json.loads(evolve("runs", "show", run_id, "--json").output)
    assert detail["steps"][1]["input"] == "hello again"
    svg = tmp_path / "run.svg"
    drawn = evolve("runs", "show", run_id, "--gantt", "--svg", str(svg))
    assert drawn.exit_code == 0, drawn.output
    assert "critical path" in drawn.output
    assert ET.fromstring(svg.read_text()).tag.endswith("svg")
    assert evolve("runs", "rm", run_id).output.strip() == "removed 1 run"
    assert "No runs yet" in evolve("runs").output


def test_runs_rm_by_age_and_its_mistakes(tmp_path: Path, template_config: str) -> None:
    evolve("run", str(write_plan(tmp_path)), "--config", template_config)
    assert evolve("runs", "rm", "--older-than", "1d").output.strip() == "removed 0 runs"
    assert evolve("runs", "rm", "--older-than", "0s").output.strip() == "removed 1 run"
    wrong = evolve("runs", "rm", "--older-than", "soon")
    assert wrong.exit_code == 2
    assert "like 30d" in wrong.output
    assert evolve("runs", "rm").exit_code == 2
    unknown = evolve("runs", "show", "nope")
    assert unknown.exit_code == 2
    assert "no runs are stored yet" in unknown.output or "no run 'nope'" in unknown.output
    evolve("run", str(write_plan(tmp_path)), "--config", template_config)
    evolve("run", str(write_plan(tmp_path)), "--config", template_config)
    for given, said in (("nope", "no run 'nope' in the history"), ("", "names more than one run")):
        removed = evolve("runs", "rm", given, "--json")
        assert removed.exit_code == 2, removed.output
        assert said in removed.output
        assert removed.exception is None or isinstance(removed.exception, SystemExit)
    assert len(json.loads(evolve("runs", "--json").output)) == 2  # nothing went


def test_runs_lists_one_line_a_run_at_80_columns(tmp_path: Path, template_config: str) -> None:
    long = "please write a very long request about " + "many things " * 10
    evolve("run", str(write_plan(tmp_path, long)), "--config", template_config)
    evolve("run", str(write_plan(tmp_path)), "--config", template_config)
    lines = evolve("runs").output.splitlines()
    assert len(lines) == 3 + 2  # title, header, rule, one line a run
    assert evolve("runs", "--status", "failed").output.strip() == "No run ended failed."
    assert all(len(line) <= 80 for line in lines)
    assert "please write a" in lines[4]  # newest first
    assert lines[4].rstrip().endswith("…")
    narrow = CliRunner(env={"COLUMNS": "50"}).invoke(main_group, ["runs"]).output.splitlines()
    assert all(len(line) <= 50 for line in narrow)
    ids = [r["run_id"] for r in json.loads(evolve("runs", "--json").output)]
    assert narrow[3].split()[0] in ids  # whole: facts are left out, not cut
    assert "speedup" not in narrow[1]


def test_runs_rm_of_an_id_with_no_history_yet_says_so() -> None:
    removed = evolve("runs", "rm", "abc")
    assert removed.exit_code == 2
    assert "no run 'abc': no runs are stored yet" in removed.output


def test_svg_after_a_run_and_after_a_request(
    tmp_path: Path, template_config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svg = tmp_path / "run.svg"
    ran = evolve("run", str(write_plan(tmp_path)), "--config", template_config, "--svg", str(svg))
    assert ran.exit_code == 0, ran.output
    rects = ET.fromstring(svg.read_text()).iter("{http://www.w3.org/2000/svg}rect")
    assert sum((r.get("class") or "").startswith("bar") for r in rects) == 2  # one per step
    scripted = ScriptedBackend(echo_model)
    monkeypatch.setattr(service, "create_backend", lambda name, settings: scripted)

    async def embedded(settings: Any) -> service.Choice:
        return service.Choice("embedded", ["test"])

    monkeypatch.setattr(service, "choose_backend", embedded)
    asked = evolve("write a haiku about rain", "--config", CONFIG, "--svg", str(svg))
    assert asked.exit_code == 0, asked.output
    assert "haiku" in svg.read_text()  # the request is the picture's title
    newest_run = json.loads(evolve("runs", "--json").output)[0]
    shown_run = json.loads(evolve("runs", "show", newest_run["run_id"], "--json").output)
    assert newest_run["model"] == shown_run["model"] == "embedded:SmolLM2-135M-Instruct.Q4_1.gguf"


def test_svg_refuses_before_running_when_history_is_off(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("execution: {history: false}\ntools:\n  template: {kind: template}\n")
    refused = evolve("run", str(write_plan(tmp_path)), "--config", str(cfg), "--svg", "x.svg")
    assert refused.exit_code == 2
    assert "history, which is off" in refused.output
    assert not (tmp_path / store.FILE_NAME).exists()


def test_svg_into_a_folder_that_is_not_there_is_refused_before_running(
    tmp_path: Path, template_config: str
) -> None:
    target = tmp_path / "no" / "such" / "run.svg"
    refused = evolve(
        "run", str(write_plan(tmp_path)), "--config", template_config, "--svg", str(target)
    )
    assert refused.exit_code == 2
    assert f"--svg {target}: {target.parent} is not a folder evolve may write in" in refused.output
    assert "No runs yet" in evolve("runs").output  # nothing ran


def test_resume_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "healed"
    (tmp_path / "tools_mod.py").write_text(
        "from pathlib import Path\n"
        f"MARKER = Path({str(marker)!r})\n"
        "def flaky(text: str) -> str:\n"
        "    if not MARKER.exists():\n"
        "        raise RuntimeError('not yet')\n"
        "    return 'fixed ' + text\n"
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "tools:\n"
        "  template: {kind: template}\n"
        "  flaky: {kind: function, function: 'tools_mod:flaky'}\n"
    )
    the_plan = write_plan(tmp_path, "heal", [("a", "template", "hi"), ("b", "flaky", "{a}")])
    failed = evolve("run", str(the_plan), "--config", str(cfg), "--json")
    assert failed.exit_code == 1, failed.output
    run_id = json.loads(failed.output)["run_id"]
    marker.touch()
    resumed = evolve("resume", run_id, "--config", str(cfg), "--json")
    assert resumed.exit_code == 0, resumed.output
    document = json.loads(resumed.output)
    assert document["rerun"] == ["b"]
    assert document["steps"]["b"]["output"] == "fixed hi"
    # the figures are about what ran: b alone, so there are none to speak of
    assert document["steps"]["a"]["carried_over"] is True
    assert document["steps"]["b"]["carried_over"] is False
    assert document["speedup"] is None
    assert document["critical_path_s"] is None
    stored = json.loads(evolve("runs", "--json").output)
    again = evolve("resume", run_id, "--config", str(cfg), "--json")
    assert again.exit_code == 0, again.output
    document = json.loads(again.output)
    assert (document["run_id"], document["status"], document["rerun"]) == (run_id, "succeeded", [])
    assert [s["step_id"] for s in document["steps"]] == ["a", "b", "b"]  # b's two attempts
    said = evolve("resume", run_id[:6], "--config", str(cfg))
    assert f"nothing to resume: every step of run {run_id} succeeded" in said.output
    assert json.loads(evolve("runs", "--json").output) == stored  # its figures stay


def test_the_summary_counts_reused_steps(tmp_path: Path, template_config: str) -> None:
    plan_file = str(write_plan(tmp_path))
    evolve("run", plan_file, "--config", template_config)
    reused = evolve("run", plan_file, "--config", template_config, "--reuse")
    assert reused.exit_code == 0, reused.output
    assert "2 succeeded (2 reused from earlier runs)" in reused.output
    assert reused.output.count("reused from an earlier run") == 2  # each step's panel
    assert "speedup" not in reused.output  # nothing ran: no figures about running
