"""node_runtime edge cases found in review: deadlines, cancellation, recursion, forks, limits."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support import Behaviour, Recorder, make_broker, wait_until_gone

import code_evolver
from code_evolver import events
from code_evolver.calls import CallBroker
from code_evolver.display.live import LiveView
from code_evolver.errors import StepTimeout, ToolFailed, ToolNotFound
from code_evolver.events import EventBus
from code_evolver.organizer import organize
from code_evolver.plan import Plan
from code_evolver.result import StepStatus
from code_evolver.tools.base import Output, Tool, ToolCall
from node_runtime import ToolCallError
from node_runtime.protocol import ENV_FD, ENV_TOKEN

NODES = Path(__file__).resolve().parent / "nodes"
PYCMD = NODES / "python_command.py"


def broker_for(tools: dict[str, Tool], **settings: Any) -> CallBroker:
    return make_broker(tools, settings.pop("max_parallel", 4), backoff_s=0.01, **settings)


class SwallowsCancel(Tool):
    """Turns its cancellation into an ordinary failure, which invites a retry."""

    async def run(self, call: ToolCall) -> Output:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ToolFailed("interrupted") from None
        return ""


def test_no_retry_is_scheduled_after_the_caller_ended() -> None:
    tools: dict[str, Tool] = {"swallow": SwallowsCancel("swallow", retries=3)}
    broker = broker_for(tools)

    async def main() -> None:
        channel = broker.channel("s")
        task = asyncio.ensure_future(channel.call("swallow", "x"))
        await asyncio.sleep(0.05)
        channel.close()
        with pytest.raises(Exception, match="interrupted"):
            await task
        await asyncio.sleep(0.1)

    asyncio.run(main())
    assert broker.active == 0
    assert broker.pending == []
    assert broker.capacity.running == 0
    assert broker.records("s")[0].attempts == 1


def test_a_deadline_counts_the_time_spent_waiting_in_the_queue() -> None:
    rec = Recorder()
    rec.behaviours["s.1"] = Behaviour(hang=True)
    tools: dict[str, Tool] = {"work": rec.tool("work", max_concurrency=1)}
    broker = broker_for(tools)

    async def main() -> float:
        channel = broker.channel("s")
        blocker = asyncio.ensure_future(channel.call("work", "busy"))
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        with pytest.raises(StepTimeout, match=r"timed out after 0\.2s"):
            await channel.call("work", "queued", timeout_s=0.2)
        took = time.perf_counter() - started
        channel.close()
        await asyncio.gather(blocker, return_exceptions=True)
        return took

    took = asyncio.run(main())
    assert took < 2
    record = broker.records("s")[1]
    assert record.status is StepStatus.CANCELLED
    assert "caller's deadline" in (record.error or "")
    assert broker.capacity.gates["work"].running == 0


def test_a_non_json_output_of_a_called_tool_is_a_failed_call() -> None:
    class Weird(Tool):
        async def run(self, call: ToolCall) -> Output:
            return {"x": float("nan")}

    broker = broker_for({"weird": Weird("weird")})

    async def main() -> None:
        with pytest.raises(ToolFailed, match="not JSON"):
            await broker.channel("s").call("weird", "x")

    asyncio.run(main())


def test_a_called_tool_is_prepared_and_its_shared_capacity_reread() -> None:
    class Backend(Tool):
        """Capacity 4 until prepared (as before an LLM backend is chosen), then 1."""

        prepared = False
        running = peak = 0

        @property
        def resource(self) -> str | None:
            return "backend"

        @property
        def resource_capacity(self) -> int | None:
            return 1 if Backend.prepared else 4

        async def prepare(self) -> None:
            Backend.prepared = True

        async def run(self, call: ToolCall) -> Output:
            Backend.running += 1
            Backend.peak = max(Backend.peak, Backend.running)
            await asyncio.sleep(0.02)
            Backend.running -= 1
            return call.input

    broker = broker_for({"llm": Backend("llm")})

    async def main() -> None:
        channel = broker.channel("s")
        await asyncio.gather(*(channel.call("llm", str(i)) for i in range(4)))

    asyncio.run(main())
    assert Backend.peak == 1


def test_call_events_count_each_attempt_and_the_live_view_stays_right() -> None:
    rec = Recorder()
    rec.behaviours["s.1"] = Behaviour(fail_attempts=2)
    seen: list[events.Event] = []
    broker = broker_for({"work": rec.tool("work", retries=2)})
    broker.bus = EventBus(seen.append)

    async def main() -> None:
        await broker.channel("s").call("work", "x")

    asyncio.run(main())
    kinds = [(type(e).__name__, getattr(e, "status", "")) for e in seen]
    assert kinds == [
        ("CallStarted", ""),
        ("CallFinished", "retrying"),
        ("CallStarted", ""),
        ("CallFinished", "retrying"),
        ("CallStarted", ""),
        ("CallFinished", "succeeded"),
    ]
    organized = organize(Plan.from_data({"steps": [{"step_id": "s", "tool": "t", "input": ""}]}))
    from rich.console import Console

    view = LiveView(organized, Console(width=100))
    for event in seen:
        view(event)
    row = view.rows["s"]
    assert (len(row.calls_running), row.calls_done, row.calls_failed) == (0, 1, 0)


# ------------------------------------------------------------------------- real node processes


def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "execution: {max_parallel: 8}\n"
        "tools:\n"
        f"  rec: {{kind: node, script: {NODES / 'recurse.py'}, max_concurrency: 1}}\n"
        f"  forks: {{kind: node, script: {NODES / 'forks.py'}}}\n"
        f"  grandchild: {{kind: node, script: {NODES / 'grandchild.py'}}}\n"
        f"  big: {{kind: node, script: {NODES / 'big_call.py'}}}\n"
        f"  fan: {{kind: node, script: {NODES / 'fan_out.py'}}}\n"
        f"  envpy: {{kind: command, command: [/usr/bin/env, {sys.executable}, {PYCMD}],"
        " runtime: true}\n"
        f"  noenv: {{kind: command, command: [/usr/bin/env, {sys.executable}, {PYCMD}]}}\n"
    )
    return path


def run(tmp_path: Path, tool: str, rec: Recorder | None = None, **params: Any) -> Any:
    tools = {"work": (rec or Recorder()).tool("work")}
    return code_evolver.run(
        {"steps": [{"step_id": "a", "tool": tool, "input": "x", "params": params}]},
        config=config(tmp_path),
        tools=tools,
    )


@pytest.mark.integration
@pytest.mark.parametrize("depth", [1, 2])
def test_a_node_calling_its_own_tool_does_not_deadlock(tmp_path: Path, depth: int) -> None:
    result = run(tmp_path, "rec", depth=depth)
    assert result.ok, result.steps["a"].error
    assert result.steps["a"].output == "bottom:x"
    calls = result.steps["a"].calls
    assert len(calls) == depth
    if depth == 2:
        assert calls[1].parent_call == calls[0].call_id
    assert all(c.step_attempt == 1 for c in calls)


@pytest.mark.integration
def test_a_forked_child_is_refused_and_the_parent_goes_on(tmp_path: Path) -> None:
    result = run(tmp_path, "forks")
    output = result.steps["a"].output
    assert isinstance(output, dict), result.steps["a"].error
    assert output["first"] == "<x>"
    assert output["after"] == "<again>"
    assert output["child"].startswith("ChannelClosed: ")
    assert "forked child" in output["child"]


@pytest.mark.integration
def test_a_subprocess_of_the_script_inherits_no_channel(tmp_path: Path) -> None:
    output = run(tmp_path, "grandchild").steps["a"].output
    assert output == {
        "inherited": False,
        "child": output["child"],
        "shell_sees_channel": "closed",
    }
    assert output["child"] != "called"


@pytest.mark.integration
def test_an_oversized_call_fails_alone(tmp_path: Path) -> None:
    output = run(tmp_path, "big").steps["a"].output
    assert "too large" in output["big"]
    assert output["small"] == "<small>"


@pytest.mark.integration
def test_the_first_failure_cancels_the_calls_still_in_flight(tmp_path: Path) -> None:
    rec = Recorder()
    rec.behaviours["a.1"] = Behaviour(always_fail=True, delay=0.05)
    for i in range(2, 5):
        rec.behaviours[f"a.{i}"] = Behaviour(hang=True)
    result = run(tmp_path, "fan", rec, n=4)
    assert result.steps["a"].status is StepStatus.FAILED
    statuses = [c.status for c in result.steps["a"].calls]
    assert statuses[0] is StepStatus.FAILED
    assert set(statuses[1:]) == {StepStatus.CANCELLED}


@pytest.mark.integration
def test_a_command_gets_the_channel_when_it_asks_for_it(tmp_path: Path) -> None:
    rec = Recorder()
    result = code_evolver.run(
        {
            "steps": [
                {"step_id": "a", "tool": "envpy", "input": "hi"},
                {"step_id": "b", "tool": "noenv", "input": "hi"},
            ]
        },
        config=config(tmp_path),
        tools={"work": rec.tool("work")},
    )
    assert result.steps["a"].output == "<hi>"  # runtime: true
    assert result.steps["b"].status is StepStatus.FAILED  # no channel: it ran on its own
    assert [c.input for c in rec.calls] == ["hi"]


@pytest.mark.integration
def test_standalone_exit_leaves_no_process_behind(tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    (tmp_path / "config.yaml").write_text(
        "tools:\n"
        "  sleeper:\n"
        "    kind: command\n"
        "    command: [python3, -c, \"import os, sys, time; open(sys.argv[1], 'w')"
        f".write(str(os.getpid())); time.sleep(60)\", '{pidfile}']\n"
        "  broken: {kind: command, command: [python3, -c, 'import time; time.sleep(0.5); exit(3)']}"
        "\n"
    )
    script = (
        "from node_runtime import call_tools_parallel\n"
        "call_tools_parallel([('sleeper', ''), ('broken', '')])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (ENV_FD, ENV_TOKEN)}
    env["CODE_EVOLVER_CONFIG"] = str(tmp_path / "config.yaml")
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "ToolCallError" in proc.stderr
    assert pidfile.read_text()  # it ran
    assert wait_until_gone(str(pidfile)) == []


@pytest.mark.integration
def test_standalone_config_errors_are_tool_call_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_FD, ENV_TOKEN)}
    env["CODE_EVOLVER_CONFIG"] = str(tmp_path / "missing.yaml")
    script = (
        "from node_runtime import ToolCallError, call_tool\n"
        "try:\n    call_tool('x', 'y')\nexcept ToolCallError as e:\n    print(e.kind)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout.strip() == "ConfigError", proc.stderr


def test_invalid_batch_options() -> None:
    from node_runtime import call_tools_parallel

    with pytest.raises(ValueError, match="timeout must be positive"):
        call_tools_parallel([("t", "p")], timeout=0)
    with pytest.raises(ValueError, match="max_workers"):
        call_tools_parallel([("t", "p")], max_workers=0)


def test_records_carry_attempt_and_parent() -> None:
    broker = broker_for({"work": Recorder().tool("work")})

    async def main() -> None:
        await broker.channel("s", attempt=2).call("work", "x")

    asyncio.run(main())
    doc = broker.records("s")[0].to_json()
    assert (doc["step_attempt"], doc["parent_call"]) == (2, None)
    assert json.dumps(doc)


def test_a_refusal_wins_over_the_hang_up_that_follows_it() -> None:
    """The workflow refuses and closes before the script's call is sent: the script must report
    the refusal, not "the workflow is gone" (the race that failed half the runs)."""
    from node_runtime._brokered import BrokeredClient
    from node_runtime.protocol import encode

    host, script = socket.socketpair()
    host.sendall(encode({"refused": "this channel belongs to another run or step"}))
    host.close()
    client = BrokeredClient(os.dup(script.fileno()), "a-stolen-guess")
    script.close()
    future = client.submit("work", "x", {}, None)
    with pytest.raises(ToolCallError, match="refused the channel") as info:
        future.result(timeout=5)
    assert info.value.kind == "ChannelClosed"
    client.close()


def test_calls_refused_before_they_start_are_in_the_record_too() -> None:
    seen: list[events.Event] = []
    broker = broker_for({"work": Recorder().tool("work")})
    broker.bus.subscribe(seen.append)

    async def main() -> None:
        channel = broker.channel("s")
        await channel.call("work", "one")
        with pytest.raises(ToolNotFound, match="unknown tool 'wrok' \\(did you mean 'work'\\?\\)"):
            await channel.call("wrok", "two")
        with pytest.raises(StepTimeout):
            await channel.call("work", "three", timeout_s=0)
        await channel.call("work", "four")

    asyncio.run(main())
    records = [record.to_json() for record in broker.records("s")]
    assert [(r["call_id"], r["tool"], r["status"]) for r in records] == [
        ("s.1", "work", "succeeded"),
        ("s.2", "wrok", "failed"),
        ("s.3", "work", "timed_out"),
        ("s.4", "work", "succeeded"),
    ]
    assert "unknown tool 'wrok'" in records[1]["error"]
    assert records[1]["attempts"] == 0
    finished = [e.status for e in seen if isinstance(e, events.CallFinished)]
    assert finished == ["succeeded", "failed", "timed_out", "succeeded"]
    assert broker.active == 0


class Recursive(Tool):
    """Calls itself through its channel until ``params.depth`` reaches 0 (a node would do it
    with ``call_tool``)."""

    async def run(self, call: ToolCall) -> Output:
        depth = int(call.params.get("depth", 0))
        if depth <= 0:
            return "bottom"
        assert call.calls is not None
        return await call.calls.call(self.name, call.input, {"depth": depth - 1})


@pytest.mark.parametrize(("depth", "ok"), [(4, True), (9, False)])
def test_calls_may_nest_only_as_deep_as_max_call_depth(depth: int, ok: bool) -> None:
    result = code_evolver.run(
        {"steps": [{"step_id": "a", "tool": "rec", "input": "x", "params": {"depth": depth}}]},
        tools={"rec": Recursive("rec")},
        max_call_depth=4,
    )
    assert result.ok is ok
    calls = result.steps["a"].calls
    if ok:
        assert result.steps["a"].output == "bottom"
        assert len(calls) == 4
    else:
        assert len(calls) == 5  # four that ran, the fifth refused
        assert calls[-1].status is StepStatus.FAILED
        assert "calls nested 5 deep; execution.max_call_depth allows 4" in (calls[-1].error or "")
        assert "max_call_depth" in (result.steps["a"].error or "")
