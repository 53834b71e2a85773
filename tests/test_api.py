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
