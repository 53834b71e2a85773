"""The node registry: versions on disk, fitness, and `evolve nodes` (tests in the sandbox)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from code_evolver.cli import main_group
from code_evolver.errors import UserError
from code_evolver.evolve.node_store import NodeStore

REPO = Path(__file__).resolve().parent.parent
CONFIG = str(REPO / "config.yaml")

NODE = """from node_runtime import run_node


def main(text: str, **params: object) -> str:
    return text[::-1]


if __name__ == "__main__":
    run_node(main)
"""
TESTS = """from main import main


def test_reverses():
    assert main("abc") == "cba"


def test_empty():
    assert main("") == ""
"""


# ---------------------------------------------------------------- the store


def test_versions_count_up_and_the_newest_runs(tmp_path: Path) -> None:
    store = NodeStore(tmp_path)
    first = store.add("reverse", NODE, TESTS, {"description": "Reverses text"})
    second = store.add("reverse", NODE + "\n", TESTS, {"description": "Reverses text, v2"})
    assert (first.version, second.version) == (1, 2)
    assert store.find("reverse").version == 2
    assert store.versions("reverse") == [1, 2]
    assert (second.folder / "main.py").read_text() == NODE + "\n"
    assert [n.name for n in store.all()] == ["reverse"]


def test_a_half_written_version_is_not_a_version(tmp_path: Path) -> None:
    store = NodeStore(tmp_path)
    store.add("reverse", NODE, TESTS, {})
    (tmp_path / "reverse" / "v2").mkdir()  # a crash before meta.json was written
    assert store.find("reverse").version == 1


def test_runs_make_the_fitness(tmp_path: Path) -> None:
    store = NodeStore(tmp_path)
    node = store.add("reverse", NODE, TESTS, {})
    assert node.fitness == 1.0  # proved by its tests, not run yet
    for ok, seconds in [(True, 0.1), (True, 0.3), (False, 0.2), (True, 0.2)]:
        store.record_run(node, ok, seconds)
    again = store.find("reverse")
    assert (again.runs, again.failures) == (4, 1)
    assert again.fitness == 0.75
    assert again.median_runtime_s == pytest.approx(0.2)


def test_names_and_missing_nodes_are_user_errors(tmp_path: Path) -> None:
    store = NodeStore(tmp_path)
    with pytest.raises(UserError, match="lower-case letters"):
        store.add("Bad Name", NODE, TESTS, {})
    store.add("reverse", NODE, TESTS, {})
    with pytest.raises(UserError, match=r"no node 'nope' in the registry \(stored: reverse\)"):
        store.find("nope")
    assert store.remove("reverse") == 1
    assert store.all() == []


# ---------------------------------------------------------------- the CLI, with the sandbox


def evolve(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main_group, list(args), input=input)


def add_reverse(script: str, tests: str, description: str) -> Any:
    """`evolve nodes add reverse SCRIPT --tests TESTS --description ...`."""
    return evolve(
        "nodes", "add", "reverse", script, "--tests", tests, "--description", description,
        "--config", CONFIG,
    )  # fmt: skip


def write(tmp_path: Path, node: str = NODE, tests: str = TESTS) -> tuple[str, str]:
    (tmp_path / "node.py").write_text(node)
    (tmp_path / "test_node.py").write_text(tests)
    return str(tmp_path / "node.py"), str(tmp_path / "test_node.py")


@pytest.mark.integration  # tests run in the strict sandbox; the node runs as a process
def test_add_run_test_show_and_remove_a_node(tmp_path: Path) -> None:
    script, tests = write(tmp_path)
    added = add_reverse(script, tests, "Reverses text")
    assert added.exit_code == 0, added.output
    assert "stored reverse v1 (2 tests passed)" in added.output
    ran = evolve("nodes", "run", "reverse", "--input", '{"input": "hello"}', "--json")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["steps"]["reverse"]["output"] == "olleh"
    piped = evolve("nodes", "run", "reverse", input="stressed")
    assert "desserts" in piped.output
    tested = evolve("nodes", "test", "reverse", "--json")
    assert tested.exit_code == 0, tested.output
    assert json.loads(tested.output)["tests"] == 2
    listed = json.loads(evolve("nodes", "--json").output)
    assert [(n["name"], n["runs"], n["fitness"]) for n in listed] == [("reverse", 2, 1.0)]
    shown = evolve("nodes", "show", "reverse")
    assert "Reverses text" in shown.output
    assert "def test_reverses" in shown.output
    standalone = subprocess.run(
        [sys.executable, str(NodeStore().find("reverse").main)],
        input=b'{"input": "abc"}',
        capture_output=True,
        check=True,
    )
    assert json.loads(standalone.stdout) == {"result": "cba"}
    assert evolve("nodes", "rm", "reverse").output.strip() == "removed reverse (1 version)"
    assert "No nodes yet" in evolve("nodes").output


@pytest.mark.integration  # the tests run in the strict sandbox
def test_a_node_whose_tests_fail_is_refused(tmp_path: Path) -> None:
    script, tests = write(tmp_path, tests=TESTS.replace('"cba"', '"abc"'))
    refused = add_reverse(script, tests, "x")
    assert refused.exit_code == 2
    assert "node reverse was not stored: 1 of 2 tests failed: test_reverses" in refused.output
    assert "AssertionError" in refused.output
    assert "AssertionError: left side 'cba', right side 'abc'" in " ".join(refused.output.split())
    assert NodeStore().all() == []


def test_a_node_with_a_forbidden_import_is_refused_before_anything_runs(tmp_path: Path) -> None:
    script, tests = write(tmp_path, node="import subprocess\n" + NODE)
    refused = add_reverse(script, tests, "x")
    assert refused.exit_code == 2
    assert "import of 'subprocess' is not allowed" in refused.output
    assert NodeStore().all() == []


def test_the_sandbox_runner_stands_in_for_pytest_where_it_is_missing() -> None:
    from code_evolver.evolve import test_runner

    stand_in: Any = test_runner._pytest_stand_in()
    with stand_in.raises(ValueError, match="bad"):
        raise ValueError("a bad value")
    with pytest.raises(AssertionError, match="did not raise"), stand_in.raises(ValueError):
        pass
    assert stand_in.approx(0.3) == 0.1 + 0.2
    assert stand_in.approx(0.3) != 0.31


def test_stored_nodes_are_tools_plans_can_use() -> None:
    from code_evolver.config import load_config
    from code_evolver.planner.overseer import catalogue
    from code_evolver.tools.registry import ToolRegistry

    NodeStore().add("reverse", NODE, TESTS, {"description": "Reverses text"})
    NodeStore().add("upper", NODE, TESTS, {"description": "a node named like a tool"})
    registry = ToolRegistry.from_config(load_config(CONFIG))
    assert registry["reverse"].kind == "node"
    assert registry["upper"].kind == "command"  # a configured tool keeps its name
    assert "reverse" in catalogue(registry)
    listed = evolve("tools", "--config", CONFIG, "--json")
    assert json.loads(listed.output)["reverse"]["description"] == "Reverses text"
    before = registry.digest("reverse")
    NodeStore().add("reverse", NODE.replace("[::-1]", "[::-1] "), TESTS, {"description": "v2"})
    registry.add_node(NodeStore().find("reverse"))
    assert registry.digest("reverse") != before  # a new version is another definition


def test_a_node_that_could_not_be_written_leaves_its_attempts(tmp_path: Path) -> None:
    store = NodeStore(tmp_path)
    store.record_failure("count_vowels", "count the vowels", [{"attempt": 1, "passed": False}])
    lines = (tmp_path / "count_vowels" / "failures.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["attempts"] == [{"attempt": 1, "passed": False}]
    assert store.all() == []  # no version: not a node


@pytest.mark.integration  # the tests run in the strict sandbox
def test_parametrized_tests_and_pytest_helpers_run_without_pytest(tmp_path: Path) -> None:
    import asyncio

    from code_evolver.evolve.generator import stage
    from code_evolver.evolve.proving import run_tests

    tests = (
        "import pytest\nfrom main import main\n\n\n"
        "@pytest.mark.parametrize(('text', 'expected'), [('ab', 'ba'), ('', ''), ('x', 'x')])\n"
        "def test_cases(text, expected):\n    assert main(text) == expected\n\n\n"
        "def test_skipped():\n    pytest.skip('not today')\n\n\n"
        "def test_raises():\n    with pytest.raises(TypeError):\n        main(None)\n"
    )
    stage(tmp_path, NODE, tests)
    report = asyncio.run(run_tests(tmp_path))
    assert report.passed, report.failures_text()
    assert report.tests == 4  # three cases and one more; the skipped test is not counted


def test_the_escalation_model_is_made_once_and_closed_with_the_session() -> None:
    import asyncio

    from code_evolver.config import load_config
    from code_evolver.session import Session
    from code_evolver.tools.generated import GeneratedTool

    async def main() -> None:
        config = load_config(CONFIG).with_evolve(escalation_model="bigger")
        async with Session(config) as session:
            tool = session.registry["generate"]
            assert isinstance(tool, GeneratedTool)
            stronger = tool._stronger()
            assert stronger is tool._stronger()  # one service, however many generations
            assert stronger.settings.model == "bigger"
        assert tool._escalation is None  # closed with the session

    asyncio.run(main())


def test_rm_with_json_says_what_went() -> None:
    store = NodeStore()
    store.add("shout", "print('hi')\n", "", {"description": "shouts"})
    store.add("shout", "print('HI')\n", "", {"description": "shouts"})
    removed = evolve("nodes", "rm", "shout", "--json")
    assert removed.exit_code == 0, removed.output
    assert json.loads(removed.output) == {"removed": "shout", "versions": 2}
    assert store.names() == []


@pytest.mark.integration  # the tests run in the strict sandbox
def test_add_puts_the_run_node_guard_right_as_for_a_written_node(tmp_path: Path) -> None:
    unguarded = NODE.replace('if __name__ == "__main__":\n    run_node(main)\n', "")
    script, tests = write(tmp_path, node=unguarded)
    added = add_reverse(script, tests, "Reverses text")
    assert added.exit_code == 0, added.output
    assert 'added to node.py\'s stored copy: if __name__ == "__main__": run_node(main)' in (
        " ".join(added.stderr.split())
    )
    assert 'if __name__ == "__main__":' in NodeStore().find("reverse").main.read_text()


def test_tests_that_import_the_node_by_its_file_name_are_told_how_it_is_stored(
    tmp_path: Path,
) -> None:
    script, tests = write(tmp_path, tests=TESTS.replace("from main import", "from node import"))
    refused = add_reverse(script, tests, "Reverses text")
    assert refused.exit_code == 2
    assert "a node is stored as main.py, so its tests say: from main import main" in (
        " ".join(refused.output.split())
    )
