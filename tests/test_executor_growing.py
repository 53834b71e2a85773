"""A plan that grows while it runs (streamed from the overseer), and results carried over."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import Behaviour, Recorder, plan, step

from code_evolver import events
from code_evolver.config import ExecutionSettings
from code_evolver.events import EventBus
from code_evolver.executor import Executor
from code_evolver.organizer import organize
from code_evolver.result import RunStatus, StepStatus
from code_evolver.tools.base import Tool


def grown(*steps: dict[str, Any]) -> Any:
    return organize(plan(*steps), {"work": Recorder().tool()})


def test_steps_start_as_they_arrive_and_the_run_ends_after_seal() -> None:
    rec = Recorder()
    tools: dict[str, Tool] = {"work": rec.tool()}
    seen: list[events.Event] = []
    a, b, c = step("a"), step("b", "a"), step("c", "b")

    async def main() -> Any:
        executor = Executor(
            organize(plan(a), tools), tools, growing=True, bus=EventBus(seen.append)
        )
        task = asyncio.ensure_future(executor.run())
        await asyncio.sleep(0.02)
        assert rec.started_ids() == ["a"]  # started before the plan was complete
        assert not task.done()  # finished work, but the plan is still growing
        executor.extend(organize(plan(a, b), tools))
        await asyncio.sleep(0.02)
        assert rec.started_ids() == ["a", "b"]
        executor.seal(organize(plan(a, b, c), tools))
        return await task

    result = asyncio.run(main())
    assert result.status is RunStatus.SUCCEEDED
    assert result.outputs["c"] == "<<<a>>>"
    assert [e.step_ids for e in seen if isinstance(e, events.PlanExtended)] == [("b",), ("c",)]
    assert list(result.steps) == ["a", "b", "c"]


def test_seal_without_new_steps_ends_a_finished_run() -> None:
    tools: dict[str, Tool] = {"work": Recorder().tool()}
    only = organize(plan(step("a")), tools)

    async def main() -> Any:
        executor = Executor(only, tools, growing=True)
        task = asyncio.ensure_future(executor.run())
        await asyncio.sleep(0.02)
        executor.seal(only)
        return await asyncio.wait_for(task, 5)

    assert asyncio.run(main()).ok


def test_extending_before_the_run_starts_is_fine() -> None:
    tools: dict[str, Tool] = {"work": Recorder().tool()}

    async def main() -> Any:
        executor = Executor(organize(plan(step("a")), tools), tools, growing=True)
        executor.extend(organize(plan(step("a"), step("b", "a")), tools))
        task = asyncio.ensure_future(executor.run())
        executor.seal(organize(plan(step("a"), step("b", "a")), tools))
        return await asyncio.wait_for(task, 5)

    assert asyncio.run(main()).outputs["b"] == "<<a>>"


def test_step_added_after_its_dependency_failed_is_skipped() -> None:
    rec = Recorder()
    rec.behaviours["a"] = Behaviour(always_fail=True)
    tools: dict[str, Tool] = {"work": rec.tool()}

    async def main() -> Any:
        executor = Executor(organize(plan(step("a")), tools), tools, growing=True)
        task = asyncio.ensure_future(executor.run())
        await asyncio.sleep(0.02)
        executor.seal(organize(plan(step("a"), step("b", "a")), tools))
        return await asyncio.wait_for(task, 5)

    result = asyncio.run(main())
    assert result.steps["b"].status is StepStatus.SKIPPED


def test_stop_ends_a_growing_run() -> None:
    rec = Recorder()
    rec.behaviours["a"] = Behaviour(hang=True)
    tools: dict[str, Tool] = {"work": rec.tool()}

    async def main() -> Any:
        executor = Executor(organize(plan(step("a")), tools), tools, growing=True)
        task = asyncio.ensure_future(executor.run())
        await asyncio.sleep(0.02)
        executor.stop(RunStatus.CANCELLED)
        return await asyncio.wait_for(task, 5)

    assert asyncio.run(main()).status is RunStatus.CANCELLED


def test_growing_needs_eager_scheduling() -> None:
    tools: dict[str, Tool] = {"work": Recorder().tool()}
    with pytest.raises(ValueError, match="only eager scheduling"):
        Executor(
            organize(plan(step("a")), tools),
            tools,
            ExecutionSettings(scheduling="waves"),
            growing=True,
        )
    with pytest.raises(RuntimeError, match="growing=True"):
        Executor(organize(plan(step("a")), tools), tools).extend(organize(plan(step("a")), tools))


@pytest.mark.parametrize("scheduling", ["eager", "waves"])
def test_carried_over_results_are_not_run_again(scheduling: str) -> None:
    rec = Recorder()
    tools: dict[str, Tool] = {"work": rec.tool()}
    first = asyncio.run(Executor(organize(plan(step("a"), step("b")), tools), tools).run())
    rec.starts.clear()
    second = Executor(
        organize(plan(step("a"), step("b"), step("c", "a", "b")), tools),
        tools,
        ExecutionSettings(scheduling=scheduling),  # type: ignore[arg-type]
        reuse=first.steps,
    )
    result = asyncio.run(second.run())
    assert rec.started_ids() == ["c"]
    assert result.outputs == {"a": "<a>", "b": "<b>", "c": "<<a>+<b>>"}
    assert result.steps["a"].attempts == 1


def test_llm_like_tools_share_one_resource_limit() -> None:
    class Shared(Tool):
        kind = "test"

        def __init__(self, name: str, rec: Recorder) -> None:
            super().__init__(name)
            self.inner = rec.tool(name)

        @property
        def resource(self) -> str | None:
            return "backend"

        @property
        def resource_capacity(self) -> int | None:
            return 2

        async def run(self, call: Any) -> Any:
            using["now"] += 1
            using["peak"] = max(using["peak"], using["now"])
            try:
                return await self.inner.run(call)
            finally:
                using["now"] -= 1

    using = {"now": 0, "peak": 0}
    rec = Recorder()
    tools: dict[str, Tool] = {"x": Shared("x", rec), "y": Shared("y", rec), "z": rec.tool("z")}
    steps = [step(f"{t}{i}", tool=t) for t in "xyz" for i in range(4)]
    for s in steps:
        rec.behaviours[s["step_id"]] = Behaviour(delay=0.03)
    result = asyncio.run(
        Executor(organize(plan(*steps), tools), tools, ExecutionSettings(max_parallel=20)).run()
    )
    assert result.ok
    assert using["peak"] == 2  # x and y together never exceed the shared capacity
    assert rec.peak_by_tool["z"] == 4  # the shared limit never holds back other tools
    assert rec.peak <= 6


def test_stop_ends_a_growing_run_whose_steps_all_finished() -> None:
    tools: dict[str, Tool] = {"work": Recorder().tool()}

    async def main() -> Any:
        executor = Executor(organize(plan(step("a")), tools), tools, growing=True)
        task = asyncio.ensure_future(executor.run())
        await asyncio.sleep(0.02)  # "a" has finished; the plan could still grow
        executor.stop(RunStatus.CANCELLED)
        return await asyncio.wait_for(task, 5)

    result = asyncio.run(main())
    assert result.steps["a"].ok


def test_time_spent_waiting_for_the_plan_is_not_run_time() -> None:
    tools: dict[str, Tool] = {"work": Recorder().tool()}
    a, b = step("a"), step("b")

    async def main() -> Any:
        executor = Executor(organize(plan(a), tools), tools, growing=True)
        task = asyncio.ensure_future(executor.run())
        await asyncio.sleep(0.3)  # "a" is done at once; the planner is still writing "b"
        executor.seal(organize(plan(a, b), tools))
        return await task

    result = asyncio.run(main())
    assert result.plan_wait_s >= 0.25
    assert result.run_s == pytest.approx(result.wall_s - result.plan_wait_s)
    assert result.speedup == pytest.approx(result.sum_s / result.run_s)
    doc = result.to_json()
    assert doc["plan_wait_s"] == round(result.plan_wait_s, 6)


def test_steps_arriving_after_a_fail_fast_stop_are_ignored() -> None:
    rec = Recorder()
    rec.behaviours["a"] = Behaviour(always_fail=True)
    tools: dict[str, Tool] = {"work": rec.tool()}
    settings = ExecutionSettings(on_failure="fail_fast", retries=0)
    a, b = step("a"), step("b")

    async def main() -> Any:
        executor = Executor(organize(plan(a), tools), tools, settings, growing=True)
        task = asyncio.ensure_future(executor.run())
        await asyncio.sleep(0.05)  # "a" failed: the run stopped
        executor.extend(organize(plan(a, b), tools))  # the planner goes on writing: no error
        executor.seal(organize(plan(a, b), tools))
        return await task

    result = asyncio.run(main())
    assert "b" not in rec.started_ids()
    assert result.steps["a"].status is StepStatus.FAILED
