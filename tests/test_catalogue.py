"""The tool catalogue of `evolve tools` and its cache: a second listing is the same as the
first without validating the config, and anything the catalogue is made of (a config layer,
the options, an environment variable the config names, a stored node, evolve's own code)
makes it again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from code_evolver import catalogue
from code_evolver import home as home_module
from code_evolver.cli import main_group
from code_evolver.evolve.node_store import NodeStore
from code_evolver.home import evolve_home

NODE = "from node_runtime import run_node\n\ndef main(text):\n    return text\n\nrun_node(main)\n"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main_group, list(args), catch_exceptions=False)


def listed(config: Path, *more: str) -> dict[str, catalogue.Row]:
    result = invoke("tools", "--config", str(config), "--json", *more)
    assert result.exit_code == 0, result.output
    rows: dict[str, catalogue.Row] = json.loads(result.stdout)
    return rows


def project(tmp_path: Path, tools: str) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"tools:\n{tools}")
    return config


def cache_file() -> Path:
    return evolve_home() / "cache" / catalogue.FILE_NAME


def test_a_second_listing_comes_from_the_cache_and_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = project(tmp_path, "  shout: {kind: template, description: loud}\n")
    first, table = listed(config), invoke("tools", "--config", str(config)).stdout
    assert "shout" in first
    assert cache_file().is_file()

    def no_config(*args: object) -> None:
        raise AssertionError("the config was validated again")

    monkeypatch.setattr("code_evolver.config.load_config", no_config)
    assert listed(config) == first
    assert invoke("tools", "--config", str(config)).stdout == table


def test_an_edited_config_layer_is_listed_anew(tmp_path: Path) -> None:
    config = project(tmp_path, "  shout: {kind: template, description: loud}\n")
    assert "whisper" not in listed(config)
    home_config = evolve_home() / "config.yaml"
    home_config.parent.mkdir(parents=True, exist_ok=True)
    home_config.write_text("tools:\n  whisper: {kind: template, description: soft}\n")
    assert {"shout", "whisper"} <= set(listed(config))
    config.write_text("tools:\n  shout: null\n")
    assert "shout" not in listed(config)


def test_the_options_are_part_of_the_key(tmp_path: Path) -> None:
    config = project(tmp_path, "  shout: {kind: template, description: loud}\n")
    assert catalogue.key(config, "Options(backend='ollama')") != catalogue.key(
        config, "Options(backend=None)"
    )


def test_a_file_a_tool_names_is_read_again_when_it_changes(tmp_path: Path) -> None:
    prompt = tmp_path / "ask.txt"
    prompt.write_text("Answer: {input}")
    config = project(tmp_path, "  ask: {kind: llm, prompt: ask.txt}\n")
    assert listed(config)["ask"]["required_params"] == []
    prompt.write_text("Answer in a {params.style} style: {input}")
    assert listed(config)["ask"]["required_params"] == ["style"]
    prompt.unlink()
    gone = invoke("tools", "--config", str(config))
    assert gone.exit_code == 2
    assert "ask.txt" in gone.stderr


def test_a_broken_config_is_reported_every_time(tmp_path: Path) -> None:
    config = project(tmp_path, "  t: {kind: command, command: [echo], timeout_s: -1}\n")
    for _ in range(2):
        result = invoke("tools", "--config", str(config))
        assert result.exit_code == 2
        assert "tools.t.timeout_s" in result.stderr
    assert not cache_file().exists()


def test_a_stored_node_added_or_removed_is_listed_anew(tmp_path: Path) -> None:
    config = project(tmp_path, "  shout: {kind: template, description: loud}\n")
    assert "echo_back" not in listed(config)
    store = NodeStore()
    store.add("echo_back", NODE, "", {"description": "say it back"})
    assert listed(config)["echo_back"]["description"] == "say it back"
    store.remove("echo_back")
    assert "echo_back" not in listed(config)


def test_the_key_covers_the_environment_the_config_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = project(tmp_path, "  t: {kind: command, command: [echo], env: [MY_TOKEN]}\n")
    monkeypatch.delenv("MY_TOKEN", raising=False)
    before = catalogue.key(config, "")
    monkeypatch.setenv("UNRELATED_VARIABLE", "1")
    assert catalogue.key(config, "") == before
    monkeypatch.setenv("MY_TOKEN", "x")
    assert catalogue.key(config, "") != before
    monkeypatch.setenv("OLLAMA_HOST", "elsewhere:1")  # read whatever the files say
    assert catalogue.key(config, "") != before


def test_the_key_covers_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = project(tmp_path, "  shout: {kind: template, description: loud}\n")
    code = tmp_path / "code"
    (code / "sub").mkdir(parents=True)
    module = code / "sub" / "module.py"
    module.write_text("x = 1\n")
    monkeypatch.setattr(catalogue, "_CODE", code)
    before = catalogue.key(config, "")
    module.write_text("x = 12\n")
    assert catalogue.key(config, "") != before


def test_an_entry_that_cannot_be_read_is_a_miss(tmp_path: Path) -> None:
    config = project(tmp_path, "  shout: {kind: template, description: loud}\n")
    first = listed(config)
    cache_file().write_text("{not json")
    assert listed(config) == first
    assert json.loads(cache_file().read_text())["tools"] == first


def test_a_cache_that_cannot_be_written_warns_and_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = project(tmp_path, "  shout: {kind: template, description: loud}\n")
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    monkeypatch.setenv("EVOLVE_HOME", str(home))
    monkeypatch.setattr(home_module, "_warned", set())
    result = invoke("tools", "--config", str(config))
    assert result.exit_code == 0
    assert "shout" in result.stdout
    assert "warning: cannot write the tool catalogue cache" in result.stderr


def test_the_listing_fits_80_columns_and_is_a_table_when_wide(tmp_path: Path) -> None:
    config = project(tmp_path, "  shout: {kind: template, description: Shouts its input back}\n")
    narrow = invoke("tools", "--config", str(config)).stdout
    assert "    Shouts its input back" in [line.rstrip() for line in narrow.splitlines()]
    assert all(len(line) <= 80 for line in narrow.splitlines())
    wide = CliRunner(env={"COLUMNS": "140"}).invoke(main_group, ["tools", "--config", str(config)])
    header = next(line for line in wide.stdout.splitlines() if "description" in line)
    assert header.split()[:3] == ["tool", "kind", "sandbox"]
