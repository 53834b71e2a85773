from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from code_evolver.config import Config, find_config, load_config, parse_config
from code_evolver.errors import ConfigError, ToolFailed
from code_evolver.resources import default_config_path
from code_evolver.tools.base import ToolCall
from code_evolver.tools.registry import ToolRegistry


def problems(text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_packaged_default_loads_and_builds(repo: Path) -> None:
    config = load_config(default_config_path())
    registry = ToolRegistry.from_config(config)
    assert {"combine", "word_count", "delay"} <= set(registry)
    assert config.execution.scheduling == "eager"
    assert default_config_path().samefile(repo / "config.yaml")


def test_empty_file_means_defaults() -> None:
    config = parse_config("")
    assert config.tools == {}
    assert config.execution.max_parallel == 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "tools:\n  x: {kind: shel, command: [ls]}",
            "tools.x.kind: unknown tool kind 'shel'; expected one of command, function, template",
        ),
        (
            "tools:\n  x: {kind: comand, command: [ls]}",
            "tools.x.kind: unknown tool kind 'comand' (did you mean 'command'?)",
        ),
        ("tools:\n  x: {command: [ls]}", "tools.x.kind: missing; every tool needs a kind"),
        ("tools:\n  x: {kind: command}", "tools.x.command: required setting is missing"),
        (
            "tools:\n  x: {kind: command, command: []}",
            "tools.x.command: name the program to run, and its arguments, like [wc, -w]",
        ),
        (
            "tools:\n  x: {kind: command, command: ls}",
            "tools.x.command: give the program and its arguments as a list, like [wc, -w]",
        ),
        (
            "tools:\n  x: {kind: function, function: nocolon}",
            "tools.x.function: give it as module:function, like tools_mod:shout",
        ),
        (
            "tools:\n  x: {kind: command, command: [ls], max_concurency: 2}",
            "tools.x.max_concurency: unknown setting (did you mean 'max_concurrency'?)",
        ),
        (
            "tools:\n  x: {kind: command, command: [ls], max_concurrency: 0}",
            "tools.x.max_concurrency: Input should be greater than or equal to 1",
        ),
        (
            "execution: {max_parallel: 0}",
            "execution.max_parallel: Input should be greater than or equal to 1",
        ),
        (
            "execution: {scheduling: lazy}",
            "execution.scheduling: Input should be 'eager' or 'waves'",
        ),
        (
            "execution: {max_paralel: 3}",
            "execution.max_paralel: unknown setting (did you mean 'max_parallel'?)",
        ),
        ("toolz: {}", "toolz: unknown setting (did you mean 'tools'?)"),
        (
            "tools:\n  'bad name': {kind: template}",
            "tools.bad name: tool names may use only ASCII letters",
        ),
        ("- a list", "the top level must be a mapping of settings"),
    ],
)
def test_errors_name_the_key_path(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("tools:\n  x: {kind: [unclosed\n")
    with pytest.raises(ConfigError, match=r"config\.yaml:3:1: invalid YAML"):
        load_config(path)


def test_every_problem_is_reported() -> None:
    found = problems("execution: {max_parallel: 0, retries: -1}\ntools:\n  a: {kind: nope}")
    assert len(found) == 3


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "explicit.yaml"
    from_env = tmp_path / "env.yaml"
    local_dir = tmp_path / "work"
    local_dir.mkdir()
    for path in (explicit, from_env, local_dir / "config.yaml"):
        path.write_text("")
    monkeypatch.chdir(local_dir)
    assert find_config() == (local_dir / "config.yaml").resolve()
    monkeypatch.setenv("CODE_EVOLVER_CONFIG", str(from_env))
    assert find_config() == from_env.resolve()
    assert find_config(explicit) == explicit.resolve()
    monkeypatch.delenv("CODE_EVOLVER_CONFIG")
    os.remove(local_dir / "config.yaml")
    assert find_config() == default_config_path()


def test_missing_explicit_or_env_config_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml \(from --config\)"):
        find_config(tmp_path / "nope.yaml")
    monkeypatch.setenv("CODE_EVOLVER_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match=r"\(from \$CODE_EVOLVER_CONFIG\)"):
        find_config()


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.yaml"
    path.parent.mkdir()
    path.write_text("tools: {}")
    assert load_config(path).base_dir == path.parent.resolve()
    assert Config().base_dir == Path.cwd()


def test_with_execution_overrides_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("execution: {max_parallel: 3}")
    config = load_config(path)
    changed = config.with_execution(max_parallel=5, scheduling=None)
    assert changed.execution.max_parallel == 5
    assert changed.execution.scheduling == "eager"
    assert changed.path == config.path
    with pytest.raises(ConfigError, match=r"execution\.on_failure: Input should be"):
        config.with_execution(on_failure="explode")


def test_registry_reports_bad_specs_with_the_file_and_key_path(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "tools:\n"
        "  a: {kind: function, function: 'no_such_module_xyz:f'}\n"
        "  c: {kind: command, command: [echo, '{oops}']}\n"
        "  d: {kind: node, script: nope.py}\n"
    )
    with pytest.raises(ConfigError) as info:
        ToolRegistry.from_config(load_config(path))
    found = info.value.problems
    assert any("tools.c.command[1]: unknown placeholder {oops}" in p for p in found)
    assert any("tools.d.script: no such file" in p for p in found)
    assert not any("tools.a" in p for p in found)  # imported when a step uses it
    assert all(p.startswith(f"{path.resolve()}: ") for p in found)


def test_function_import_errors_fail_the_step_with_the_file_and_key_path(tmp_path: Path) -> None:
    (tmp_path / "exits_on_import_xyz.py").write_text("raise SystemExit(7)\n")
    path = tmp_path / "config.yaml"
    path.write_text(
        "tools:\n"
        "  a: {kind: function, function: 'no_such_module_xyz:f'}\n"
        "  b: {kind: function, function: 'os:no_such_attr'}\n"
        "  t: {kind: function, function: 'exits_on_import_xyz:f'}\n"
    )
    registry = ToolRegistry.from_config(load_config(path))
    assert "exits_on_import_xyz" not in sys.modules
    where = f"{path.resolve()}: tools"
    for name, problem in [
        ("a", "a.function: cannot import module 'no_such_module_xyz': ModuleNotFoundError: No "),
        ("b", "b.function: module 'os' has no attribute 'no_such_attr'"),
        ("t", "t.function: cannot import module 'exits_on_import_xyz': it raised SystemExit(7)"),
    ]:
        for _ in range(2):  # every step that uses it fails the same way
            with pytest.raises(ToolFailed) as info:
                asyncio.run(registry[name].run(ToolCall("x")))
            assert str(info.value).startswith(f"{where}.{problem}")
            assert not info.value.retryable


def test_function_module_beside_the_config_is_importable(tmp_path: Path) -> None:
    (tmp_path / "my_local_tools.py").write_text("def shout(text):\n    return text.upper()\n")
    path = tmp_path / "config.yaml"
    path.write_text("tools:\n  shout: {kind: function, function: 'my_local_tools:shout'}\n")
    registry = ToolRegistry.from_config(load_config(path))
    assert registry["shout"].kind == "function"
    assert asyncio.run(registry["shout"].run(ToolCall("hi"))) == "HI"


def test_a_yaml_alias_bomb_is_refused_at_once() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    lines.append("tools: {x: {kind: template, params: {p: *i}}}")
    with pytest.raises(ConfigError, match="expands to more than 100,000 values"):
        parse_config("\n".join(lines))


def test_aliases_within_bounds_still_work() -> None:
    config = parse_config(
        "tools:\n  a: &d {kind: template, max_concurrency: 2}\n  b: {<<: *d, description: B}\n"
    )
    assert config.tools["b"].max_concurrency == 2


def test_a_number_too_long_for_text_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"config:1:22: invalid YAML: a number with 5000 digits"):
        parse_config("execution: {retries: " + "9" * 5000 + "}")


def test_a_module_exiting_on_import_fails_only_its_step(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from code_evolver.cli import main_group

    (tmp_path / "exits_on_import_abc.py").write_text("import sys\nsys.exit(0)\n")
    path = tmp_path / "config.yaml"
    path.write_text("tools:\n  t: {kind: function, function: 'exits_on_import_abc:f'}\n")
    plan = tmp_path / "plan.json"
    steps = [
        {"step_id": "a", "tool": "t", "input": "x"},
        {"step_id": "b", "tool": "combine", "input": "y"},
    ]
    plan.write_text(json.dumps({"request": "r", "steps": steps}))
    listed = CliRunner().invoke(main_group, ["tools", "--config", str(path)])
    assert listed.exit_code == 0
    assert "exits_on_import_abc" not in sys.modules
    result = CliRunner().invoke(main_group, ["run", str(plan), "--config", str(path), "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["steps"]["b"]["status"] == "succeeded"
    assert doc["steps"]["a"]["error"].endswith(
        "tools.t.function: cannot import module 'exits_on_import_abc': it raised SystemExit(0)"
    )


# --------------------------------------------------------------- strict parsing and paths


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"# caf\xe9 in latin-1\ntools: {}\n")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(path)


def test_yaml_dates_in_tool_params_are_rejected() -> None:
    text = "tools:\n  c:\n    kind: template\n    params: {since: 2020-01-01}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert any(
        "tools.c.params" in p and "params must be JSON values" in p for p in caught.value.problems
    )


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_infinite_execution_settings_are_rejected(value: str) -> None:
    with pytest.raises(ConfigError, match=r"execution\.retry_backoff_s"):
        parse_config(f"execution: {{retry_backoff_s: {value}}}\n")


def test_deeply_nested_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_config("[" * 100_000)


def test_missing_command_cwd_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("tools:\n  lister:\n    kind: command\n    command: [ls]\n    cwd: nope\n")
    with pytest.raises(ConfigError) as caught:
        ToolRegistry.from_config(load_config(path))
    assert any("tools.lister.cwd" in p for p in caught.value.problems)
