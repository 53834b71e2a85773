"""Layered config: packaged defaults, then $EVOLVE_HOME/config.yaml, then the project's config;
`evolve config` and its origins; paths relative to each tool's own file; lazy function imports."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from code_evolver.cli import main_group
from code_evolver.config import Config, load_config, parse_config
from code_evolver.errors import ConfigError
from code_evolver.resources import default_config_path
from code_evolver.tools.base import ToolCall
from code_evolver.tools.command import CommandTool
from code_evolver.tools.function import FunctionTool
from code_evolver.tools.llm import LlmTool
from code_evolver.tools.registry import ToolRegistry

PACKAGED = str(default_config_path().resolve())


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $EVOLVE_HOME, and a working directory without a config.yaml."""
    folder = tmp_path / "home"
    folder.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("EVOLVE_HOME", str(folder))
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    monkeypatch.chdir(work)
    return folder


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path.resolve()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main_group, list(args), catch_exceptions=False)


def problems_of(path: str | Path | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        ToolRegistry.from_config(load_config(path))
    return info.value.problems


# ------------------------------------------------------------------------------ the layers


def test_a_one_key_user_config_keeps_the_default_tools(home: Path) -> None:
    user = write(home / "config.yaml", "llm: {backend: ollama}\n")
    config = load_config()
    assert config.llm.backend == "ollama"
    assert config.llm.temperature == 0.7  # the packaged default, merged under it
    assert config.llm.ollama.model == "llama3.2"
    assert {"content_generator", "translator", "word_count", "delay"} <= set(config.tools)
    assert config.sources == (Path(PACKAGED), user)
    assert config.path == user
    listing = json.loads(invoke("tools", "--json").stdout)
    assert {"content_generator", "word_count"} <= set(listing)


def test_null_removes_a_tool(home: Path) -> None:
    write(home / "config.yaml", "tools:\n  translator: null\n  never_defined: null\n")
    config = load_config()
    assert "translator" not in config.tools
    assert "summarizer" in config.tools
    assert "translator" not in json.loads(invoke("tools", "--json").stdout)
    assert parse_config("tools: {x: null}").tools == {}


def test_null_that_removes_nothing_is_named_in_a_warning(
    home: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from code_evolver import home as state

    monkeypatch.setattr(state, "_warned", set())
    user = write(home / "config.yaml", "tools:\n  sort_line: null\n")
    with caplog.at_level("WARNING", logger="code_evolver"):
        config = load_config()
    assert "sort_lines" in config.tools  # the typo removed nothing
    assert (
        f"{user}: tools.sort_line: null removes nothing, as no layer below defines "
        "'sort_line' (did you mean 'sort_lines'?)"
    ) in caplog.text


def test_the_project_layer_wins_over_the_home_layer(home: Path, tmp_path: Path) -> None:
    user = write(
        home / "config.yaml",
        "execution: {retries: 3, timeout_s: 50}\nplanner: rules\nllm: {ollama: {model: qwen}}\n",
    )
    project = write(
        Path("config.yaml"),
        "execution: {retries: 1}\nplanner: {deadline_s: 5}\nllm: {ollama: {keep_alive: 1m}}\n",
    )
    config = load_config()
    assert (config.llm.ollama.model, config.llm.ollama.keep_alive) == ("qwen", "1m")
    assert config.origin("llm.ollama.model") == user
    assert config.origin("llm.ollama.keep_alive") == project
    assert config.origin("llm.ollama.context_tokens") == Path(PACKAGED)
    assert (config.execution.retries, config.execution.timeout_s) == (1, 50)
    assert (config.planner.mode, config.planner.deadline_s) == ("rules", 5)  # shorthand merged
    assert config.execution.scheduling == "eager"  # packaged
    assert config.origin("execution.retries") == project
    assert config.origin("execution.timeout_s") == user
    assert config.origin("planner.mode") == user
    assert config.origin("execution.scheduling") == Path(PACKAGED)
    assert config.sources == (Path(PACKAGED), user, project)
    explicit = write(tmp_path / "elsewhere" / "c.yaml", "execution: {retries: 7}\n")
    assert load_config(explicit).execution.retries == 7  # --config replaces ./config.yaml
    assert load_config(explicit).execution.timeout_s == 50


def test_a_redefined_tool_replaces_the_whole_spec(home: Path) -> None:
    user = write(
        home / "config.yaml",
        "tools:\n  word_count: {kind: template, description: mine}\n"
        "  shout: {kind: command, command: [tr, a-z, A-Z], timeout_s: 5}\n",
    )
    project = write(Path("config.yaml"), "tools:\n  shout: {kind: template}\n")
    config = load_config()
    assert config.tools["word_count"].model_dump(exclude_defaults=True) == {
        "kind": "template",
        "description": "mine",
    }
    assert config.tools["shout"].timeout_s is None  # nothing kept from the home layer's spec
    assert config.origin("tools.word_count") == user
    assert config.origin("tools.shout") == project
    assert "tools.shout.command" not in config.origins


def test_the_packaged_file_given_as_config_is_stacked_once(home: Path) -> None:
    config = load_config(default_config_path())
    assert config.sources == (Path(PACKAGED),)


def test_overrides_keep_the_origins(home: Path) -> None:
    write(home / "config.yaml", "llm: {backend: ollama}\n")
    config = load_config()
    changed = config.with_llm(backend="embedded").with_execution(max_parallel=2)
    assert changed.origins == config.origins
    assert changed.sources == config.sources
    assert Config().origins == {}
    assert Config().tool_dir("x") == Path.cwd()


# ------------------------------------------------------------------------------ relative paths


def test_a_tools_relative_paths_resolve_against_its_own_file(home: Path, tmp_path: Path) -> None:
    write(home / "prompts" / "greet.txt", "Greet {input}\n")
    write(home / "config.yaml", "tools:\n  greet: {kind: llm, prompt: prompts/greet.txt}\n")
    project_dir = tmp_path / "project"
    (project_dir / "sub").mkdir(parents=True)
    project = write(
        project_dir / "config.yaml",
        "tools:\n  lister: {kind: command, command: [ls], cwd: sub}\n",
    )
    config = load_config(project)
    registry = ToolRegistry.from_config(config)
    greet = registry["greet"]
    assert isinstance(greet, LlmTool)
    assert greet.template.source == "Greet {input}"
    lister = registry["lister"]
    assert isinstance(lister, CommandTool)
    assert lister.cwd == project_dir.resolve() / "sub"
    assert config.tool_dir("greet") == home.resolve()
    assert config.tool_dir("content_generator") == Path(PACKAGED).parent  # prompts/ beside it
    assert config.tool_dir("lister") == project_dir.resolve()


# ------------------------------------------------------------------------------ errors


def test_validation_errors_name_the_file_that_set_the_key(home: Path) -> None:
    user = write(home / "config.yaml", "execution: {retries: -1}\nllm: {temprature: 1}\n")
    project = write(Path("config.yaml"), "execution: {timeout_s: 0}\n")
    found = problems_of()
    assert f"{user}: execution.retries: Input should be greater than or equal to 0" in found
    assert any(p.startswith(f"{user}: llm.temprature: unknown setting") for p in found)
    assert f"{project}: execution.timeout_s: Input should be greater than 0" in found
    assert len(found) == 3


def test_tool_errors_name_the_file_that_defined_the_tool(home: Path) -> None:
    user = write(
        home / "config.yaml",
        "tools:\n  greet: {kind: llm, prompt: missing.txt}\n  'bad name': {kind: template}\n",
    )
    project = write(Path("config.yaml"), "tools:\n  x: {kind: command}\n")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert set(info.value.problems) == {
        f"{user}: tools.bad name: tool names may use only ASCII letters, digits, '_' and '-'",
        f"{project}: tools.x.command: required setting is missing",
    }
    write(Path("config.yaml"), "")
    write(home / "config.yaml", "tools:\n  greet: {kind: llm, prompt: missing.txt}\n")
    (problem,) = problems_of()
    assert problem.startswith(f"{user}: tools.greet.prompt: cannot read {home.resolve()}/missing")


def test_yaml_errors_and_missing_files_name_their_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = write(home / "config.yaml", "llm: {backend: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"^{user}:2:1: invalid YAML"):
        load_config()
    write(home / "config.yaml", "")
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml \(from --config\)"):
        load_config(tmp_path / "nope.yaml")
    monkeypatch.setenv("CODE_EVOLVER_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match=r"gone\.yaml \(from \$CODE_EVOLVER_CONFIG\)"):
        load_config()


# ------------------------------------------------------------------------------ evolve config


def layered(home: Path) -> tuple[Path, Path]:
    user = write(
        home / "config.yaml",
        "llm: {backend: ollama}\ntools:\n  translator: null\n  word_count: {kind: template}\n",
    )
    project = write(Path("config.yaml"), "execution: {retries: 1}\n")
    return user, project


def test_evolve_config_json_has_the_merged_config_and_origins(home: Path) -> None:
    user, project = layered(home)
    result = invoke("config", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    config, origins = doc["config"], doc["origins"]
    assert config["llm"]["backend"] == "ollama"
    assert origins["llm.backend"] == str(user)
    assert origins["llm.temperature"] == PACKAGED
    assert config["execution"]["retries"] == 1
    assert origins["execution.retries"] == str(project)
    assert "translator" not in config["tools"]
    assert config["tools"]["word_count"] == {"kind": "template"}
    assert origins["tools.word_count.kind"] == str(user)
    assert origins["tools.upper.command"] == PACKAGED
    assert [layer["path"] for layer in doc["layers"]] == [PACKAGED, str(user), str(project)]
    overridden = json.loads(invoke("config", "--json", "--backend", "embedded").stdout)
    assert overridden["config"]["llm"]["backend"] == "embedded"
    assert overridden["origins"]["llm.backend"] == "--backend"


def comment_of(text: str, line_start: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(line_start)]
    return line.partition("  # from ")[2]


def test_evolve_config_shows_where_each_value_came_from(home: Path) -> None:
    user, project = layered(home)
    result = invoke("config")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert comment_of(out, "  backend: ollama") == str(user)
    assert comment_of(out, "  temperature: 0.7") == PACKAGED
    assert comment_of(out, "  retries: 1") == str(project)
    assert comment_of(out, "  word_count:") == str(user)  # a tool: one comment for its spec
    assert comment_of(out, "  ollama:") == PACKAGED  # a section all from one file
    assert comment_of(out, "planner:") == PACKAGED
    assert "translator" not in out
    for role, path in [
        ("packaged defaults", PACKAGED),
        ("$EVOLVE_HOME", user),
        ("./config", project),
    ]:
        assert any(
            line.startswith(f"#   {role}") and str(path) in line for line in out.splitlines()
        )
    shown: Any = yaml.safe_load(out)  # the listing is YAML: the same settings as --json
    assert shown == json.loads(invoke("config", "--json").stdout)["config"]


def test_evolve_config_names_the_missing_layers(home: Path) -> None:
    out = invoke("config").stdout
    assert f"{home / 'config.yaml'} (none)" in out
    assert "project" in out
    assert "none (--config, $CODE_EVOLVER_CONFIG or ./config.yaml)" in out
    helped = invoke("config", "--help").stdout
    assert "$EVOLVE_HOME/config.yaml" in helped
    assert "--config PATH, else $CODE_EVOLVER_CONFIG, else ./config.yaml" in helped


def test_evolve_config_reports_a_bad_layer_with_exit_code_2(home: Path) -> None:
    user = write(home / "config.yaml", "execution: {retries: -1}\n")
    result = invoke("config")
    assert result.exit_code == 2
    assert f"{user}: execution.retries" in result.stderr


def test_evolve_config_text_survives_awkward_values(home: Path) -> None:
    write(
        home / "config.yaml",
        "tools:\n"
        "  odd:\n"
        "    kind: command\n"
        "    command: ['a, b', '[x]', \"line\\nbreak\", '# not a comment', 'yes']\n"
        '    description: "esc \\e[2J, colon: here"\n',
    )
    out = invoke("config").stdout
    assert "\x1b" not in out
    shown: Any = yaml.safe_load(out)
    assert shown["tools"]["odd"]["command"] == [
        "a, b",
        "[x]",
        "line\nbreak",
        "# not a comment",
        "yes",
    ]
    assert shown["tools"]["odd"]["description"] == "esc \x1b[2J, colon: here"


# ------------------------------------------------------------------------------ lazy imports


def test_function_modules_are_imported_by_the_step_that_uses_them(home: Path) -> None:
    module = f"raises_on_import_{uuid.uuid4().hex[:10]}"
    write(home / f"{module}.py", "raise RuntimeError('boom')\n")
    user = write(
        home / "config.yaml",
        f"tools:\n  boom: {{kind: function, function: '{module}:f', description: Blows up.}}\n",
    )
    listed = invoke("tools", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["boom"]["description"] == "Blows up."
    plan = write(
        Path("plan.json"),
        json.dumps(
            {
                "request": "r",
                "steps": [
                    {"step_id": "a", "tool": "boom", "input": "x"},
                    {"step_id": "b", "tool": "combine", "input": "fine"},
                ],
            }
        ),
    )
    assert invoke("plan", "--show", str(plan)).exit_code == 0
    assert module not in sys.modules  # neither listing nor planning ran its code
    result = invoke("run", str(plan), "--json")
    assert result.exit_code == 1
    steps = json.loads(result.stdout)["steps"]
    assert steps["b"]["output"] == "fine"
    assert steps["a"]["status"] == "failed"
    assert steps["a"]["error"] == (
        f"{user}: tools.boom.function: cannot import module '{module}': RuntimeError: boom"
    )
    assert steps["a"]["attempts"] == 1  # not retried: importing again cannot help


def test_a_function_tool_from_config_is_not_imported_until_it_runs(tmp_path: Path) -> None:
    module = f"lazy_tools_{uuid.uuid4().hex[:10]}"
    write(tmp_path / f"{module}.py", "def shout(text):\n    return text.upper()\n")
    config = parse_config(
        f"tools:\n  shout: {{kind: function, function: '{module}:shout'}}",
        path=tmp_path / "config.yaml",
    )
    tool = ToolRegistry.from_config(config)["shout"]
    assert isinstance(tool, FunctionTool)
    assert not tool.imported
    assert tool.reference == f"{module}:shout"
    assert asyncio.run(tool.run(ToolCall("hi"))) == "HI"
    assert tool.imported
