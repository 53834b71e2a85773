"""Helpers shared by the tests: plan shorthand, an instrumented tool, one tool call run alone."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from code_evolver.calls import CallBroker
from code_evolver.capacity import Capacity
from code_evolver.config import Config, ExecutionSettings, load_config
from code_evolver.errors import ToolFailed
from code_evolver.events import Event, EventBus
from code_evolver.executor import Executor
from code_evolver.history import store
from code_evolver.history.records import RunRecord
from code_evolver.llm.base import Request
from code_evolver.organizer import organize
from code_evolver.plan import Plan
from code_evolver.result import RunResult
from code_evolver.session import Session
from code_evolver.tools.base import Output, Tool, ToolCall

REPO = Path(__file__).resolve().parent.parent


def step(
    step_id: str, *deps: str, tool: str = "work", input: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A step dict; the input defaults to the dependencies' outputs joined by '+'."""
    text = input if input is not None else "+".join(f"{{{d}}}" for d in deps) or step_id
    return {"step_id": step_id, "tool": tool, "input": text, "depends_on": list(deps), **fields}


def plan(*steps: dict[str, Any], request: str = "") -> Plan:
    return Plan.from_data({"request": request, "steps": list(steps)})


@dataclass
class Behaviour:
    """What the instrumented tool does for one step: sleep, fail the first N attempts, hang."""

    delay: float = 0.0
    fail_attempts: int = 0
    always_fail: bool = False
    hang: bool = False
    output: Output | None = None


@dataclass
class Recorder:
    """Shared log of every attempt of every instrumented tool, with concurrency tracking."""

    starts: list[tuple[str, int]] = field(default_factory=list)
    ends: list[tuple[str, int, str]] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    running: int = 0
    peak: int = 0
    running_by_tool: Counter[str] = field(default_factory=Counter)
    peak_by_tool: Counter[str] = field(default_factory=Counter)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)

    def tool(self, name: str = "work", **settings: Any) -> Tool:
        return RecordingTool(name, self, **settings)

    def started_ids(self) -> list[str]:
        return [s for s, _ in self.starts]

    def ended_ok(self) -> set[str]:
        return {s for s, _, how in self.ends if how == "ok"}


class RecordingTool(Tool):
    kind = "test"

    def __init__(self, name: str, recorder: Recorder, **settings: Any) -> None:
        super().__init__(name, **settings)
        self.recorder = recorder

    async def run(self, call: ToolCall) -> Output:
        rec = self.recorder
        rec.calls.append(call)
        rec.starts.append((call.step_id, call.attempt))
        rec.running += 1
        rec.running_by_tool[self.name] += 1
        rec.peak = max(rec.peak, rec.running)
        rec.peak_by_tool[self.name] = max(
            rec.peak_by_tool[self.name], rec.running_by_tool[self.name]
        )
        how = "ok"
        behaviour = rec.behaviours.get(call.step_id, Behaviour())
        try:
            if behaviour.hang:
                await asyncio.Event().wait()
            await asyncio.sleep(behaviour.delay)
            if behaviour.always_fail or call.attempt <= behaviour.fail_attempts:
                how = "fail"
                raise ToolFailed(f"{call.step_id} failed on attempt {call.attempt}")
            return behaviour.output if behaviour.output is not None else f"<{call.input}>"
        except asyncio.CancelledError:
            how = "cancelled"
            raise
        finally:
            rec.running -= 1
            rec.running_by_tool[self.name] -= 1
            rec.ends.append((call.step_id, call.attempt, how))


def execute(
    the_plan: Plan,
    tools: Mapping[str, Tool],
    *,
    events: list[Event] | None = None,
    **settings: Any,
) -> RunResult:
    """Organize and run a plan with fast retries unless told otherwise."""
    settings.setdefault("retry_backoff_s", 0.001)
    organized = organize(the_plan, tools)
    bus = EventBus(events.append) if events is not None else EventBus()
    executor = Executor(organized, tools, ExecutionSettings(**settings), bus=bus)
    return asyncio.run(executor.run())


def run_tool(tool: Tool, text: str = "", **params: Any) -> Output:
    """One call of ``tool`` run to its end outside any plan, as step ``s1``."""
    return asyncio.run(tool.run(ToolCall(text, params, "s1")))


def echo_model(request: Request) -> str:
    """A scripted model for tool calls: says what it was asked, recognisably."""
    prompt = request.messages[-1]["content"]
    if prompt.startswith("Translate the following text into "):
        language = prompt.split("into ", 1)[1].split(".", 1)[0]
        return f"[{language}] " + prompt.rsplit("\n\n", 1)[-1]
    if prompt.startswith("Summarize"):
        return "summary of " + prompt.rsplit("\n\n", 1)[-1][:20]
    return f"reply to: {prompt}"


def make_broker(
    tools: Mapping[str, Tool],
    max_parallel: int = 4,
    broker_type: type[CallBroker] = CallBroker,
    *,
    backoff_s: float = 0.0,
    **settings: Any,
) -> CallBroker:
    """A call broker on its own, as a run would make it, dispatching on every wake."""
    capacity = Capacity(max_parallel)
    capacity.open(tools)
    broker: CallBroker = broker_type(
        tools,
        ExecutionSettings(**settings),
        capacity,
        EventBus(),
        time.perf_counter,
        lambda attempt: backoff_s,
        lambda: broker.dispatch(),
    )
    return broker


def processes_with(marker: str) -> list[int]:
    """Pids (as this process sees them) of live processes whose command line contains
    ``marker``: how tests find a step's processes, which may live in a pid namespace of their
    own where the pid they would report is not ours."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if needle in cmdline and state != "Z":
            found.append(int(entry))
    return found


def wait_until_gone(marker: str, seconds: float = 5.0) -> list[int]:
    """The processes with ``marker`` still alive after waiting up to ``seconds`` for them."""
    deadline = time.monotonic() + seconds
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


# ---------------------------------------------------------------- run history


def run_recorded(
    the_plan: Plan,
    tools: Mapping[str, Callable[..., Any]],
    cfg: Config | None = None,
    input_text: str | None = None,
) -> RunResult:
    """Run ``the_plan`` in a session of its own (the repository's config by default), which
    records it in the run history."""

    async def main() -> RunResult:
        session = Session(cfg or load_config(REPO / "config.yaml"), tools=tools)
        try:
            return await session.run(organize(the_plan, session.registry), input_text=input_text)
        finally:
            await session.close()

    return asyncio.run(main())


def stored(run_id: str) -> RunRecord:
    db = store.connect()
    try:
        return store.find_run(db, run_id)
    finally:
        db.close()


def newest() -> RunRecord | None:
    db = store.connect()
    try:
        runs = store.list_runs(db, limit=1)
        return store.find_run(db, runs[0].run_id) if runs else None
    finally:
        db.close()


def write_plan(
    tmp_path: Path, request: str = "shout twice", steps: list[tuple[str, str, str]] | None = None
) -> Path:
    """A plan file of (step id, tool, input) steps; two template steps by default."""
    given = steps or [("a", "template", "hello"), ("b", "template", "{a} again")]
    path = tmp_path / "plan.json"
    path.write_text(
        json.dumps(
            {
                "request": request,
                "steps": [{"step_id": s, "tool": t, "input": text} for s, t, text in given],
            }
        )
    )
    return path
