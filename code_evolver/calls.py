"""Tool calls made by running steps: a node script's ``call_tool()``, run under the run's limits.

The parent process receives a script's calls (``launch.runtime_host``) and submits them
through the :class:`CallChannel` of the step attempt that runs the script. Each call is
scheduled like a step: its tool's gate (``max_concurrency``, a shared LLM backend), a global
slot, the tool's timeout and retries; it is recorded under its step and shown under it.

A caller blocked on its calls *lends* them its own slot (and, for a call to its own tool, its
tool's gate): one call per caller runs without taking a new slot, so fan-outs nested to any
depth never deadlock on ``max_parallel`` or on a tool calling itself. Waiting calls start
oldest first within these rules, at a cost per start that does not grow with the number waiting
(``code_evolver.call_queue``). A channel is closed when its attempt ends: its calls are
cancelled and later ones refused.

``timeout_s`` given by a script is a deadline for the whole call, queueing and retries
included; the tool's own ``timeout_s`` still bounds each attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from code_evolver import events
from code_evolver.call_queue import CallQueue
from code_evolver.capacity import Capacity
from code_evolver.config import ExecutionSettings
from code_evolver.errors import EvolverError, StepError, StepTimeout, ToolNotFound
from code_evolver.launch.launcher import Launcher
from code_evolver.outputs import OutputBudget, Spilled
from code_evolver.result import CallRecord, StepStatus
from code_evolver.run_state import attempt, first_set
from code_evolver.suggest import did_you_mean
from code_evolver.tools.base import Output, Tool, ToolCall, output_to_json
from code_evolver.tools.process import ProcessTool


class CallRefused(StepError):
    """A call on a channel whose step attempt has ended."""

    retryable = False


@dataclass(eq=False, repr=False)
class ChildCall:
    call_id: str
    step_id: str
    tool_name: str
    tool: Tool | None
    """None for a call refused before it could start (e.g. an unknown tool)."""
    input: str
    params: dict[str, Any]
    timeout_s: float
    max_attempts: int
    caller: CallChannel
    future: asyncio.Future[Output]
    step_attempt: int = 1
    parent_call: str | None = None
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    busy_s: float = 0.0
    began: float = 0.0
    output: Output | Spilled | None = None
    error: str | None = None
    queued_as: int = 0
    """Its number in the queue of waiting calls; 0 when it is not waiting there."""
    on_lent_slot: bool = False
    on_lent_gate: bool = False
    cancel_reason: str = "cancelled"
    task: asyncio.Task[None] | None = None
    retry_timer: asyncio.TimerHandle | None = None
    channel: CallChannel | None = None

    def record(self) -> CallRecord:
        output = self.output if self.status is StepStatus.SUCCEEDED else None
        return CallRecord(
            self.call_id,
            self.tool_name,
            self.status,
            self.attempts,
            self.busy_s,
            None if isinstance(output, Spilled) else output,
            self.error,
            self.step_attempt,
            self.parent_call,
            output if isinstance(output, Spilled) else None,
        )


class CallChannel:
    """How one tool attempt calls other tools; closed when the attempt ends."""

    def __init__(
        self,
        broker: CallBroker,
        step_id: str,
        tool: str = "",
        *,
        attempt: int = 1,
        parent_call: str | None = None,
        depth: int = 0,
    ) -> None:
        self._broker = broker
        self.step_id = step_id
        self.tool = tool
        """The caller's own tool, whose gate it lends to calls of the same tool."""
        self.attempt = attempt
        self.parent_call = parent_call
        self.depth = depth
        """0 for a step; 1 for a call the step made; 2 for that call's own calls, ..."""
        self.closed = False
        self.lent_slot_free = True
        self.calls: list[ChildCall] = []

    async def call(
        self,
        tool: str,
        input: str,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Output:
        """Run ``tool`` on ``input`` as a child call of this step; raises StepError.

        ``timeout_s`` shortens the tool's own timeout for this call.
        """
        if self.closed:
            raise CallRefused(f"step {self.step_id!r} has ended; it cannot call tools any more")
        return await self._broker.submit(self, tool, input, dict(params or {}), timeout_s)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._broker.abandon(self)


@dataclass
class CallBroker:
    """Schedules the child calls of a run, sharing the executor's capacity."""

    tools: Mapping[str, Tool]
    settings: ExecutionSettings
    capacity: Capacity
    bus: events.EventBus
    now: Callable[[], float]
    backoff: Callable[[int], float]
    wake: Callable[[], None]
    """Called when a call ends: slots are free, so the executor can dispatch again."""
    by_step: dict[str, list[ChildCall]] = field(default_factory=dict)
    queue: CallQueue = field(init=False)
    """The calls waiting to start."""
    stopped: bool = False
    active: int = 0
    """Calls submitted and not settled yet; a run ends only when none are left."""

    prepared: set[str] = field(default_factory=set)
    """Tools whose ``prepare()`` has run (the executor prepares the plan's own tools)."""
    launcher: Launcher | None = None
    """How the run's tools start processes (None: the defaults)."""
    outputs: OutputBudget | None = None
    """The run's output budget; the records of call outputs past it point at files."""
    run_id: str = ""

    def __post_init__(self) -> None:
        self.queue = CallQueue(self.capacity)

    @property
    def pending(self) -> list[ChildCall]:
        """The calls waiting to start, oldest first (for inspection)."""
        return self.queue.calls()

    def channel(
        self,
        step_id: str,
        tool: str = "",
        *,
        attempt: int = 1,
        parent_call: str | None = None,
        depth: int = 0,
    ) -> CallChannel:
        return CallChannel(
            self, step_id, tool, attempt=attempt, parent_call=parent_call, depth=depth
        )

    def records(self, step_id: str) -> tuple[CallRecord, ...]:
        return tuple(call.record() for call in self.by_step.get(step_id, ()))

    async def submit(
        self,
        caller: CallChannel,
        tool_name: str,
        text: str,
        params: dict[str, Any],
        timeout_s: float | None,
    ) -> Output:
        tool = self.tools.get(tool_name)
        refusal = self._refusal(tool_name, timeout_s, caller.depth + 1)
        if refusal is not None:
            self._record_refused(caller, tool_name, text, params, refusal)
            raise refusal
        assert tool is not None
        if tool_name not in self.prepared:
            await tool.prepare()  # e.g. choose the LLM backend, whose capacity sizes the gate
            if isinstance(tool, ProcessTool) and self.launcher is not None:
                await self.launcher.ensure(tool.isolation(self.launcher))
            self.prepared.add(tool_name)
            self.capacity.refresh(self.tools, tool_name)
        limit = first_set(tool.timeout_s, self.settings.timeout_s)
        call = self._new_call(
            caller,
            tool_name,
            tool,
            text,
            dict(tool.default_params) | params,
            timeout_s=min(limit, timeout_s) if timeout_s else limit,
            max_attempts=1 + first_set(tool.retries, self.settings.retries),
        )
        self.active += 1
        self.queue.push(call)
        self.wake()
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(call.future)
        except TimeoutError:
            self._cancel(call, f"timed out after {timeout_s:g}s (the caller's deadline)")
            raise StepTimeout(f"timed out after {timeout_s:g}s") from None
        except asyncio.CancelledError:
            if not call.future.done():
                self._cancel(call)
            raise

    def _new_call(
        self,
        caller: CallChannel,
        tool_name: str,
        tool: Tool | None,
        text: str,
        params: dict[str, Any],
        *,
        timeout_s: float = 0.0,
        max_attempts: int = 1,
    ) -> ChildCall:
        """A call recorded under its step (numbered in the order the script made them)."""
        siblings = self.by_step.setdefault(caller.step_id, [])
        call = ChildCall(
            call_id=f"{caller.step_id}.{len(siblings) + 1}",
            step_id=caller.step_id,
            tool_name=tool_name,
            tool=tool,
            input=text,
            params=params,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            caller=caller,
            future=asyncio.get_running_loop().create_future(),
            step_attempt=caller.attempt,
            parent_call=caller.parent_call,
        )
        # Mark the outcome as seen even when the caller has gone away meanwhile.
        call.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        siblings.append(call)
        caller.calls.append(call)
        return call

    def _refusal(self, tool_name: str, timeout_s: float | None, depth: int) -> EvolverError | None:
        """Why a call cannot start at all, if it cannot."""
        if depth > self.settings.max_call_depth:
            return CallRefused(
                f"calls nested {depth} deep; execution.max_call_depth allows "
                f"{self.settings.max_call_depth} (a node calling itself without end?)"
            )
        if tool_name not in self.tools:
            return ToolNotFound(
                f"unknown tool {tool_name!r}{did_you_mean(tool_name, self.tools)}; "
                "see `evolve tools`"
            )
        if self.stopped:
            return CallRefused("the run is stopping; no more tool calls")
        if timeout_s is not None and timeout_s <= 0:
            return StepTimeout(f"timed out: the call was given {timeout_s:g}s")
        return None

    def _record_refused(
        self,
        caller: CallChannel,
        tool_name: str,
        text: str,
        params: dict[str, Any],
        error: EvolverError,
    ) -> None:
        """A call that could not even start is still part of the step's record."""
        call = self._new_call(caller, tool_name, None, text, params)
        status = StepStatus.TIMED_OUT if isinstance(error, StepTimeout) else StepStatus.FAILED
        call.status, call.error = status, str(error)
        call.future.set_exception(error)
        self._emit_finished(call, status.value)

    def dispatch(self) -> None:
        """Start pending calls, oldest first, while their gates and a slot allow: on the
        caller's lent slot when it is free (with its gate, for a call to its own tool)."""
        for call in self.queue.startable():
            caller = call.caller
            if caller.lent_slot_free:
                caller.lent_slot_free = False
                call.on_lent_slot = True
                call.on_lent_gate = call.tool_name == caller.tool
            self._start(call)

    def _start(self, call: ChildCall) -> None:
        call.status = StepStatus.RUNNING
        if call.on_lent_slot:
            self.capacity.lend()
        if not call.on_lent_gate:
            self.capacity.take(call.tool_name, slot=not call.on_lent_slot)
        call.began = time.perf_counter()
        call.task = asyncio.get_running_loop().create_task(self._attempt(call))
        call.task.add_done_callback(lambda task: self._attempt_cancelled(call, task))

    async def _attempt(self, call: ChildCall) -> None:
        call.attempts += 1
        call.began = time.perf_counter()
        if self.bus:
            self.bus.emit(
                events.CallStarted(
                    call.step_id,
                    call.call_id,
                    call.tool_name,
                    call.attempts,
                    self.now(),
                    parent_call=call.parent_call,
                    run_id=self.run_id,
                )
            )
        call.channel = self.channel(  # for a node calling further tools
            call.step_id,
            call.tool_name,
            attempt=call.step_attempt,
            parent_call=call.call_id,
            depth=call.caller.depth + 1,
        )
        tool_call = ToolCall(
            call.input, call.params, call.call_id, call.attempts, call.channel, self.launcher
        )
        output: Output | None
        error: StepError | None
        assert call.tool is not None, "refused calls never start"
        try:
            output, error = await attempt(call.tool, tool_call, call.timeout_s)
        finally:
            call.channel.close()
        self._release(call)
        if error is None:
            try:
                output = output_to_json(output if output is not None else "")
            except StepError as exc:
                error = exc
        if error is None:
            self._settle(call, StepStatus.SUCCEEDED, output=output)
        elif (
            error.retryable
            and call.attempts < call.max_attempts
            and not self.stopped
            and not call.caller.closed
        ):
            call.status = StepStatus.PENDING
            call.error = str(error)
            self._emit_finished(call, "retrying")
            loop = asyncio.get_running_loop()
            call.retry_timer = loop.call_later(self.backoff(call.attempts), self._retry, call)
        else:
            status = StepStatus.TIMED_OUT if isinstance(error, StepTimeout) else StepStatus.FAILED
            self._settle(call, status, error=error)
        self.wake()

    def _retry(self, call: ChildCall) -> None:
        call.retry_timer = None
        if call.status is not StepStatus.PENDING:
            return
        if call.caller.closed or self.stopped:
            self._cancel(call)
        else:
            self.queue.push(call)
        self.wake()

    def _attempt_cancelled(self, call: ChildCall, task: asyncio.Task[None]) -> None:
        if task.cancelled() and call.status is StepStatus.RUNNING:
            self._release(call)
            self._settle(call, StepStatus.CANCELLED, error=CallRefused(call.cancel_reason))
            self.wake()

    def _release(self, call: ChildCall) -> None:
        call.busy_s += time.perf_counter() - call.began
        if not call.on_lent_gate:
            self.capacity.release(call.tool_name, slot=not call.on_lent_slot)
        if call.on_lent_slot:
            self.capacity.unlend()
            call.caller.lent_slot_free = True
            self.queue.lent_slot_freed(call.caller)
        call.on_lent_slot = call.on_lent_gate = False

    def _settle(
        self,
        call: ChildCall,
        status: StepStatus,
        *,
        output: Output | None = None,
        error: StepError | None = None,
    ) -> None:
        call.status = status
        kept = self.outputs.keep(call.call_id, output) if self.outputs and output else output
        call.output = kept
        call.error = str(error) if error is not None else None
        self.active -= 1
        if not call.future.done():
            if error is None:
                call.future.set_result(output if output is not None else "")
            else:
                call.future.set_exception(error)
        if call.attempts:  # a call cancelled before it ever started showed nothing to finish
            self._emit_finished(call, status.value)

    def _emit_finished(self, call: ChildCall, status: str) -> None:
        """One event per attempt that ended (``retrying`` when another one follows)."""
        if self.bus:
            self.bus.emit(
                events.CallFinished(
                    call.step_id,
                    call.call_id,
                    call.tool_name,
                    status,
                    call.busy_s,
                    call.error,
                    self.now(),
                    parent_call=call.parent_call,
                    run_id=self.run_id,
                    step_attempt=call.step_attempt,
                )
            )

    def _cancel(self, call: ChildCall, reason: str = "cancelled") -> None:
        if call.retry_timer is not None:
            call.retry_timer.cancel()
            call.retry_timer = None
        if call.status is StepStatus.PENDING:
            self.queue.discard(call)  # not queued while it waits to retry
            if call.error:  # cancelled during backoff: keep what went wrong
                reason = f"{reason} after: {call.error}"
            self._settle(call, StepStatus.CANCELLED, error=CallRefused(reason))
        elif call.status is StepStatus.RUNNING and call.task is not None:
            call.cancel_reason = reason
            call.task.cancel()

    def abandon(self, channel: CallChannel) -> None:
        """The caller's attempt ended: cancel whatever it still has in flight."""
        for call in channel.calls:
            if not call.status.is_final:
                self._cancel(call)

    def stop(self) -> None:
        self.stopped = True
        for calls in self.by_step.values():
            for call in calls:
                if not call.status.is_final:
                    self._cancel(call)
