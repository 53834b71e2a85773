from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import code_evolver
from code_evolver import Config, PlanError, RunStatus

REPO = Path(__file__).resolve().parent.parent


def test_run_accepts_callables_as_tools_and_returns_a_typed_result() -> None:
    def shout(text: str, mark: str = "!") -> str:
        return text.upper() + mark

    async def count(text: str) -> dict[str, int]:
        return {"words": len(text.split())}

    result = code_evolver.run(
        {
            "steps": [
                {"step_id": "a", "tool": "shout", "input": "hello world", "params": {"mark": "?"}},
                {"step_id": "b", "tool": "count", "input": "{a}"},
                {"step_id": "c", "tool": "combine", "input": "{a} has {b.words} words"},
            ]
        },
        config=Config.model_validate({"tools": {"combine": {"kind": "template"}}}),
        tools={"shout": shout, "count": count},
    )
    assert isinstance(result, code_evolver.RunResult)
    assert result.status is RunStatus.SUCCEEDED
    assert result.outputs == {
        "a": "HELLO WORLD?",
        "b": {"words": 2},
        "c": "HELLO WORLD? has 2 words",
    }


@pytest.mark.integration  # the example plan runs command tools
def test_arun_in_async_code_with_listeners_and_overrides() -> None:
    seen: list[str] = []

    async def main() -> code_evolver.RunResult:
        return await code_evolver.arun(
            REPO / "examples" / "plans" / "text_report.json",
            config=REPO / "config.yaml",
            listeners=[lambda e: seen.append(type(e).__name__)],
            max_parallel=1,
        )

    result = asyncio.run(main())
    assert result.ok
    assert result.peak_concurrency == 1
    assert seen[0] == "RunStarted"
    assert seen[-1] == "RunFinished"


def test_run_inside_an_event_loop_points_to_arun() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="use `await arun"):
            code_evolver.run({"steps": []})

    asyncio.run(main())


def test_bad_plans_raise_before_anything_runs() -> None:
    ran: list[str] = []
    with pytest.raises(PlanError, match="unknown tool 'nope'"):
        code_evolver.run(
            {
                "steps": [
                    {"step_id": "a", "tool": "t", "input": "x"},
                    {"step_id": "b", "tool": "nope", "input": "x"},
                ]
            },
            config=Config(),
            tools={"t": lambda text: ran.append(text)},
        )
    assert ran == []


def test_callable_replaces_a_configured_tool_of_the_same_name() -> None:
    result = code_evolver.run(
        {"steps": [{"step_id": "a", "tool": "word_count", "input": "a b c"}]},
        config=REPO / "config.yaml",
        tools={"word_count": lambda text: "replaced"},
    )
    assert result.outputs == {"a": "replaced"}


ONE_STEP = {"steps": [{"step_id": "a", "tool": "combine", "input": "x"}]}


@pytest.mark.parametrize("wrong", [[ONE_STEP], None, 3])
def test_a_plan_of_the_wrong_kind_is_a_plan_error_naming_the_kinds(wrong: object) -> None:
    with pytest.raises(PlanError, match="a plan is a Plan, a mapping or the path of a JSON file"):
        code_evolver.run(wrong)  # type: ignore[arg-type]


def test_a_plan_may_be_given_as_json_text() -> None:
    import json

    assert code_evolver.run(json.dumps(ONE_STEP)).outputs == {"a": "x"}


def test_arguments_of_the_wrong_kind_are_named() -> None:
    with pytest.raises(TypeError, match="tools must be a mapping of names to tools"):
        code_evolver.run(ONE_STEP, tools=[str.upper])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="request must be text"):
        code_evolver.ask(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="backend must be a name"):
        code_evolver.plan("write a joke", backend=5)


def test_a_backend_may_be_named_as_on_the_command_line() -> None:
    planned = code_evolver.plan("write a joke", backend="embedded", planner="rules")
    assert planned.source == "rules"
    assert [s.tool for s in planned.organized.plan.steps] == ["content_generator"]
