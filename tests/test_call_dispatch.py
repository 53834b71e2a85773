"""How the tool calls of running steps are started: the rules, and the cost of applying them.

Calls start oldest first; a caller lends its own slot to one call (and its tool's gate, for a
call to its own tool); otherwise a call needs its tool's gate and a global slot. The broker once
rescanned every waiting call on each wake (quadratic in a node's fan-out); one test counts its
work, which machine speed cannot change. The script's side of a fan-out
(``call_tools_parallel``) is tested last, with a fake channel.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import Recorder, make_broker

import node_runtime
from code_evolver.calls import CallBroker, ChildCall
from code_evolver.capacity import Capacity, Gate
from code_evolver.errors import StepTimeout
from code_evolver.result import StepStatus
from code_evolver.tools.base import Output, Tool, ToolCall
from node_runtime import ToolCallError, call_tools_parallel


class Held(Tool):
    """Runs until the test lets it end; logs the order in which calls start."""

    def __init__(self, name: str, log: list[str], **settings: Any) -> None:
        super().__init__(name, **settings)
        self.log = log
        self.release: dict[str, asyncio.Event] = {}

    async def run(self, call: ToolCall) -> Output:
        self.log.append(call.step_id)
        await self.release.setdefault(call.step_id, asyncio.Event()).wait()
        return call.input


class SharedHeld(Held):
    """A held tool whose gate is chained to a resource it shares with another (like LLMs)."""

    @property
    def resource(self) -> str | None:
        return "shared"

    @property
    def resource_capacity(self) -> int | None:
        return 2


async def settle() -> None:
    """Let every ready callback run: calls end, slots free, waiting calls start."""
    for _ in range(40):
        await asyncio.sleep(0)


def running(broker: CallBroker) -> list[ChildCall]:
    calls = [call for calls in broker.by_step.values() for call in calls]
    return [call for call in calls if call.status is StepStatus.RUNNING]


def finish(tools: dict[str, Tool], call_id: str) -> None:
    for tool in tools.values():
        if isinstance(tool, Held) and call_id in tool.release:
            tool.release[call_id].set()


def held_tools(log: list[str], **limits: int | None) -> dict[str, Tool]:
    return {name: Held(name, log, max_concurrency=limit) for name, limit in limits.items()}


def test_waiting_calls_start_oldest_first_among_those_that_can() -> None:
    log: list[str] = []
    tools = held_tools(log, one=1, many=None)
    broker = make_broker(tools, max_parallel=1)

    async def main() -> None:
        channel = broker.channel("s")
        tasks = [
            asyncio.ensure_future(channel.call(tool, tool))
            for tool in ("one", "one", "many", "one", "many")
        ]
        await settle()
        # s.1 takes the lent slot and the gate of "one"; s.2 waits for that gate; s.3 takes
        # the only global slot.
        assert log == ["s.1", "s.3"]
        for call_id in ("s.1", "s.3", "s.2", "s.5", "s.4"):
            finish(tools, call_id)
            await settle()
        assert await asyncio.gather(*tasks) == ["one", "one", "many", "one", "many"]

    asyncio.run(main())
    assert log == ["s.1", "s.3", "s.2", "s.5", "s.4"]


def test_without_a_global_slot_each_caller_runs_one_call_on_its_lent_slot() -> None:
    log: list[str] = []
    tools = held_tools(log, work=None)
    broker = make_broker(tools, max_parallel=0)

    async def main() -> None:
        a, b = broker.channel("a"), broker.channel("b")
        tasks = [asyncio.ensure_future(c.call("work", str(i))) for i in range(3) for c in (a, b)]
        await settle()
        assert sorted(log) == ["a.1", "b.1"]
        assert all(call.on_lent_slot for call in running(broker))
        assert not a.lent_slot_free
        assert not b.lent_slot_free
        for call_id in ("a.1", "b.1", "a.2", "b.2", "a.3", "b.3"):
            finish(tools, call_id)
            await settle()
            assert len(running(broker)) <= 2
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert sorted(log) == ["a.1", "a.2", "a.3", "b.1", "b.2", "b.3"]
    assert broker.capacity.peak == 2  # two ran at once, both on lent slots (none of their own)
    assert broker.capacity.running == 0
    assert broker.channel("x").lent_slot_free


def test_a_call_to_the_callers_own_tool_borrows_the_callers_gate() -> None:
    log: list[str] = []
    tools = held_tools(log, self=1)
    broker = make_broker(tools, max_parallel=4)

    async def main() -> None:
        other = broker.channel("other")  # a step of another tool, holding the gate of "self"
        holder = asyncio.ensure_future(other.call("self", "x"))
        await settle()
        assert log == ["other.1"]
        outsider = broker.channel("outsider", "elsewhere")
        kept_out = asyncio.ensure_future(outsider.call("self", "x"))
        recursive = broker.channel("rec", "self")  # a step of "self" calling itself
        first = asyncio.ensure_future(recursive.call("self", "x"))
        second = asyncio.ensure_future(recursive.call("self", "x"))
        await settle()
        assert log == ["other.1", "rec.1"]  # the gate is full, yet rec.1 runs on rec's own
        started = {call.call_id: call for call in running(broker)}
        assert started["rec.1"].on_lent_slot
        assert started["rec.1"].on_lent_gate
        assert broker.capacity.gates["self"].running == 1
        assert outsider.lent_slot_free  # another tool's caller cannot lend the gate
        finish(tools, "rec.1")
        await settle()
        # outsider.1 is older, but only rec's own calls may pass the full gate.
        assert log == ["other.1", "rec.1", "rec.2"]
        for call_id in ("rec.2", "other.1", "outsider.1"):
            finish(tools, call_id)
            await settle()
        await asyncio.gather(holder, kept_out, first, second)

    asyncio.run(main())
    assert log == ["other.1", "rec.1", "rec.2", "outsider.1"]
    assert broker.capacity.gates["self"].running == 0


def test_a_caller_whose_gate_is_full_keeps_its_slot_and_waits() -> None:
    log: list[str] = []
    tools = held_tools(log, self=1)
    broker = make_broker(tools, max_parallel=4)

    async def main() -> None:
        holder = asyncio.ensure_future(broker.channel("other").call("self", "x"))
        outsider = broker.channel("outsider", "elsewhere")
        waiting = asyncio.ensure_future(outsider.call("self", "x"))
        await settle()
        assert log == ["other.1"]
        assert outsider.lent_slot_free  # its call waits for the gate, not for a slot
        finish(tools, "other.1")
        await settle()
        assert log == ["other.1", "outsider.1"]
        assert not outsider.lent_slot_free
        finish(tools, "outsider.1")
        await asyncio.gather(holder, waiting)

    asyncio.run(main())
    assert broker.capacity.gates["self"].running == 0
    assert broker.capacity.running == 0


def test_gates_and_max_parallel_are_never_exceeded() -> None:
    rec = Recorder()
    tools = {
        "one": rec.tool("one", max_concurrency=1),
        "two": rec.tool("two", max_concurrency=2),
        "free": rec.tool("free"),
    }
    broker = make_broker(tools, max_parallel=3)
    names = list(tools)

    async def main() -> list[Output]:
        callers = [broker.channel(f"c{i}") for i in range(4)]
        return await asyncio.gather(
            *(c.call(names[i % 3], str(i)) for i in range(300) for c in callers)
        )

    outputs = asyncio.run(main())
    assert outputs == [f"<{i}>" for i in range(300) for _ in range(4)]
    # No caller here runs one of these tools itself, so no gate is ever lent.
    assert rec.peak_by_tool["one"] == 1
    assert rec.peak_by_tool["two"] == 2
    assert broker.capacity.running == 0
    assert broker.capacity.peak == rec.peak  # the peak counts calls on lent slots too
    assert rec.peak <= 3 + 4  # the global slots and one lent slot per caller
    assert broker.capacity.running == 0
    assert all(gate.running == 0 for gate in broker.capacity.gates.values())


def test_cancelled_waiting_calls_leave_the_queue_and_never_start() -> None:
    log: list[str] = []
    tools = held_tools(log, work=1)
    broker = make_broker(tools, max_parallel=2)

    async def main() -> None:
        channel = broker.channel("s")
        blocker = asyncio.ensure_future(channel.call("work", "x"))
        await settle()
        waiting = [asyncio.ensure_future(channel.call("work", str(i))) for i in range(1000)]
        timed = [asyncio.ensure_future(channel.call("work", "t", timeout_s=0.01)) for _ in "ab"]
        kept = asyncio.ensure_future(channel.call("work", "kept"))
        await settle()
        assert len(broker.pending) == 1003
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        for task in timed:
            with pytest.raises(StepTimeout):
                await task
        assert [call.call_id for call in broker.pending] == ["s.1004"]
        assert len(broker.queue) == 1
        assert broker.queue.entries <= 2 * 1 + 64  # the stale entries were dropped
        finish(tools, "s.1")
        await settle()
        finish(tools, "s.1004")
        assert list(await asyncio.gather(blocker, kept)) == ["x", "kept"]

    asyncio.run(main())
    assert log == ["s.1", "s.1004"]
    records = broker.records("s")
    assert sum(r.status is StepStatus.CANCELLED for r in records) == 1002
    assert all(r.attempts == 0 for r in records if r.status is StepStatus.CANCELLED)
    assert broker.pending == []
    assert broker.queue.entries == 0
    assert broker.active == 0


class ListBroker(CallBroker):
    """The dispatch this module replaced, kept as the reference: one pass over every waiting
    call, oldest first, starting each that its gate and a slot (or its caller's) allow."""

    def dispatch(self) -> None:
        for call in self.queue.calls():
            caller = call.caller
            lend_gate = caller.lent_slot_free and call.tool_name == caller.tool
            if not (lend_gate or self.capacity.gates[call.tool_name].free()):
                continue
            if caller.lent_slot_free:
                caller.lent_slot_free = False
                call.on_lent_slot = True
                call.on_lent_gate = lend_gate
            elif not self.capacity.slot_free():
                continue
            self.queue.discard(call)
            self._start(call)


CALLERS = (("a", ""), ("b", "one"), ("c", "x"), ("d", "two"))
"""Steps making calls, with their own tools (whose gates they lend to calls of that tool)."""

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("call"), st.sampled_from(CALLERS), st.sampled_from(["one", "two", "x", "y"])
        ),
        st.tuples(st.just("finish"), st.integers(0, 50)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(operations, st.integers(0, 3))
def test_the_queue_starts_exactly_what_one_pass_over_every_call_would(
    ops: list[tuple[Any, ...]], max_parallel: int
) -> None:
    """Same calls, same order of events: both schedulers run the same calls at every moment."""

    def tools() -> dict[str, Tool]:
        log: list[str] = []
        return {
            "one": Held("one", log, max_concurrency=1),
            "two": Held("two", log, max_concurrency=2),
            "x": SharedHeld("x", log),
            "y": SharedHeld("y", log, max_concurrency=1),
        }

    pairs = [(tools(), kind) for kind in (CallBroker, ListBroker)]
    brokers = [(t, make_broker(t, max_parallel, kind)) for t, kind in pairs]

    async def main() -> None:
        channels = [{s: b.channel(s, tool) for s, tool in CALLERS} for _, b in brokers]
        tasks: list[dict[str, asyncio.Future[Output]]] = [{}, {}]
        for op in ops:
            for side, (tools_, broker) in enumerate(brokers):
                apply(op, tools_, broker, channels[side], tasks[side])
            await settle()
            states = [state(broker) for _, broker in brokers]
            assert states[0] == states[1], op
            for _, broker in brokers:
                within_limits(broker)
        for side, (_, broker) in enumerate(brokers):
            broker.stop()
            await asyncio.gather(*tasks[side].values(), return_exceptions=True)
            assert broker.active == 0

    asyncio.run(main())


def apply(
    op: tuple[Any, ...],
    tools: dict[str, Tool],
    broker: CallBroker,
    channels: dict[str, Any],
    tasks: dict[str, asyncio.Future[Output]],
) -> None:
    if op[0] == "call":
        (step_id, _), tool = op[1], op[2]
        call_id = f"{step_id}.{len(broker.by_step.get(step_id, ())) + 1}"  # settled before
        tasks[call_id] = asyncio.ensure_future(channels[step_id].call(tool, call_id))
        return
    if op[0] == "finish":
        active = sorted(call.call_id for call in running(broker))
        if active:
            finish(tools, active[op[1] % len(active)])
        return
    waiting = [call.call_id for call in broker.pending]
    if waiting:
        tasks[waiting[op[1] % len(waiting)]].cancel()


def state(broker: CallBroker) -> tuple[list[str], list[tuple[str, bool, bool]]]:
    started = sorted((c.call_id, c.on_lent_slot, c.on_lent_gate) for c in running(broker))
    return [call.call_id for call in broker.pending], started


def within_limits(broker: CallBroker) -> None:
    capacity = broker.capacity
    assert capacity.running <= capacity.max_parallel
    for gate in capacity.gates.values():
        assert gate.running <= gate.limit
        assert gate.shared is None or gate.shared.running <= gate.shared.limit


def count_work(monkeypatch: pytest.MonkeyPatch, calls: int) -> tuple[int, int]:
    """Gate and slot checks, and queue heads looked at, for one step fanning out ``calls``."""
    checks = [0]
    free, slot_free = Gate.free, Capacity.slot_free

    def counted(method: Callable[[Any], bool]) -> Callable[[Any], bool]:
        def check(self: Any) -> bool:
            checks[0] += 1
            return method(self)

        return check

    monkeypatch.setattr(Gate, "free", counted(free))
    monkeypatch.setattr(Capacity, "slot_free", counted(slot_free))
    rec = Recorder()
    tools = {"noop": rec.tool("noop"), "gated": rec.tool("gated", max_concurrency=2)}
    broker = make_broker(tools, max_parallel=4)

    async def main() -> list[Output]:
        channel = broker.channel("node")
        names = ("noop", "noop", "gated")
        return await asyncio.gather(*(channel.call(names[i % 3], "") for i in range(calls)))

    assert len(asyncio.run(main())) == calls
    monkeypatch.undo()
    return checks[0], broker.queue.steps


def test_dispatch_work_grows_linearly_with_the_calls_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small_checks, small_steps = count_work(monkeypatch, 2000)
    large_checks, large_steps = count_work(monkeypatch, 8000)
    # 4x the calls: linear work is 4x; the rescanning broker did 16x (millions of checks).
    assert large_checks / small_checks <= 5, (small_checks, large_checks)
    assert large_steps / small_steps <= 5, (small_steps, large_steps)
    assert large_checks <= 20 * 8000


class FakeClient:
    """Stands in for the runtime channel: futures the test completes, in any order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Future[Any]]] = []
        self.most_in_flight = 0

    def submit(
        self, tool: str, prompt: str, params: dict[str, Any], timeout_s: float | None
    ) -> Future[Any]:
        future: Future[Any] = Future()
        self.sent.append((prompt, future))
        in_flight = sum(not f.done() for _, f in self.sent)
        self.most_in_flight = max(self.most_in_flight, in_flight)
        return future


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    fake = FakeClient()
    monkeypatch.setattr(node_runtime, "_client", fake)
    monkeypatch.setattr(node_runtime, "_SAFETY_S", 0.0)
    return fake


def answer_in_reverse(client: FakeClient, count: int, fail: str = "") -> None:
    """From another thread, as the channel's reader does: answer once ``count`` were sent."""

    def serve() -> None:
        answered = 0
        while answered < count:
            waiting = [(p, f) for p, f in client.sent if not f.done()]
            if not waiting or (len(client.sent) < count and len(waiting) < 3):
                time.sleep(0.001)
                continue
            prompt, future = waiting[-1]
            if prompt == fail:
                future.set_exception(ToolCallError(f"work: {prompt} broke", tool="work"))
            else:
                future.set_result(prompt.upper())
            answered += 1

    threading.Thread(target=serve, daemon=True).start()


def test_a_script_gets_its_parallel_results_in_input_order(client: FakeClient) -> None:
    prompts = [f"p{i}" for i in range(50)]
    answer_in_reverse(client, 50)
    assert call_tools_parallel([("work", p) for p in prompts], max_workers=3) == [
        p.upper() for p in prompts
    ]
    assert client.most_in_flight == 3


def test_a_script_gives_up_on_calls_the_workflow_never_answers(client: FakeClient) -> None:
    outcomes = call_tools_parallel(
        [("work", "a"), ("work", "b")], timeout=0.05, return_exceptions=True
    )
    assert [str(error) for error in outcomes] == [
        "call 0 ('work') timed out after 0.05s",
        "call 1 ('work') timed out after 0.05s",
    ]
    assert all(future.cancelled() for _, future in client.sent)  # the workflow is told


def test_a_scripts_first_failed_call_cancels_the_rest(client: FakeClient) -> None:
    answer_in_reverse(client, 1, fail="p9")
    with pytest.raises(ToolCallError, match=r"call 9 .*p9 broke"):
        call_tools_parallel([("work", f"p{i}") for i in range(10)])
    assert [f.cancelled() for _, f in client.sent] == [True] * 9 + [False]
