"""The dataflow executor: every step starts the moment its inputs exist, within the limits.

One central dispatcher owns all scheduling state, and it only ever runs on the event loop, so no
locks are needed and every decision is O(1) or O(tools) per step:

* a step becomes *ready* when its last dependency succeeds (``eager``), or when the previous wave
  has completely finished (``waves``, the barrier behaviour kept for comparison);
* ready steps wait in one heap per tool, deepest remaining chain first, so a tool at its
  ``max_concurrency`` never blocks steps of other tools and long chains are started early;
* each attempt runs in its own task under ``asyncio.timeout``; cancelling it (timeout, fail-fast,
  Ctrl-C) makes the tool kill its process group before the attempt is recorded;
* a failed attempt gives up its slots during backoff and is re-queued by a timer.

Invariants (checked by property tests): a step starts only after all its dependencies succeeded;
no step runs twice at once; running steps never exceed ``max_parallel`` nor a tool's
``max_concurrency``; every step ends in exactly one final status and the run always ends.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from code_evolver import events
from code_evolver.calls import CallBroker
from code_evolver.capacity import Capacity
from code_evolver.config import ExecutionSettings
from code_evolver.errors import RenderError, StepError, StepTimeout
from code_evolver.launch.launcher import Launcher
from code_evolver.organizer import OrganizedPlan
from code_evolver.outputs import OutputBudget
from code_evolver.result import RunResult, RunStatus, StepResult, StepStatus, skip_reason
from code_evolver.run_events import RunReporter
from code_evolver.run_state import NOT_OK, PlanWait, StepRun, attempt, first_set
from code_evolver.step_inputs import rendered
from code_evolver.tools.base import Output, Tool, ToolCall
from code_evolver.tools.process import ProcessTool

if TYPE_CHECKING:
    from code_evolver.history.step_cache import StepCache


class Executor:
    """Runs one organized plan once. Create a new executor for every run."""

    def __init__(
        self,
        organized: OrganizedPlan,
        tools: Mapping[str, Tool],
        settings: ExecutionSettings | None = None,
        *,
        bus: events.EventBus | None = None,
        run_id: str | None = None,
        rng: random.Random | None = None,
        growing: bool = False,
        reuse: Mapping[str, StepResult] | None = None,
        run_input: str | None = None,
        step_cache: StepCache | None = None,
    ) -> None:
        """``growing``: more steps will arrive through :meth:`extend` (a plan still being
        streamed) and the run ends only after :meth:`seal`. ``reuse``: results of steps that
        already succeeded in an earlier run of an identical step; they are not run again.
        ``run_input``: what ``{input}`` reads (the text piped to evolve). ``step_cache``:
        outputs of earlier runs that did the same work (``--reuse``)."""
        self.organized = organized
        self.run_input = run_input
        self.step_cache = step_cache
        self.settings = settings or ExecutionSettings()
        self.bus = bus if bus is not None else events.EventBus()
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._rng = rng or random.Random()
        self._eager = self.settings.scheduling == "eager"
        if growing and not self._eager:
            raise ValueError("only eager scheduling can run a plan that is still growing")
        self._growing = growing
        self._reuse = dict(reuse or {})
        self._tools = tools
        self._capacity = Capacity(self.settings.max_parallel)
        self._launcher = Launcher(self.settings)
        self._outputs = OutputBudget(self.settings.max_output_bytes_total, self.run_id)
        self._calls = CallBroker(
            tools,
            self.settings,
            self._capacity,
            self.bus,
            self._now,
            self._backoff,
            self._call_settled,
            launcher=self._launcher,
            outputs=self._outputs,
            run_id=self.run_id,
        )
        self._ready: dict[str, list[tuple[tuple[int, int], StepRun]]] = {}
        self._runs: dict[str, StepRun] = {}
        self._unfinished = 0
        self._wave_left = [len(w) for w in organized.waves]
        self._wave = 0
        self._stop_status: RunStatus | None = None
        self._done: asyncio.Event | None = None
        self._plan_wait = PlanWait()
        self._dispatching = False
        self._report = RunReporter(self.bus, self.run_id)
        self._started = False
        self._add(organized)

    # ----------------------------------------------------------------- public

    async def run(self) -> RunResult:
        """Run every step; returns when each one has a final status."""
        if self._started:
            raise RuntimeError("an Executor runs its plan once; create a new one")
        self._started = True
        self._done = asyncio.Event()
        self.bus.listener_error = None
        for name in dict.fromkeys(s.tool for s in self.organized.plan.steps):
            tool = self._tools[name]
            await tool.prepare()
            if isinstance(tool, ProcessTool):
                await self._launcher.ensure(tool.isolation(self._launcher))
            self._calls.prepared.add(name)
        self._capacity.open(self._tools)
        self._report.t0 = time.perf_counter()
        started_at = datetime.now(UTC)
        self._report.run_started(self.organized, self.run_input)
        self._dispatching = True
        first = (
            self._runs.values() if self._eager else [self._runs[s] for s in self.organized.waves[0]]
        )
        for run in first:
            if run.status is StepStatus.PENDING and run.waiting == 0:
                self._push(run)
        if not self._eager:
            self._advance_wave()  # past waves whose steps were all carried over
        self._dispatch()
        self._check_done()
        try:
            await self._done.wait()
        except asyncio.CancelledError:
            self.stop(RunStatus.CANCELLED)
            tasks = [r.task for r in self._runs.values() if r.task]
            tasks += [c.task for calls in self._calls.by_step.values() for c in calls if c.task]
            await asyncio.gather(*tasks, return_exceptions=True)
            self._finished(started_at)  # a cancelled run ends with its event too
            raise
        finally:
            self._launcher.close()  # every step has ended: so may the run's fork server
        result = self._finished(started_at)
        if self.bus.listener_error is not None:
            raise self.bus.listener_error
        return result

    def _finished(self, started_at: datetime) -> RunResult:
        result = self._result(started_at)
        self._report.run_finished(result)
        return result

    def extend(self, organized: OrganizedPlan) -> None:
        """Add the steps of ``organized`` that are new; the earlier ones must be unchanged.

        Each new step starts as soon as its dependencies have succeeded, which may be at once.
        """
        if self._stop_status is not None:
            return  # stopped (fail_fast, Ctrl-C): the rest of the plan will not run
        if not self._growing:
            raise RuntimeError("extend() needs an executor created with growing=True")
        self.organized = organized
        added = self._add(organized)
        if added:
            self._note_plan_wait()
        self._report.plan_extended(organized, added)
        if self._dispatching and self._stop_status is None:
            for step_id in added:
                run = self._runs[step_id]
                if run.status is StepStatus.PENDING and run.waiting == 0:
                    self._push(run)
            self._dispatch()

    def seal(self, organized: OrganizedPlan) -> None:
        """The plan is complete: add its remaining steps; the run ends when they have."""
        self.extend(organized)
        self._growing = False
        self._check_done()

    def interrupt(self) -> None:
        """Stop the run as Ctrl-C does: finished work is kept, the rest is cancelled."""
        self.stop(RunStatus.INTERRUPTED)

    def stop(self, status: RunStatus) -> None:
        """Cancel every running attempt and every step not started yet."""
        if self._stop_status is not None:
            return
        self._stop_status = status
        self._growing = False
        self._ready.clear()
        self._calls.stop()
        for run in self._runs.values():
            if run.status is StepStatus.RUNNING and run.task is not None:
                run.task.cancel()
            elif run.status is StepStatus.PENDING:
                if run.retry_timer is not None:
                    run.retry_timer.cancel()
                self._finish(run, StepStatus.CANCELLED)
                self._report.step_cancelled(run, was_running=False)
        self._check_done()  # nothing left to cancel: a growing run has ended now

    # --------------------------------------------------------------- set-up

    def _add(self, organized: OrganizedPlan) -> list[str]:
        """Create the bookkeeping of the steps not seen yet; returns their ids."""
        settings = self.settings
        depth = organized.remaining_depth()
        wave_of = organized.wave_of
        added: list[StepRun] = []
        for index, step in enumerate(organized.plan.steps):
            if step.step_id in self._runs:
                continue
            tool = self._tools[step.tool]
            run = StepRun(
                step=step,
                tool=tool,
                template=organized.templates[step.step_id],
                wave=wave_of[step.step_id],
                priority=(-depth[step.step_id], index),
                waiting=0,
                timeout_s=first_set(step.timeout_s, tool.timeout_s, settings.timeout_s),
                max_attempts=1 + first_set(step.retries, tool.retries, settings.retries),
            )
            self._runs[step.step_id] = run
            added.append(run)
            self._unfinished += 1
        for run in added:
            if (earlier := self._reuse.get(run.step.step_id)) is not None and earlier.ok:
                run.carry_over(earlier)
                self._unfinished -= 1
                if not self._eager:
                    self._wave_left[run.wave] -= 1
        for run in added:
            for dep in run.step.depends_on:
                before = self._runs[dep]
                before.dependents.append(run)
                if before.status is not StepStatus.SUCCEEDED:
                    run.waiting += 1
        for run in added:
            failed = [d for d in run.step.depends_on if self._runs[d].status in NOT_OK]
            if failed and run.status is StepStatus.PENDING:
                self._skip(run, failed[0])
        return [run.step.step_id for run in added]

    # ------------------------------------------------------------ scheduling

    def _push(self, run: StepRun) -> None:
        if run.status is not StepStatus.PENDING or self._stop_status is not None:
            return
        heapq.heappush(self._ready.setdefault(run.step.tool, []), (run.priority, run))

    def _dispatch(self) -> None:
        """Start ready steps while a global slot and their tool's slot are free."""
        self._calls.dispatch()  # calls first: running steps wait for them
        capacity = self._capacity
        while capacity.slot_free() and self._ready:
            best: list[tuple[tuple[int, int], StepRun]] | None = None
            for name, heap in self._ready.items():
                if capacity.gates[name].free() and (best is None or heap[0][0] < best[0][0]):
                    best = heap
            if best is None:
                return
            _, run = heapq.heappop(best)
            if not best:
                del self._ready[run.step.tool]
            self._start(run)

    def _start(self, run: StepRun) -> None:
        """Take the slots now; the attempt itself begins when its task first runs."""
        assert run.status is StepStatus.PENDING, f"{run.step.step_id} started twice"
        run.status = StepStatus.RUNNING
        self._capacity.take(run.step.tool)
        run.attempt_began = time.perf_counter()
        run.task = asyncio.get_running_loop().create_task(self._attempt(run))
        run.task.add_done_callback(lambda task: self._attempt_cancelled(run, task))

    async def _attempt(self, run: StepRun) -> None:
        """One attempt of one step; records its outcome, then lets the dispatcher go on.

        Cancellation is recorded by :meth:`_attempt_cancelled`, not here: a task cancelled
        before its first step never enters this coroutine at all.
        """
        run.attempts += 1
        run.attempt_began = time.perf_counter()
        if run.started_wall is None:
            run.started_wall = time.time()
        self._report.step_started(run)
        output: Output | None = None
        error: StepError | None
        try:
            call = self._call(run)
        except StepError as exc:  # the input cannot be rendered
            error = exc
        except Exception as exc:  # anything else must still end the step, never hang the run
            error = RenderError(f"cannot render the input: {type(exc).__name__}: {exc}")
        else:
            run.reused, output = self._cached(run, call)
            if not run.reused:
                output, error = await attempt(run.tool, call, run.timeout_s)
            else:
                error = None
        self._release(run)
        if error is None:
            self._succeeded(run, output if output is not None else "")
        else:
            self._failed(run, error)
        self._dispatch()

    def _attempt_cancelled(self, run: StepRun, task: asyncio.Task[None]) -> None:
        if task.cancelled() and run.status is StepStatus.RUNNING:
            self._release(run)
            self._finish(run, StepStatus.CANCELLED)
            self._report.step_cancelled(run, was_running=True)
            self._dispatch()

    def _release(self, run: StepRun) -> None:
        if run.channel is not None:
            run.channel.close()  # the attempt is over: so are its script's calls
            run.channel = None
        run.busy_s += time.perf_counter() - run.attempt_began
        self._capacity.release(run.step.tool)

    def _call(self, run: StepRun) -> ToolCall:
        step = run.step
        run.rendered_input, run.rendered_params = rendered(run, self._runs, self.run_input)
        run.channel = self._calls.channel(step.step_id, step.tool, attempt=run.attempts)
        return ToolCall(
            run.rendered_input,
            run.rendered_params,
            step.step_id,
            run.attempts,
            run.channel,
            self._launcher,
            self._report.watcher(run, self.organized),
            self._report.stages(run),
        )

    def _cached(self, run: StepRun, call: ToolCall) -> tuple[bool, Output | None]:
        """An earlier run's output of the same work (``--reuse``), if there is one."""
        if self.step_cache is None:
            return False, None
        return self.step_cache.lookup(run.step.tool, call.input, call.params)

    # -------------------------------------------------------------- outcomes

    def _succeeded(self, run: StepRun, output: Output) -> None:
        run.output = self._outputs.keep(run.step.step_id, output)
        for dependent in run.dependents:
            dependent.waiting -= 1
        self._finish(run, StepStatus.SUCCEEDED)  # in waves mode, may release the next wave
        self._report.step_succeeded(run, output)
        if self._eager:
            for dependent in run.dependents:
                if dependent.waiting == 0 and dependent.status is StepStatus.PENDING:
                    self._push(dependent)

    def _failed(self, run: StepRun, error: StepError) -> None:
        if error.retryable and run.attempts < run.max_attempts and self._stop_status is None:
            run.status = StepStatus.PENDING
            run.error = str(error)
            delay = self._backoff(run.attempts)
            self._report.step_retrying(run, str(error), delay)
            run.retry_timer = asyncio.get_running_loop().call_later(delay, self._retry, run)
            return
        status = StepStatus.TIMED_OUT if isinstance(error, StepTimeout) else StepStatus.FAILED
        run.error = str(error)
        self._finish(run, status)
        self._report.step_failed(run, str(error), status)
        if self.settings.on_failure == "fail_fast":
            self.stop(RunStatus.FAILED)
        else:
            self._skip_dependents(run)

    def _retry(self, run: StepRun) -> None:
        run.retry_timer = None
        if run.status is StepStatus.PENDING and self._stop_status is None:
            self._push(run)
            self._dispatch()

    def _backoff(self, attempts: int) -> float:
        return self.settings.retry_delay(attempts, self._rng)

    def _skip_dependents(self, failed: StepRun) -> None:
        for run in list(failed.dependents):
            self._skip(run, failed.step.step_id)

    def _skip(self, run: StepRun, root: str) -> None:
        """Skip ``run`` and, transitively, everything that depends on it."""
        stack = [run]
        while stack:
            run = stack.pop()
            if run.status is not StepStatus.PENDING:
                continue
            run.error = skip_reason(root)
            self._finish(run, StepStatus.SKIPPED)
            self._report.step_skipped(run, root)
            stack.extend(run.dependents)

    def _finish(self, run: StepRun, status: StepStatus) -> None:
        """Give a step its final status; release the next wave and end the run when due."""
        run.status = status
        run.finished_wall = time.time()
        self._unfinished -= 1
        if not self._eager:
            self._wave_left[run.wave] -= 1
            self._advance_wave()
        self._check_done()

    def _call_settled(self) -> None:
        self._dispatch()
        self._check_done()

    def _check_done(self) -> None:
        self._note_plan_wait()
        if (
            self._unfinished == 0
            and not self._growing
            and self._calls.active == 0  # a cancelled call is still being wound up
            and self._done is not None
        ):
            self._done.set()

    def _advance_wave(self) -> None:
        waves = self.organized.waves
        while self._wave < len(waves) and self._wave_left[self._wave] == 0:
            self._wave += 1
            if self._wave < len(waves) and self._stop_status is None:
                for step_id in waves[self._wave]:
                    run = self._runs[step_id]
                    if run.status is StepStatus.PENDING and run.waiting == 0:
                        self._push(run)

    # ---------------------------------------------------------------- result

    def _now(self) -> float:
        return self._report.now()

    def _note_plan_wait(self) -> None:
        if self._done is not None:  # the run has begun
            idle = self._growing and self._unfinished == 0 and self._stop_status is None
            self._plan_wait.note(idle)

    def _result(self, started_at: datetime) -> RunResult:
        wall = self._now()
        if self._stop_status is not None:
            status = self._stop_status
        elif all(r.status is StepStatus.SUCCEEDED for r in self._runs.values()):
            status = RunStatus.SUCCEEDED
        else:
            status = RunStatus.FAILED
        steps = {
            step_id: run.record(
                self._calls.records(step_id) + tuple(run.stages),
                run.tool.isolation(self._launcher) if isinstance(run.tool, ProcessTool) else None,
            )
            for step_id, run in self._runs.items()
        }
        return RunResult(
            self.run_id,
            status,
            self.organized,
            steps,
            wall,
            self._capacity.peak,
            started_at,
            plan_wait_s=self._plan_wait.seconds,
            max_parallel=self.settings.max_parallel,
        )
