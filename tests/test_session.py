"""Sessions: a request planned and run, with steps starting while the plan streams."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from support import echo_model

from code_evolver import events
from code_evolver.config import Config, load_config
from code_evolver.errors import Interrupted
from code_evolver.events import EventBus
from code_evolver.llm.base import Request
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.result import RunStatus, StepStatus
from code_evolver.session import Answer, Session

REPO = Path(__file__).resolve().parent.parent
REQUEST = "do something the rules do not know about"


def config(**planner: Any) -> Config:
    return load_config(REPO / "config.yaml").with_planner(**planner)


def ask(session: Session, request: str = REQUEST) -> Answer:
    async def main() -> Answer:
        try:
            return await session.ask(request, use_cache=False)
        finally:
            await session.close()

    return asyncio.run(main())


def test_rules_plan_runs_with_parallel_translations() -> None:
    backend = ScriptedBackend(echo_model)
    answer = ask(
        Session(config(), backend=backend), "write a joke and translate it to french and spanish"
    )
    assert answer.outcome.source == "rules"
    assert answer.result.status is RunStatus.SUCCEEDED
    outputs = answer.result.outputs
    assert outputs["step1"] == "reply to: Write a joke."
    assert outputs["step2"] == "[French] reply to: Write a joke."
    assert outputs["step3"] == "[Spanish] reply to: Write a joke."
    assert backend.closed
    doc = answer.to_json()
    assert doc["planner"]["source"] == "rules"
    assert [s["step_id"] for s in doc["plan"]["steps"]] == ["step1", "step2", "step3"]


def test_llm_tools_never_exceed_the_backend_capacity() -> None:
    backend = ScriptedBackend(echo_model, max_concurrency=2, delay_s=0.05)
    request = "write 6 different jokes about cats, dogs, birds, fish, cows and bees"
    session = Session(config().with_execution(max_parallel=8), backend=backend)
    answer = ask(session, request)
    assert answer.result.ok
    assert backend.peak == 2


def _streamed_plan(tool_started: list[float], stream_done: list[float]) -> Any:
    plan = {
        "steps": [
            {
                "step_id": "step1",
                "description": "Write",
                "tool": "content_generator",
                "input": "Write a haiku.",
                "depends_on": [],
            },
            {
                "step_id": "step2",
                "description": "Write",
                "tool": "content_generator",
                "input": "Write a limerick.",
                "depends_on": [],
            },
            {
                "step_id": "step3",
                "description": "Join",
                "tool": "combine",
                "input": "{step1}\n{step2}",
                "depends_on": ["step1", "step2"],
            },
        ]
    }
    text = json.dumps(plan, separators=(",", ":"))

    def model(request: Request) -> str:
        if request.schema is not None:  # the planner
            return text
        tool_started.append(time.perf_counter())
        return echo_model(request)

    return model


def test_steps_start_while_the_plan_is_still_streaming() -> None:
    tool_started: list[float] = []
    stream_done: list[float] = []
    backend = ScriptedBackend(
        _streamed_plan(tool_started, stream_done), chunk_size=8, chunk_delay_s=0.01
    )
    seen: list[events.Event] = []
    session = Session(config(), backend=backend, bus=EventBus(seen.append))
    planned: list[float] = []
    answer = asyncio.run(
        session.ask(REQUEST, use_cache=False, on_plan=lambda _: planned.append(time.perf_counter()))
    )
    assert answer.result.ok
    assert answer.result.outputs["step3"] == "reply to: Write a haiku.\nreply to: Write a limerick."
    assert tool_started[0] < planned[0]  # step1 ran before the plan was complete
    assert answer.outcome.first_step_s is not None
    assert answer.outcome.first_step_s < 0.6 * answer.outcome.seconds
    assert sum(isinstance(e, events.RunStarted) for e in seen) == 1
    assert [e.step_ids for e in seen if isinstance(e, events.PlanExtended)] == [
        ("step2",),
        ("step3",),
    ]


def test_waves_scheduling_waits_for_the_whole_plan() -> None:
    tool_started: list[float] = []
    backend = ScriptedBackend(_streamed_plan(tool_started, []), chunk_size=8, chunk_delay_s=0.005)
    planned: list[float] = []
    session = Session(config().with_execution(scheduling="waves"), backend=backend)
    answer = asyncio.run(
        session.ask(REQUEST, use_cache=False, on_plan=lambda _: planned.append(time.perf_counter()))
    )
    assert answer.result.ok
    assert min(tool_started) > planned[0]


def test_a_repaired_plan_keeps_results_of_identical_steps() -> None:
    first = {
        "steps": [
            {
                "step_id": "step1",
                "description": "a",
                "tool": "content_generator",
                "input": "Write a haiku.",
                "depends_on": [],
            },
            {
                "step_id": "step2",
                "description": "b",
                "tool": "nope",
                "input": "x",
                "depends_on": [],
            },
        ]
    }
    fixed = {
        "steps": [
            first["steps"][0],
            {
                "step_id": "step2",
                "description": "b",
                "tool": "summarizer",
                "input": "{step1}",
                "depends_on": ["step1"],
            },
        ]
    }
    plans = [json.dumps(first), json.dumps(fixed)]
    tool_calls: list[str] = []

    def model(request: Request) -> str:
        if request.schema is not None:
            return plans.pop(0)
        tool_calls.append(request.messages[-1]["content"][:20])
        return echo_model(request)

    backend = ScriptedBackend(model, chunk_size=16, chunk_delay_s=0.01)
    answer = ask(Session(config(), backend=backend))
    assert answer.outcome.llm_calls == 2
    assert answer.result.ok
    assert tool_calls.count("Write a haiku.") == 1  # step1 ran once, while streaming
    assert answer.result.steps["step1"].status is StepStatus.SUCCEEDED


def test_interrupt_while_planning() -> None:
    backend = ScriptedBackend(["{" + " " * 2000 + "}"], chunk_size=1, chunk_delay_s=0.01)
    session = Session(config(), backend=backend)

    async def main() -> None:
        task = asyncio.ensure_future(session.ask(REQUEST, use_cache=False))
        await asyncio.sleep(0.1)
        session.interrupt()
        with pytest.raises(Interrupted, match="interrupted while planning"):
            await task

    asyncio.run(main())


def test_interrupt_while_running_keeps_finished_results() -> None:
    def model(request: Request) -> str:
        return echo_model(request)

    backend = ScriptedBackend(model, delay_s=0.2)
    session = Session(config(), backend=backend)

    async def main() -> Answer:
        task = asyncio.ensure_future(
            session.ask("write a joke and translate it to french", use_cache=False)
        )
        await asyncio.sleep(0.3)  # step1 done, step2 running
        session.interrupt()
        return await task

    answer = asyncio.run(main())
    assert answer.result.status is RunStatus.INTERRUPTED
    assert answer.result.steps["step1"].ok
    assert answer.result.steps["step2"].status is StepStatus.CANCELLED


def test_a_plan_that_changed_reruns_and_carries_identical_results_over() -> None:
    haiku = {
        "step_id": "step1",
        "description": "a",
        "tool": "content_generator",
        "input": "Write a haiku.",
        "depends_on": [],
    }
    first = {
        "steps": [
            haiku,
            {
                "step_id": "step2",
                "description": "b",
                "tool": "summarizer",
                "input": "{step1}",
                "depends_on": ["step1"],
            },
            {
                "step_id": "step3",
                "description": "c",
                "tool": "nope",
                "input": "x",
                "depends_on": [],
            },
        ]
    }
    fixed = {
        "steps": [
            haiku,
            {
                "step_id": "step2",
                "description": "b",
                "tool": "translator",
                "input": "{step1}",
                "params": {"target_lang": "French"},
                "depends_on": ["step1"],
            },
        ]
    }
    plans = [json.dumps(first), json.dumps(fixed)]
    tool_calls: list[str] = []

    def model(request: Request) -> str:
        if request.schema is not None:
            return plans.pop(0)
        tool_calls.append(request.messages[-1]["content"])
        return echo_model(request)

    seen: list[events.Event] = []
    backend = ScriptedBackend(model, chunk_size=16, chunk_delay_s=0.01)
    answer = ask(Session(config(), backend=backend, bus=EventBus(seen.append)))
    assert answer.result.ok
    assert sum(isinstance(e, events.RunStarted) for e in seen) == 2
    assert tool_calls.count("Write a haiku.") == 1  # carried over, not run again
    assert answer.result.outputs["step2"] == "[French] reply to: Write a haiku."
    assert list(answer.result.steps) == ["step1", "step2"]


def test_loading_the_model_is_announced_once_with_its_time() -> None:
    seen: list[events.Event] = []
    session = Session(config(), backend=ScriptedBackend(echo_model), bus=EventBus(seen.append))
    answer = ask(session, "write a haiku about rain and translate it to french")
    assert answer.result.ok
    loading = [e for e in seen if isinstance(e, events.ModelLoading)]
    assert [(e.model, e.done) for e in loading] == [
        ("scripted:scripted", False),
        ("scripted:scripted", True),
    ]
    assert loading[1].seconds >= 0
    assert answer.model == "scripted:scripted"


def test_an_interrupt_ends_with_its_request() -> None:
    """A long-lived session (the REPL): after one request was interrupted, the next runs."""
    backend = ScriptedBackend(echo_model, delay_s=0.2)
    session = Session(config(), backend=backend)

    async def main() -> tuple[Answer, Answer]:
        task = asyncio.ensure_future(
            session.ask("write a joke and translate it to french", use_cache=False)
        )
        await asyncio.sleep(0.3)
        session.interrupt()
        stopped = await task
        again = await session.ask("write a joke and translate it to french", use_cache=False)
        await session.close()
        return stopped, again

    stopped, again = asyncio.run(main())
    assert stopped.result.status is RunStatus.INTERRUPTED
    assert again.result.status is RunStatus.SUCCEEDED
    assert all(s.ok for s in again.result.steps.values())


def test_a_final_answer_is_streamed_to_whoever_watches() -> None:
    seen: list[events.Event] = []
    backend = ScriptedBackend(echo_model, chunk_size=4)
    session = Session(config(), backend=backend, bus=EventBus(seen.append))
    answer = ask(session, "write a joke and translate it to french")
    pieces = [e for e in seen if isinstance(e, events.StepOutput)]
    assert {e.step_id for e in pieces} == {"step2"}  # only the final step, not the joke
    assert len(pieces) > 1
    assert "".join(e.text for e in pieces).strip() == answer.result.outputs["step2"]


def test_every_event_of_a_request_is_plain_data_with_its_run_id() -> None:
    import dataclasses

    seen: list[events.Event] = []
    session = Session(config(), backend=ScriptedBackend(echo_model), bus=EventBus(seen.append))
    answer = ask(session, "write a joke and translate it to french and spanish")
    kinds = [type(e).__name__ for e in seen]
    assert kinds[0] == "PlanStarted"
    assert "PlanFinished" in kinds
    assert kinds[-1] == "RunFinished"
    for event in seen:
        json.dumps(dataclasses.asdict(event))  # serialisable: no live objects inside
        if not isinstance(event, events.ModelLoading):
            assert event.run_id == answer.result.run_id, event
