"""A session: one config, one set of tools, one model, and requests that are planned and run.

``Session.ask`` is the main job. It plans the request and runs the plan; when the overseer
streams, each step starts the moment the planner has it complete and valid, while the rest of
the plan is still being written. If the finished plan turns out not to extend what already
started (the model's plan was repaired, or replaced by the one-step fallback), that run is
stopped and the final plan runs instead, keeping every result of an identical step.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from code_evolver import events
from code_evolver.config import Config
from code_evolver.errors import Interrupted, MissingInput
from code_evolver.events import EventBus
from code_evolver.executor import Executor
from code_evolver.llm.base import LLMBackend
from code_evolver.llm.service import LLMService
from code_evolver.organizer import OrganizedPlan
from code_evolver.planner.planner import Planner, PlanOutcome, PlanProgress
from code_evolver.result import RunResult, RunStatus, StepResult
from code_evolver.tools.registry import ToolLike, ToolRegistry

if TYPE_CHECKING:
    from code_evolver.history.recorder import HistoryRecorder
    from code_evolver.history.records import RunRecord
    from code_evolver.history.resume import Resumption
    from code_evolver.history.step_cache import StepCache


@dataclass(frozen=True)
class Answer:
    """A request's plan and the result of running it."""

    request: str
    outcome: PlanOutcome
    result: RunResult
    model: str | None = None
    """The model, named as every line names it (None: ``auto`` never had to choose one)."""

    def to_json(self) -> dict[str, Any]:
        return self.result.to_json() | {
            "plan": self.outcome.organized.plan.model_dump(exclude_defaults=True),
            "model": self.model,
            "planner": {
                "source": self.outcome.source,
                "seconds": round(self.outcome.seconds, 6),
                "llm_calls": self.outcome.llm_calls,
                "warnings": list(self.outcome.warnings),
            },
        }


class Session:
    def __init__(
        self,
        config: Config,
        *,
        tools: Mapping[str, ToolLike] | None = None,
        backend: LLMBackend | None = None,
        bus: EventBus | None = None,
        reuse_steps: bool = False,
        force_evolve: bool = False,
    ) -> None:
        """``reuse_steps`` (``--reuse``): a step that does the same work as a step of an
        earlier run (same tool definition, rendered input and params) takes its output.
        ``force_evolve`` (``--evolve``): the plan's generic writing steps become ``generate``
        steps (a node written, tested and kept for each)."""
        self.config = config
        self.force_evolve = force_evolve
        self.llm = LLMService(config.llm, backend)
        self.registry = ToolRegistry.from_config(config, tools, llm=self.llm)
        self.bus = bus if bus is not None else EventBus()
        self.llm.on_loading = lambda model, done, took: self.bus.emit(
            events.ModelLoading(model, done, took)
        )
        self.planner_llm = self._planner_llm(config, backend)
        self.planner_llm.on_loading = self.llm.on_loading
        self.planner = Planner(
            config, self.registry, llm=self.planner_llm, on_progress=self._publish_progress
        )
        self._executor: Executor | None = None
        self._planning: asyncio.Task[PlanOutcome] | None = None
        self._interrupted = False
        self._requests = 0
        """Requests under way: the interrupt belongs to them and ends with the last of them."""
        self._planning_run = ""
        self.step_cache: StepCache | None = None
        if reuse_steps:
            from code_evolver.history.step_cache import StepCache

            self.step_cache = StepCache(self.registry.digest)
        self.history: HistoryRecorder | None = None
        if config.execution.history:
            self.history = self._recorder(config)
            self.bus.subscribe(self.history, watches_output=False)
            self.history.start()

    def _publish_progress(self, progress: PlanProgress) -> None:
        self.bus.emit(
            events.Planning(
                progress.stage,
                progress.elapsed_s,
                progress.tokens,
                progress.steps,
                run_id=self._planning_run,
            )
        )

    async def plan(
        self,
        request: str,
        *,
        use_cache: bool = True,
        has_input: bool = False,
        context: str | None = None,
    ) -> PlanOutcome:
        """Plan ``request`` without running it; :meth:`interrupt` stops the planning.
        ``has_input``: the plan will be run with piped text, which its steps read as
        ``{input}``; ``context``: the conversation so far, for a model that plans."""
        with self._request_scope():
            return await self._plan(request, use_cache, None, has_input, context, new_run_id())

    @property
    def busy(self) -> bool:
        """Whether a request is under way (what :meth:`interrupt` would stop)."""
        return self._requests > 0

    @contextlib.contextmanager
    def _request_scope(self) -> Iterator[None]:
        """One request's cancel scope: an interrupt stops the request under way (and one that
        came just before it), and is forgotten when the request ends, so that the next
        request of a long-lived session (the REPL) runs normally."""
        self._requests += 1
        try:
            yield
        finally:
            self._requests -= 1
            if self._requests == 0:
                self._interrupted = False
                self._executor = None

    async def _plan(
        self,
        request: str,
        use_cache: bool,
        on_partial: Callable[[OrganizedPlan], None] | None,
        has_input: bool,
        context: str | None,
        run_id: str,
    ) -> PlanOutcome:
        """The planner in a task of its own, so that :meth:`interrupt` can cancel it (and, with
        it, the model's generation)."""
        if self._interrupted:
            raise Interrupted("interrupted before planning; nothing ran")
        if self.bus:
            self.bus.emit(events.PlanStarted(run_id, request))
        self._planning_run = run_id
        self._planning = asyncio.ensure_future(
            self.planner.plan(
                request,
                use_cache=use_cache,
                on_partial=on_partial,
                has_input=has_input,
                context=context,
            )
        )
        try:
            outcome = await self._planning
        except asyncio.CancelledError:
            if self._interrupted:
                raise Interrupted("interrupted while planning; nothing ran") from None
            raise
        finally:
            self._planning = None
        if self.bus:
            self.bus.emit(
                events.PlanFinished(
                    run_id, outcome.source, outcome.seconds, outcome.llm_calls, outcome.warnings
                )
            )
        return outcome

    async def run(
        self,
        organized: OrganizedPlan,
        *,
        input_text: str | None = None,
        reuse: Mapping[str, StepResult] | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Run a plan; ``input_text`` is what its ``{input}`` reads (the piped text);
        ``reuse``: results of steps that need not run again (a resumed run's, ``run_id``)."""
        with self._request_scope():
            return await self._run(organized, input_text=input_text, reuse=reuse, run_id=run_id)

    async def _run(
        self,
        organized: OrganizedPlan,
        *,
        input_text: str | None = None,
        reuse: Mapping[str, StepResult] | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        require_input(organized, input_text)
        self._executor = Executor(
            organized,
            self.registry,
            self.config.execution,
            bus=self.bus,
            reuse=reuse,
            run_input=input_text,
            run_id=run_id,
            step_cache=self.step_cache,
        )
        if self._interrupted:
            self._executor.interrupt()
        return await self._executor.run()

    async def resume(self, run: RunRecord, resumption: Resumption) -> RunResult:
        """Run a stored run again under its id: the steps of ``resumption.rerun`` run (their
        attempts numbered after the earlier ones), the rest keep their stored outputs."""
        if self.history is not None:
            self.history.attempt_offsets.update(
                {(run.run_id, step): n for step, n in resumption.attempts_before.items()}
            )
            first = datetime.fromisoformat(run.started_at)
            self.history.time_offsets[run.run_id] = (datetime.now(UTC) - first).total_seconds()
        return await self.run(
            resumption.organized,
            input_text=run.run_input,
            reuse=resumption.kept,
            run_id=run.run_id,
        )

    async def ask(
        self,
        request: str,
        *,
        use_cache: bool = True,
        on_plan: Callable[[PlanOutcome], None] | None = None,
        input_text: str | None = None,
        context: str | None = None,
    ) -> Answer:
        """Plan ``request`` and run it, starting streamed steps before the plan is complete.
        ``input_text``: text piped to the request, which its steps read as ``{input}``;
        ``context``: the conversation so far, for a model that plans."""
        with self._request_scope():
            answer = await self._answer(request, use_cache, on_plan, input_text, context)
        return replace(answer, model=self.llm.known_identity)

    async def _answer(
        self,
        request: str,
        use_cache: bool,
        on_plan: Callable[[PlanOutcome], None] | None,
        input_text: str | None,
        context: str | None,
    ) -> Answer:
        streamed: Executor | None = None
        streamed_run: asyncio.Future[RunResult] | None = None
        run_id = new_run_id()

        def on_partial(prefix: OrganizedPlan) -> None:
            nonlocal streamed, streamed_run
            if self._interrupted or (prefix.reads_input and input_text is None):
                return  # nothing to start: the whole plan then says what is missing
            if streamed is None:
                streamed = self._executor = Executor(
                    prefix,
                    self.registry,
                    self.config.execution,
                    bus=self.bus,
                    growing=True,
                    run_input=input_text,
                    run_id=run_id,
                    step_cache=self.step_cache,
                )
                streamed_run = asyncio.ensure_future(streamed.run())
            else:
                streamed.extend(prefix)

        can_stream = self.config.execution.scheduling == "eager" and not self.force_evolve
        try:
            outcome = await self._plan(
                request,
                use_cache,
                on_partial if can_stream else None,
                input_text is not None,
                context,
                run_id,
            )
        except BaseException as exc:
            if streamed is None or streamed_run is None:
                raise
            streamed.stop(RunStatus.INTERRUPTED if self._interrupted else RunStatus.CANCELLED)
            results = await asyncio.gather(streamed_run, return_exceptions=True)
            if isinstance(exc, Interrupted) and isinstance(results[0], RunResult):
                # Steps of the streamed plan ran: keep and show them, as for any interrupt.
                partial = PlanOutcome(streamed.organized, "llm", ("interrupted while planning",), 1)
                return Answer(request, partial, results[0])
            raise
        if self.force_evolve:
            outcome = self._evolved(outcome)
        if on_plan is not None:
            on_plan(outcome)
        if streamed is None or streamed_run is None:
            return Answer(
                request,
                outcome,
                await self._run(outcome.organized, input_text=input_text, run_id=run_id),
            )
        if _extends(outcome.organized, streamed.organized):
            streamed.seal(outcome.organized)
            return Answer(request, outcome, await streamed_run)
        streamed.stop(RunStatus.CANCELLED)
        earlier = await streamed_run
        reuse = carry_over(earlier, outcome.organized)
        return Answer(
            request,
            outcome,
            await self._run(outcome.organized, input_text=input_text, reuse=reuse, run_id=run_id),
        )

    def _evolved(self, outcome: PlanOutcome) -> PlanOutcome:
        from code_evolver.evolve.forcing import evolve_plan
        from code_evolver.organizer import organize

        writer = self.config.planner.fallback_tool
        plan = evolve_plan(outcome.organized.plan, self.registry, writer)
        return replace(outcome, organized=organize(plan, self.registry))

    def interrupt(self) -> None:
        """Ctrl-C: stop planning and the running steps; finished results are kept."""
        self._interrupted = True
        if self._planning is not None and not self._planning.done():
            self._planning.cancel()
        if self._executor is not None:
            self._executor.interrupt()

    def _planner_llm(self, config: Config, backend: LLMBackend | None) -> LLMService:
        """The steps' model service, or with several endpoints one pinned to the planner's
        (``planner.endpoint``, else the strongest model's): plans come from the best model
        while steps spread over all of them."""
        if backend is not None or not config.llm.pooled:
            return self.llm
        chosen = config.planner.endpoint or config.llm.strongest_endpoint()
        if chosen is None or len(config.llm.endpoints) == 1:
            return self.llm
        return LLMService(config.llm.model_copy(update={"endpoint": chosen}))

    def _recorder(self, config: Config) -> HistoryRecorder:
        from code_evolver.history.recorder import HistoryRecorder

        def digest(tool: str) -> str | None:
            return self.registry.digest(tool) if tool in self.registry else None  # cached there

        config_digest = hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]
        return HistoryRecorder(
            digest=digest, identity=lambda: self.llm.known_identity, config_digest=config_digest
        )

    async def close(self) -> None:
        if self.history is not None:
            self.history.close()
        if self.step_cache is not None:
            self.step_cache.close()
        if self.planner_llm is not self.llm:
            await self.planner_llm.close()
        for tool in self.registry.values():
            await tool.close()
        await self.llm.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def require_input(organized: OrganizedPlan, input_text: str | None) -> None:
    """A plan that reads ``{input}`` cannot run without it: ask for it before anything runs."""
    if organized.reads_input and input_text is None:
        raise MissingInput(
            "the plan reads {input}, the text it works on, but none was given: pipe it in "
            "(cat FILE | evolve run PLAN.json) or use --input FILE (from Python: input_text=)"
        )


def _extends(final: OrganizedPlan, started: OrganizedPlan) -> bool:
    """Whether the final plan begins with exactly the steps that already started."""
    begun = started.plan.steps
    return final.plan.steps[: len(begun)] == begun


def carry_over(earlier: RunResult, plan: OrganizedPlan) -> dict[str, StepResult]:
    """Results of ``earlier`` that ``plan`` can keep: a step identical in both plans that
    succeeded, whose dependencies can all be kept too (so its input would be the same)."""
    before = earlier.organized.steps
    kept: dict[str, StepResult] = {}
    for wave in plan.waves:
        for step_id in wave:
            step = plan.steps[step_id]
            record = earlier.steps.get(step_id)
            if (
                record is not None
                and record.ok
                and before.get(step_id) == step
                and all(dep in kept for dep in step.depends_on)
            ):
                kept[step_id] = record
    return kept


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
