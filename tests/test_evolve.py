"""Code evolution with a scripted model: the fix loop, its outcomes, the registry and reuse.

The model is scripted; the node's tests really run in the strict sandbox, so these tests are
integration tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from code_evolver.cli import main_group
from code_evolver.config import EvolveSettings, ExecutionSettings, load_config
from code_evolver.evolve.generator import NodeGenerator, Outcome, node_name
from code_evolver.evolve.node_store import NodeStore
from code_evolver.llm import service
from code_evolver.llm.base import Request
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.llm.service import LLMService
from code_evolver.session import Session

pytestmark = pytest.mark.integration  # each attempt's tests run in the strict sandbox

REPO = Path(__file__).resolve().parent.parent
CONFIG = str(REPO / "config.yaml")
TASK = "count the vowels"

GOOD = """from node_runtime import run_node


def main(text: str, **params: object) -> str:
    return str(sum(1 for c in text.lower() if c in "aeiou"))


if __name__ == "__main__":
    run_node(main)
"""
TESTS = """from main import main


def test_counts():
    assert main("banana") == "3"


def test_none():
    assert main("xyz") == "0"
"""


def wrong(answer: str) -> str:
    """A node that answers ``answer`` (a plain assert fails the same way for any wrong
    value), or raises ValueError(answer) for ``!answer`` (a failure of its own)."""
    body = f"raise ValueError({answer[1:]!r})" if answer.startswith("!") else f"return {answer!r}"
    return GOOD.replace('return str(sum(1 for c in text.lower() if c in "aeiou"))', body)


def fenced(code: str, prose: bool = True) -> str:
    return f"Here you go:\n```python\n{code}```\nThis should work." if prose else code


def model(codes: Iterator[str], tests: str = TESTS) -> Callable[[Request], str]:
    """Writes and fixes with the next of ``codes``; writes ``tests``; answers anything else."""

    def answer(request: Request) -> str:
        prompt = request.messages[-1]["content"]
        if prompt.startswith("Write tests"):
            return fenced(tests)
        if prompt.startswith(("Write a small Python program", "This program does not pass")):
            return fenced(next(codes))
        return f"the model's own answer to: {prompt[:40]}"

    return answer


def generate(
    tmp_path: Path, codes: list[str], *, attempts: int = 3, tests: str = TESTS
) -> tuple[Outcome, ScriptedBackend]:
    backend = ScriptedBackend(model(iter(codes), tests))
    llm = LLMService(load_config(CONFIG).llm, backend)
    generator = NodeGenerator(
        llm,
        EvolveSettings(max_attempts=attempts),
        ExecutionSettings(),
        NodeStore(tmp_path / "nodes"),
    )
    return asyncio.run(generator.generate(TASK, "banana")), backend


def test_a_node_that_passes_at_once_is_stored_with_its_record(tmp_path: Path) -> None:
    outcome, _backend = generate(tmp_path, [GOOD])
    assert outcome.node is not None
    assert (outcome.node.name, outcome.node.version) == ("count_vowels", 1)
    assert outcome.model_calls == 2  # the code and the tests, asked for at once
    assert outcome.node.main.read_text().strip() == GOOD.strip()  # no prose around it
    meta = outcome.node.meta
    assert meta["description"] == TASK
    assert meta["attempts"] == 1
    assert meta["test_result"] == "2 tests passed"


def test_code_that_fails_its_tests_is_repaired_from_the_failure(tmp_path: Path) -> None:
    outcome, backend = generate(tmp_path, [wrong("0"), GOOD])
    assert outcome.node is not None
    assert [a.report.passed for a in outcome.attempts if a.report] == [False, True]
    fix_prompt = backend.requests[-1].messages[-1]["content"]
    assert "test_counts" in fix_prompt  # the failure went back with the code
    assert "AssertionError" in fix_prompt


@pytest.mark.parametrize(
    ("first", "refused"),
    [
        ("def main(:\n", "syntax error on line 1"),
        ("import os\n" + GOOD, "import of 'os' is not allowed"),
    ],
)
def test_code_refused_before_running_is_repaired_too(
    tmp_path: Path, first: str, refused: str
) -> None:
    outcome, backend = generate(tmp_path, [first, GOOD])
    assert outcome.node is not None
    assert refused in outcome.attempts[0].problems[0]
    assert outcome.attempts[0].report is None  # never ran
    assert refused in backend.requests[-1].messages[-1]["content"]


def test_the_same_failure_twice_stops_early(tmp_path: Path) -> None:
    outcome, _backend = generate(tmp_path, [wrong("0"), wrong("0"), GOOD], attempts=3)
    assert outcome.node is None
    assert len(outcome.attempts) == 2
    assert outcome.reason is not None
    assert outcome.reason.startswith("the same failure twice")
    assert NodeStore(tmp_path / "nodes").all() == []


def test_the_same_refusal_one_line_lower_is_the_same_failure(tmp_path: Path) -> None:
    outcome, _backend = generate(
        tmp_path,
        ["import os\nimport sys\n" + GOOD, "# vowels\nimport sys\nimport os\n" + GOOD, GOOD],
    )
    assert outcome.node is None
    assert len(outcome.attempts) == 2  # the model made the same mistakes again: stop
    assert outcome.attempts[1].gist == (
        "line 2: import of 'sys' is not allowed (evolve.allowed_imports) (and 1 more)"
    )
    assert outcome.reason == f"the same failure twice: {outcome.attempts[1].gist}"


def test_every_attempt_failing_is_a_clean_failure(tmp_path: Path) -> None:
    outcome, _ = generate(tmp_path, [wrong("!one"), wrong("!two"), wrong("!four")], attempts=3)
    assert outcome.node is None
    assert len(outcome.attempts) == 3
    assert outcome.reason is not None
    assert outcome.reason.startswith("no attempt passed its tests")


def test_node_names_come_from_the_task() -> None:
    assert node_name("Count the vowels in a text") == "count_vowels"
    assert node_name("2 + 2") == "node_2_2"


# ---------------------------------------------------------------- through a run


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], ScriptedBackend]:
    def install(codes: list[str]) -> ScriptedBackend:
        backend = ScriptedBackend(model(iter(codes)))
        monkeypatch.setattr(service, "create_backend", lambda name, settings: backend)

        async def embedded(settings: Any) -> service.Choice:
            return service.Choice("embedded", ["test"])

        monkeypatch.setattr(service, "choose_backend", embedded)
        return backend

    return install


def evolve(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main_group, [*args, "--config", CONFIG], input=input)


def test_a_forced_step_writes_a_node_and_the_next_request_reuses_it(
    scripted: Callable[[list[str]], ScriptedBackend],
) -> None:
    backend = scripted([GOOD, GOOD])
    first = evolve("count the vowels in this text", "--evolve", "--json", input="banana")
    assert first.exit_code == 0, first.output
    document = json.loads(first.output)
    assert document["plan"]["steps"][0]["tool"] == "generate"
    assert document["steps"]["step1"]["output"] == "3"
    calls = len(backend.requests)
    assert calls == 2  # the code and its tests
    again = evolve("count the vowels in this text", "--evolve", "--json", input="aeiou")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["steps"]["step1"]["output"] == "5"
    assert len(backend.requests) == calls  # reused: no generation call at all
    assert [n.runs for n in NodeStore().all()] == [2]
    stages = [c["tool"] for c in json.loads(again.output)["steps"]["step1"]["calls"]]
    assert stages == ["reuse node count_vowels v1"]  # said, in the record and the view
    fresh = evolve("count the vowels in this text", "--evolve", "--no-reuse", input="banana")
    assert fresh.exit_code == 0, fresh.output
    assert NodeStore().find("count_vowels").version == 2  # written again, as v2


def test_a_step_whose_node_cannot_be_written_is_answered_by_the_model_with_a_warning(
    scripted: Callable[[list[str]], ScriptedBackend],
) -> None:
    scripted([wrong("!one"), wrong("!two"), wrong("!four")])
    result = evolve("count the vowels in this text", "--evolve", "--json", input="banana")
    assert result.exit_code == 0, result.output
    step = json.loads(result.stdout)["steps"]["step1"]
    assert step["output"].startswith("the model's")
    assert step["calls"][-1]["tool"] == "answer with the model (no node)"
    assert "warning: step step1: no node for 'Count the vowels in this text'" in result.stderr
    assert NodeStore().all() == []


def test_a_node_that_keeps_failing_is_written_again(
    scripted: Callable[[list[str]], ScriptedBackend],
) -> None:
    store = NodeStore()
    broken = GOOD.replace("return str(", "raise RuntimeError('broken'); return str(")
    node = store.add(
        "count_vowels", broken, TESTS, {"description": "Count the vowels in this text"}
    )
    for _ in range(3):
        store.record_run(node, False, 0.1)
    scripted([GOOD])
    result = evolve("count the vowels in this text", "--evolve", "--json", input="banana")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["steps"]["step1"]["output"] == "3"
    assert store.find("count_vowels").version == 2


def test_sessions_can_force_evolution_from_the_library(
    scripted: Callable[[list[str]], ScriptedBackend],
) -> None:
    scripted([GOOD])

    async def main() -> str:
        async with Session(load_config(CONFIG), force_evolve=True) as session:
            assert "count_vowels" not in session.registry
            answer = await session.ask("count the vowels in this text", input_text="queue")
            assert session.registry["count_vowels"].kind == "node"  # a tool from now on
            return str(answer.result.outputs["step1"])

    assert asyncio.run(main()) == "4"


def test_the_last_attempt_goes_to_the_escalation_model(tmp_path: Path) -> None:
    first = ScriptedBackend(model(iter([wrong("0")])))
    stronger = ScriptedBackend(model(iter([GOOD])))
    settings = load_config(CONFIG).llm
    generator = NodeGenerator(
        LLMService(settings, first),
        EvolveSettings(max_attempts=2, escalation_model="stronger"),
        ExecutionSettings(),
        NodeStore(tmp_path / "nodes"),
        escalate=lambda: LLMService(settings, stronger),
    )
    outcome = asyncio.run(generator.generate(TASK, "banana"))
    assert outcome.node is not None
    assert len(first.requests) == 2  # the first code and the tests
    assert len(stronger.requests) == 1  # the repair of the last attempt


def test_each_attempt_is_recorded_under_its_step_in_the_run_history(
    scripted: Callable[[list[str]], ScriptedBackend],
) -> None:
    from code_evolver.history import store

    scripted([wrong("0"), GOOD])
    result = evolve("count the vowels in this text", "--evolve", "--json", input="banana")
    assert result.exit_code == 0, result.output
    db = store.connect()
    run = store.find_run(db, json.loads(result.stdout)["run_id"])
    db.close()
    attempts = sorted((r for r in run.steps if r.call_id), key=lambda r: r.call_id or "")
    assert [(r.call_id, r.tool, r.status, r.attempt) for r in attempts] == [
        ("step1.attempt1", "write node (attempt 1)", "failed", 1),
        ("step1.attempt2", "write node (attempt 2)", "succeeded", 1),  # both in step attempt 1
    ]
    assert attempts[0].error == "AssertionError: left side '0', right side '3'"


def test_a_reused_node_without_params_gets_none_of_the_generate_steps_own(
    scripted: Callable[[list[str]], ScriptedBackend],
) -> None:
    plain = GOOD.replace("def main(text: str, **params: object) -> str:", "def main(text):")
    assert "def main(text):" in plain  # a person's node may take the text alone
    NodeStore().add("count_vowels", plain, TESTS, {"description": "Count the vowels in this text"})
    backend = scripted([])
    result = evolve("count the vowels in this text", "--evolve", "--json", input="banana")
    assert result.exit_code == 0, result.output
    step = json.loads(result.output)["steps"]["step1"]
    assert step["output"] == "3"  # not "unexpected keyword argument 'task'"
    assert [(c["tool"], c["status"]) for c in step["calls"]] == [
        ("reuse node count_vowels v1", "succeeded")
    ]
    assert backend.requests == []
