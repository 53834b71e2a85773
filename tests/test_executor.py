from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from support import Behaviour, Recorder, execute, plan, step

from code_evolver import events, step_inputs
from code_evolver.config import ExecutionSettings
from code_evolver.events import EventBus
from code_evolver.executor import Executor
from code_evolver.organizer import organize
from code_evolver.result import RunStatus, StepStatus
from code_evolver.tools.base import Output, Tool, ToolCall


def tools_of(rec: Recorder, **settings: Any) -> dict[str, Tool]:
    return {"work": rec.tool("work", **settings)}


def diamond() -> Any:
    return plan(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"))


def test_outputs_flow_into_dependents() -> None:
    rec = Recorder()
    result = execute(diamond(), tools_of(rec))
    assert result.status is RunStatus.SUCCEEDED
    assert result.outputs["d"] == "<<<a>>+<<a>>>"
    assert result.steps["d"].attempts == 1
    assert result.ok


def test_json_keys_of_outputs_can_be_referenced() -> None:
    rec = Recorder()
    rec.behaviours["a"] = Behaviour(output={"title": "T", "items": ["x", "y"]})
    result = execute(
        plan(step("a"), step("b", "a", input="{a.title}/{a.items.1}/{a}")), tools_of(rec)
    )
    assert result.outputs["b"] == '<T/y/{"title": "T", "items": ["x", "y"]}>'


def test_missing_key_fails_the_step_without_retrying() -> None:
    rec = Recorder()
    rec.behaviours["a"] = Behaviour(output={"title": "T"})
    result = execute(
        plan(step("a"), step("b", "a", input="{a.body}"), step("c", "b")), tools_of(rec), retries=3
    )
    assert result.steps["b"].status is StepStatus.FAILED
    assert result.steps["b"].attempts == 1
    assert "step 'b' reads {a.body}: no key 'body' (keys: title)" in (result.steps["b"].error or "")
    assert result.steps["c"].status is StepStatus.SKIPPED
    assert ("b", 1) not in rec.starts  # the tool never ran


def test_no_step_starts_before_its_dependencies_succeeded() -> None:
    rec = Recorder()
    for name, delay in {"a": 0.03, "b": 0.01, "c": 0.02}.items():
        rec.behaviours[name] = Behaviour(delay=delay)
    seen: list[events.Event] = []
    execute(diamond(), tools_of(rec), events=seen)
    order = [
        (type(e).__name__, e.step_id)
        for e in seen
        if isinstance(e, events.StepStarted | events.StepSucceeded)
    ]
    finished: set[str] = set()
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    for kind, step_id in order:
        if kind == "StepStarted":
            assert all(d in finished for d in deps[step_id]), (step_id, order)
        else:
            finished.add(step_id)


def test_eager_starts_a_step_while_an_unrelated_slow_step_runs() -> None:
    rec = Recorder()
    rec.behaviours["slow"] = Behaviour(delay=0.3)
    seen: list[events.Event] = []
    execute(plan(step("slow"), step("quick"), step("after", "quick")), tools_of(rec), events=seen)
    names = [(type(e).__name__, getattr(e, "step_id", "")) for e in seen]
    assert names.index(("StepStarted", "after")) < names.index(("StepSucceeded", "slow"))


def test_waves_mode_waits_for_the_whole_previous_wave() -> None:
    rec = Recorder()
    rec.behaviours["slow"] = Behaviour(delay=0.1)
    seen: list[events.Event] = []
    result = execute(
        plan(step("slow"), step("quick"), step("after", "quick")),
        tools_of(rec),
        events=seen,
        scheduling="waves",
    )
    names = [(type(e).__name__, getattr(e, "step_id", "")) for e in seen]
    assert names.index(("StepStarted", "after")) > names.index(("StepSucceeded", "slow"))
    assert result.ok


def test_waves_mode_skips_dependents_of_failures_and_finishes() -> None:
    rec = Recorder()
    rec.behaviours["a"] = Behaviour(always_fail=True)
    result = execute(
        plan(step("a"), step("x"), step("b", "a"), step("y", "x"), step("c", "b", "y")),
        tools_of(rec),
        scheduling="waves",
    )
    statuses = {k: s.status.value for k, s in result.steps.items()}
    assert statuses == {
        "a": "failed",
        "x": "succeeded",
        "b": "skipped",
        "y": "succeeded",
        "c": "skipped",
    }


def test_max_parallel_is_never_exceeded() -> None:
    rec = Recorder()
    for i in range(20):
        rec.behaviours[f"s{i}"] = Behaviour(delay=0.01)
    result = execute(plan(*(step(f"s{i}") for i in range(20))), tools_of(rec), max_parallel=3)
    assert rec.peak == 3
    assert result.peak_concurrency == 3
    assert result.ok


def test_tool_limit_does_not_block_other_tools() -> None:
    rec = Recorder()
    tools = {"narrow": rec.tool("narrow", max_concurrency=2), "wide": rec.tool("wide")}
    steps = [step(f"n{i}", tool="narrow") for i in range(6)]
    steps += [step(f"w{i}", tool="wide") for i in range(5)]
    for s in steps:
        rec.behaviours[s["step_id"]] = Behaviour(delay=0.05)
    result = execute(plan(*steps), tools, max_parallel=10)
    assert rec.peak_by_tool["narrow"] == 2
    assert rec.peak_by_tool["wide"] == 5
    assert result.peak_concurrency == 7
    assert result.ok


def test_deepest_chain_starts_first_when_slots_are_scarce() -> None:
    rec = Recorder()
    execute(
        plan(step("x"), step("y"), step("a"), step("b", "a"), step("c", "b")),
        tools_of(rec),
        max_parallel=1,
    )
    assert rec.started_ids()[0] == "a"


def test_retries_until_success_with_one_start_per_attempt() -> None:
    rec = Recorder()
    rec.behaviours["a"] = Behaviour(fail_attempts=2)
    seen: list[events.Event] = []
    result = execute(plan(step("a"), step("b", "a")), tools_of(rec), events=seen, retries=2)
    assert result.steps["a"].status is StepStatus.SUCCEEDED
    assert result.steps["a"].attempts == 3
    assert rec.starts == [("a", 1), ("a", 2), ("a", 3), ("b", 1)]
    retrying = [e for e in seen if isinstance(e, events.StepRetrying)]
    assert [e.attempt for e in retrying] == [1, 2]
    assert result.steps["a"].error is None


def test_retries_exhausted_fail_the_step() -> None:
    rec = Recorder()
    rec.behaviours["a"] = Behaviour(always_fail=True)
    result = execute(plan(step("a")), tools_of(rec), retries=1)
    assert result.steps["a"].status is StepStatus.FAILED
    assert result.steps["a"].attempts == 2
    assert result.steps["a"].error == "a failed on attempt 2"


def test_retry_settings_precedence_step_then_tool_then_config() -> None:
    rec = Recorder()
    for name in "xyz":
        rec.behaviours[name] = Behaviour(always_fail=True)
    tools = {"work": rec.tool("work", retries=2), "other": rec.tool("other")}
    result = execute(
        plan(step("x", retries=0), step("y"), step("z", tool="other")), tools, retries=1
    )
    assert [result.steps[n].attempts for n in "xyz"] == [1, 3, 2]


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    organized = organize(plan(step("a")), {"work": Recorder().tool()})
    settings = ExecutionSettings(retry_backoff_s=0.1, retry_backoff_max_s=0.3)
    executor = Executor(organized, {"work": Recorder().tool()}, settings, rng=random.Random(1))
    delays = [executor._backoff(n) for n in (1, 2, 3, 4)]
    assert 0.05 <= delays[0] <= 0.1
    assert 0.1 <= delays[1] <= 0.2
    assert 0.15 <= delays[2] <= 0.3  # capped at 0.3
    assert 0.15 <= delays[3] <= 0.3
    assert len({round(d, 6) for d in delays[2:]}) == 2  # jitter


def test_timeout_marks_timed_out_and_is_retried() -> None:
    rec = Recorder()
    rec.behaviours["hang"] = Behaviour(hang=True)
    result = execute(
        plan(step("hang", timeout_s=0.05), step("next", "hang")), tools_of(rec), retries=1
    )
    hang = result.steps["hang"]
    assert hang.status is StepStatus.TIMED_OUT
    assert hang.attempts == 2
    assert hang.error == "timed out after 0.05s"
    assert [how for s, _, how in rec.ends if s == "hang"] == ["cancelled", "cancelled"]
    assert result.steps["next"].status is StepStatus.SKIPPED


def test_timeout_precedence_step_then_tool_then_config() -> None:
    rec = Recorder()
    for name in "xyz":
        rec.behaviours[name] = Behaviour(hang=True)
    tools = {"work": rec.tool("work", timeout_s=0.02), "other": rec.tool("other")}
    result = execute(
        plan(step("x", timeout_s=0.01), step("y"), step("z", tool="other")), tools, timeout_s=0.03
    )
    assert [result.steps[n].error for n in "xyz"] == [
        f"timed out after {t}s" for t in ("0.01", "0.02", "0.03")
    ]


def test_continue_skips_transitive_dependents_and_finishes_the_rest() -> None:
    rec = Recorder()
    rec.behaviours["b"] = Behaviour(always_fail=True)
    rec.behaviours["e"] = Behaviour(delay=0.05)
    seen: list[events.Event] = []
    result = execute(
        plan(step("a"), step("b", "a"), step("c", "b"), step("d", "c", "a"), step("e")),
        tools_of(rec),
        events=seen,
    )
    statuses = {k: s.status for k, s in result.steps.items()}
    assert statuses == {
        "a": StepStatus.SUCCEEDED,
        "b": StepStatus.FAILED,
        "c": StepStatus.SKIPPED,
        "d": StepStatus.SKIPPED,
        "e": StepStatus.SUCCEEDED,
    }
    assert result.status is RunStatus.FAILED
    assert result.steps["d"].error == "skipped: dependency 'b' did not succeed"
    assert {e.step_id for e in seen if isinstance(e, events.StepSkipped)} == {"c", "d"}
    assert set(rec.started_ids()) == {"a", "b", "e"}


def test_fail_fast_cancels_running_and_pending_steps_at_once() -> None:
    rec = Recorder()
    rec.behaviours["boom"] = Behaviour(delay=0.02, always_fail=True)
    rec.behaviours["long"] = Behaviour(hang=True)
    result = execute(
        plan(step("boom"), step("long"), step("later", "long"), step("queued")),
        tools_of(rec),
        on_failure="fail_fast",
        max_parallel=2,
    )
    statuses = {k: s.status for k, s in result.steps.items()}
    assert statuses == {
        "boom": StepStatus.FAILED,
        "long": StepStatus.CANCELLED,
        "later": StepStatus.CANCELLED,
        "queued": StepStatus.CANCELLED,
    }
    assert result.status is RunStatus.FAILED
    assert ("long", 1, "cancelled") in rec.ends
    assert "queued" not in rec.started_ids()


def test_fail_fast_does_not_retry_after_the_stop() -> None:
    rec = Recorder()
    rec.behaviours["boom"] = Behaviour(always_fail=True)
    rec.behaviours["flaky"] = Behaviour(delay=0.01, always_fail=True)
    result = execute(
        plan(step("boom"), step("flaky", retries=5)),
        tools_of(rec),
        on_failure="fail_fast",
        retry_backoff_s=0.05,
    )
    assert result.steps["flaky"].attempts <= 1
    assert result.steps["flaky"].status in (StepStatus.CANCELLED, StepStatus.FAILED)


async def _interrupt_after(executor: Executor, seconds: float) -> Any:
    task = asyncio.ensure_future(executor.run())
    await asyncio.sleep(seconds)
    executor.interrupt()
    return await task


def test_interrupt_keeps_finished_work_and_cancels_the_rest() -> None:
    rec = Recorder()
    rec.behaviours["hang"] = Behaviour(hang=True)
    tools = tools_of(rec)
    organized = organize(plan(step("fast"), step("hang"), step("after", "hang")), tools)
    executor = Executor(organized, tools)
    result = asyncio.run(_interrupt_after(executor, 0.1))
    assert result.status is RunStatus.INTERRUPTED
    assert result.steps["fast"].output == "<fast>"
    assert result.steps["hang"].status is StepStatus.CANCELLED
    assert result.steps["after"].status is StepStatus.CANCELLED
    assert ("hang", 1, "cancelled") in rec.ends


def test_cancelling_the_run_task_cancels_steps_and_propagates() -> None:
    rec = Recorder()
    rec.behaviours["hang"] = Behaviour(hang=True)
    tools = tools_of(rec)
    executor = Executor(organize(plan(step("hang")), tools), tools)

    async def main() -> None:
        task = asyncio.ensure_future(executor.run())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert rec.ends == [("hang", 1, "cancelled")]


def test_unexpected_exceptions_become_failures() -> None:
    class Broken(Tool):
        async def run(self, call: ToolCall) -> Output:
            raise KeyError("oops")

    result = execute(plan(step("a")), {"work": Broken("work")})
    assert result.steps["a"].error == "KeyError: 'oops'"


def test_an_executor_runs_once() -> None:
    tools = tools_of(Recorder())
    executor = Executor(organize(plan(step("a")), tools), tools)
    asyncio.run(executor.run())
    with pytest.raises(RuntimeError, match="runs its plan once"):
        asyncio.run(executor.run())


def test_listener_errors_do_not_break_the_run_but_are_raised_after() -> None:
    tools = tools_of(Recorder())
    calls: list[str] = []

    def bad(event: events.Event) -> None:
        calls.append(type(event).__name__)
        raise ValueError("listener bug")

    executor = Executor(organize(plan(step("a"), step("b", "a")), tools), tools, bus=EventBus(bad))
    with pytest.raises(ValueError, match="listener bug"):
        asyncio.run(executor.run())
    assert calls[-1] == "RunFinished"


def test_event_sequence_of_a_simple_run() -> None:
    seen: list[events.Event] = []
    execute(plan(step("a"), step("b", "a")), tools_of(Recorder()), events=seen)
    assert [type(e).__name__ for e in seen] == [
        "RunStarted",
        "StepStarted",
        "StepSucceeded",
        "StepStarted",
        "StepSucceeded",
        "RunFinished",
    ]
    finished = seen[-1]
    assert isinstance(finished, events.RunFinished)
    assert finished.status == "succeeded"
    assert finished.peak_concurrency == 1


def test_summary_figures_are_consistent() -> None:
    rec = Recorder()
    for name, delay in {"a": 0.02, "b": 0.06, "c": 0.02, "d": 0.02}.items():
        rec.behaviours[name] = Behaviour(delay=delay)
    result = execute(diamond(), tools_of(rec))
    assert result.critical_path == ["a", "b", "d"]
    assert result.sum_s == pytest.approx(sum(s.duration_s for s in result.steps.values()))
    assert result.speedup == pytest.approx(result.sum_s / result.wall_s)
    assert result.efficiency is not None
    assert 0 < result.efficiency <= 1
    assert result.peak_concurrency == 2
    doc = result.to_json()
    assert set(doc) >= {"run_id", "status", "wall_s", "speedup", "critical_path_s", "steps"}
    assert set(doc["steps"]["a"]) >= {
        "status",
        "output",
        "error",
        "attempts",
        "started_at",
        "finished_at",
    }
    assert doc["steps"]["a"]["started_at"] <= doc["steps"]["a"]["finished_at"]


def test_default_params_merge_under_step_params() -> None:
    rec = Recorder()
    tools = {"work": rec.tool("work", params={"lang": "en", "tone": "dry"})}
    execute(plan(step("a", params={"lang": "fr"})), tools)
    assert dict(rec.calls[0].params) == {"lang": "fr", "tone": "dry"}


def test_an_empty_bus_passed_in_is_the_one_used() -> None:
    tools = tools_of(Recorder())
    bus = EventBus()
    executor = Executor(organize(plan(step("a")), tools), tools, bus=bus)
    seen: list[events.Event] = []
    bus.subscribe(seen.append)
    asyncio.run(executor.run())
    assert executor.bus is bus
    assert len(seen) == 4


def test_reprs_stay_short_on_large_plans() -> None:
    steps = [step("s0")] + [step(f"s{i}", f"s{i - 1}") for i in range(1, 3000)]
    tools = tools_of(Recorder())
    organized = organize(plan(*steps), tools)
    executor = Executor(organized, tools)
    result = asyncio.run(executor.run())
    assert repr(result).startswith("<RunResult ")
    assert len(repr(result)) < 100
    assert repr(organized) == "<OrganizedPlan steps=3000 waves=3000>"
    assert repr(executor._runs["s0"]) == "<step s0 succeeded attempt 1>"


def test_an_unexpected_error_while_rendering_ends_the_step_not_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(value: object, resolve: object) -> object:
        raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")

    monkeypatch.setattr(step_inputs, "render_value", broken)
    rec = Recorder()
    result = execute(plan(step("a", params={"p": "x"}), step("b")), {"work": rec.tool()})
    assert result.steps["a"].status is StepStatus.FAILED
    assert result.steps["a"].attempts == 1
    assert "cannot render the input: ValueError: Exceeds the limit" in (
        result.steps["a"].error or ""
    )
    assert result.steps["b"].status is StepStatus.SUCCEEDED


# ---------------------------------------------------------- stopping before the run starts


@pytest.mark.parametrize(
    ("stop", "status"),
    [
        (lambda ex: ex.interrupt(), RunStatus.INTERRUPTED),
        (lambda ex: ex.stop(RunStatus.CANCELLED), RunStatus.CANCELLED),
    ],
)
def test_stop_before_run_cancels_every_step(stop: Any, status: RunStatus) -> None:
    rec = Recorder()
    tools = {"work": rec.tool()}
    the_plan = plan(step("a"), step("b", "a"), step("c"))
    executor = Executor(organize(the_plan, tools), tools, ExecutionSettings())
    stop(executor)
    result = asyncio.run(asyncio.wait_for(executor.run(), 5))
    assert result.status is status
    assert {s.status for s in result.steps.values()} == {StepStatus.CANCELLED}
    assert rec.starts == []


# ------------------------------------------------------------------------ the event bus


def test_a_listener_error_does_not_poison_the_next_run() -> None:
    rec = Recorder()
    tools = {"work": rec.tool()}
    bus = EventBus()

    def broken(event: events.Event) -> None:
        raise RuntimeError("listener broke")

    unsubscribe = bus.subscribe(broken)
    first = Executor(organize(plan(step("a")), tools), tools, ExecutionSettings(), bus=bus)
    with pytest.raises(RuntimeError, match="listener broke"):
        asyncio.run(first.run())
    assert rec.ended_ok() == {"a"}  # the run finished before the error was raised
    unsubscribe()
    seen: list[events.Event] = []
    bus.subscribe(seen.append)
    second = Executor(organize(plan(step("b")), tools), tools, ExecutionSettings(), bus=bus)
    result = asyncio.run(second.run())
    assert result.ok
    assert isinstance(seen[-1], events.RunFinished)


def test_a_listener_unsubscribing_itself_does_not_hide_the_event_from_the_next() -> None:
    bus = EventBus()
    received: list[events.Event] = []

    def once(event: events.Event) -> None:
        unsubscribe()

    unsubscribe = bus.subscribe(once)
    bus.subscribe(received.append)
    first = events.StepSkipped("a", "b", 0.0)
    second = events.StepSkipped("c", "d", 1.0)
    bus.emit(first)
    bus.emit(second)
    assert received == [first, second]
