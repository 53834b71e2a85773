"""Property tests: random DAGs, random failures, limits and policies; the invariants always hold."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import Behaviour, Recorder, plan, step

from code_evolver import events
from code_evolver.config import ExecutionSettings
from code_evolver.events import EventBus
from code_evolver.executor import Executor
from code_evolver.organizer import organize
from code_evolver.result import RunResult, RunStatus, StepStatus


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=14))
    deps = {
        i: sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)
    }
    behaviours = {
        i: Behaviour(
            delay=draw(st.sampled_from([0, 0, 0.001, 0.003])),
            fail_attempts=draw(st.sampled_from([0, 0, 0, 1, 2])),
            always_fail=draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans()),
        )
        for i in range(n)
    }
    return {
        "n": n,
        "deps": deps,
        "behaviours": behaviours,
        "tool_of": {i: draw(st.sampled_from(["t0", "t1", "t2"])) for i in range(n)},
        "limits": {t: draw(st.sampled_from([None, 1, 2])) for t in ("t0", "t1", "t2")},
        "max_parallel": draw(st.integers(1, 6)),
        "retries": draw(st.integers(0, 2)),
        "scheduling": draw(st.sampled_from(["eager", "waves"])),
        "on_failure": draw(st.sampled_from(["continue", "fail_fast"])),
    }


def run_scenario(sc: dict[str, Any]) -> tuple[RunResult, Recorder, list[events.Event]]:
    rec = Recorder()
    tools = {t: rec.tool(t, max_concurrency=limit) for t, limit in sc["limits"].items()}
    steps = [
        step(f"s{i}", *(f"s{d}" for d in sc["deps"][i]), tool=sc["tool_of"][i])
        for i in range(sc["n"])
    ]
    rec.behaviours = {f"s{i}": b for i, b in sc["behaviours"].items()}
    seen: list[events.Event] = []
    executor = Executor(
        organize(plan(*steps), tools),
        tools,
        ExecutionSettings(
            max_parallel=sc["max_parallel"],
            retries=sc["retries"],
            scheduling=sc["scheduling"],
            on_failure=sc["on_failure"],
            retry_backoff_s=0.001,
            retry_backoff_max_s=0.002,
        ),
        bus=EventBus(seen.append),
    )

    async def main() -> RunResult:
        return await asyncio.wait_for(executor.run(), timeout=3)  # a hang fails loudly

    return asyncio.run(main()), rec, seen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_invariants_hold_on_random_dags(sc: dict[str, Any]) -> None:
    result, rec, seen = run_scenario(sc)
    deps = {f"s{i}": [f"s{d}" for d in ds] for i, ds in sc["deps"].items()}

    # Every step ends in exactly one final status.
    assert all(s.status.is_final for s in result.steps.values())

    # A step starts only after all its dependencies succeeded; never twice at once.
    succeeded: set[str] = set()
    running: set[str] = set()
    for event in seen:
        if isinstance(event, events.StepStarted):
            assert all(d in succeeded for d in deps[event.step_id])
            assert event.step_id not in running
            running.add(event.step_id)
        elif isinstance(event, events.StepSucceeded | events.StepFailed | events.StepRetrying):
            running.discard(event.step_id)
            if isinstance(event, events.StepSucceeded):
                succeeded.add(event.step_id)
        elif isinstance(event, events.StepCancelled):
            running.discard(event.step_id)

    # Exactly one tool start per attempt.
    for step_id, record in result.steps.items():
        assert rec.started_ids().count(step_id) == record.attempts
        assert record.attempts <= 1 + sc["retries"]

    # Limits hold.
    assert rec.peak <= sc["max_parallel"]
    assert result.peak_concurrency <= sc["max_parallel"]
    for tool, limit in sc["limits"].items():
        if limit is not None:
            assert rec.peak_by_tool[tool] <= limit

    # Outcomes follow the policy.
    for i in range(sc["n"]):
        step_id = f"s{i}"
        record = result.steps[step_id]
        behaviour = sc["behaviours"][i]
        can_succeed = not behaviour.always_fail and behaviour.fail_attempts <= sc["retries"]
        deps_ok = all(result.steps[d].ok for d in deps[step_id])
        if sc["on_failure"] == "continue":
            if not deps_ok:
                assert record.status is StepStatus.SKIPPED
            else:
                expected = StepStatus.SUCCEEDED if can_succeed else StepStatus.FAILED
                assert record.status is expected
        elif record.status is StepStatus.SKIPPED:
            raise AssertionError("fail_fast cancels instead of skipping")
        if record.ok:
            expected_output = "+".join(str(result.outputs[d]) for d in deps[step_id]) or step_id
            assert record.output == f"<{expected_output}>"

    all_ok = all(s.ok for s in result.steps.values())
    assert (result.status is RunStatus.SUCCEEDED) == all_ok
