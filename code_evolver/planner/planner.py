"""From a request to a validated plan: the rules first, then the cache, then a model.

``planner.mode``:

* ``auto`` (default): the rules when they understand the request (``planner.decompose``), else
  the cache, else a model: the embedded model only makes bounded choices in the rules' plan
  (which tool a clause needs, ``planner.choices``), since a 135M model cannot write a plan; a
  stronger one (Ollama, OpenAI-compatible) writes the whole plan as the overseer;
* ``rules``: the rules only, no model;
* ``clauses``: the rules, with the model choosing where they are unsure, whatever the backend;
* ``llm``: the cache, else the overseer.

The overseer's replies are validated by the organizer and by the degenerate-plan checks
(``planner.quality``), sent back with the problems for a repair (``planner.repairs`` times),
and bounded: the schema admits only as many steps as the request has parts, and every model
round of one plan shares ``planner.deadline_s``. When nothing valid comes back in time, the
rules' plan (or, when the rules cannot read the request, one step running the request as it
is) runs instead, with warnings saying what the model got wrong: never a crash.

While the overseer streams, each step that is complete and valid with what came before it is
handed to ``on_partial`` at once, so the caller can start it before the plan is finished.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from code_evolver.config import Config
from code_evolver.errors import MissingInput, PlanError, PromptTooLong
from code_evolver.llm.base import Message
from code_evolver.llm.service import LLMService
from code_evolver.organizer import OrganizedPlan, organize
from code_evolver.plan import Plan
from code_evolver.planner import overseer
from code_evolver.planner.cache import PlanCache
from code_evolver.planner.choices import ToolChooser
from code_evolver.planner.decompose import (
    Decomposition,
    MissingText,
    NotDecomposable,
    decompose,
    decompose_choosing,
)
from code_evolver.planner.quality import plan_problems, prompt_examples
from code_evolver.planner.streaming import StepStream
from code_evolver.tools.registry import ToolRegistry

Source = Literal["rules", "clauses", "cache", "llm", "fallback"]
PartialListener = Callable[[OrganizedPlan], None]


@dataclass(frozen=True)
class PlanProgress:
    """What the model has done so far, for a progress line."""

    stage: str
    elapsed_s: float
    tokens: int = 0
    steps: int = 0


ProgressListener = Callable[[PlanProgress], None]


@dataclass(frozen=True)
class PlanOutcome:
    organized: OrganizedPlan
    source: Source
    warnings: tuple[str, ...] = ()
    llm_calls: int = 0
    seconds: float = 0.0
    """Time to the final plan."""
    first_step_s: float | None = None
    """Time until the first step was handed out while streaming (None if none was)."""


HEARTBEAT_S = 5.0
"""While the model plans, its progress is told at least this often."""


@dataclass
class _Attempt:
    """One planning by the model: what it has produced so far, for the deadline's sake."""

    started: float
    rules: Decomposition | NotDecomposable
    has_input: bool = False
    context: str | None = None
    """The conversation so far (a chat's follow-up), for the model and the fallback step."""
    calls: int = 0
    tokens: int = 0
    problems: tuple[str, ...] = ()
    streamed: OrganizedPlan | None = None
    """The valid prefix of a streamed plan, whose steps may be running already."""
    first_step_s: float | None = None
    warnings: list[str] = field(default_factory=list)
    stage: str = ""
    """What the model is doing now, as the progress line says it."""
    steps: int = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


class Planner:
    def __init__(
        self,
        config: Config,
        registry: ToolRegistry,
        *,
        llm: LLMService | None = None,
        cache: PlanCache | None = None,
        prompt: str | None = None,
        on_progress: ProgressListener | None = None,
    ) -> None:
        self.settings = config.planner
        self.registry = registry
        self.llm = llm or registry.llm or LLMService(config.llm)
        self.on_progress = on_progress
        self._cache = cache
        self._prompt = prompt

    @property
    def cache(self) -> PlanCache:
        if self._cache is None:
            self._cache = PlanCache()
        return self._cache

    def rules(self, request: str, has_input: bool = False) -> Decomposition | NotDecomposable:
        """The rules' reading of ``request`` (or why they cannot read it)."""
        try:
            return decompose(request, self.registry, has_input=has_input)
        except NotDecomposable as exc:
            return exc

    async def quick(
        self,
        request: str,
        *,
        use_cache: bool = True,
        has_input: bool = False,
        context: str | None = None,
    ) -> PlanOutcome | None:
        """A plan without asking a model (rules or cache), or None."""
        started = time.perf_counter()
        mode = self.settings.mode
        if mode != "llm":
            rules = self.rules(request, has_input)
            certain = isinstance(rules, Decomposition) and rules.understood and not rules.uncertain
            if isinstance(rules, Decomposition) and (certain or mode == "rules"):
                return self._outcome(organize(rules.plan, self.registry), "rules", started)
        if mode != "rules" and use_cache and self.settings.cache:
            await self.llm.resolve()  # the cache key names the backend actually used
            cached = self.cache.get(self._cache_key(request, has_input, context))
            if cached is not None:
                try:
                    return self._outcome(organize(cached, self.registry), "cache", started)
                except PlanError:
                    pass  # the tools changed under the cached plan: plan afresh
        return None

    async def plan(
        self,
        request: str,
        *,
        use_cache: bool = True,
        on_partial: PartialListener | None = None,
        has_input: bool = False,
        context: str | None = None,
    ) -> PlanOutcome:
        """Plan ``request``; ``has_input``: text was piped to it, which steps read as
        ``{input}`` (the plan is a template: the same plan serves any piped text).
        ``context``: the conversation so far, which a model reads before the request (the
        rules plan what a request says, and need none)."""
        if not request.strip():
            raise PlanError("the request is empty; say what you want done")
        quick = await self.quick(request, use_cache=use_cache, has_input=has_input, context=context)
        if quick is not None:
            return quick
        attempt = _Attempt(
            time.perf_counter(), self.rules(request, has_input), has_input, context or None
        )
        if isinstance(attempt.rules, MissingText):  # no model can make the text up
            raise MissingInput(str(attempt.rules), question=attempt.rules.question)
        if self.settings.mode == "rules":
            raise PlanError(
                f"the rules cannot plan this request ({attempt.rules}); rephrase it (e.g. "
                "'write X and translate it to French') or use --planner auto to let the model "
                "plan"
            )
        choice = await self.llm.resolve()
        overseer_plans = self.settings.mode == "llm" or (
            self.settings.mode == "auto" and choice.backend != "embedded"
        )
        heartbeat = asyncio.create_task(self._heartbeat(attempt)) if self.on_progress else None
        try:
            async with asyncio.timeout(self.settings.deadline_s):
                if overseer_plans:
                    outcome = await self._ask_overseer(request, attempt, on_partial)
                else:
                    outcome = await self._ask_choices(request, attempt)
        except TimeoutError:
            outcome = self._past_deadline(request, attempt)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
        if outcome.source in ("llm", "clauses") and self.settings.cache:
            self.cache.put(self._cache_key(request, has_input, context), outcome.organized.plan)
        return outcome

    async def _ask_choices(self, request: str, attempt: _Attempt) -> PlanOutcome:
        """The rules' plan, with the model choosing the tools the rules were unsure of."""
        if isinstance(attempt.rules, NotDecomposable):
            return self._fallback(request, attempt, (str(attempt.rules),))
        if attempt.context and _one_unread_clause(attempt.rules):
            return self._as_chat_turn(request, attempt)
        chooser = ToolChooser(
            self.llm,
            self.registry,
            lambda: self._progress(f"choosing tools with {self.llm.identity}", attempt),
        )
        decomposition = await decompose_choosing(
            request, self.registry, chooser, has_input=attempt.has_input
        )
        attempt.calls = chooser.asked
        organized = organize(decomposition.plan, self.registry)
        source: Source = "clauses" if decomposition.choices else "rules"
        return self._done(organized, source, attempt)

    async def _ask_overseer(
        self, request: str, attempt: _Attempt, on_partial: PartialListener | None
    ) -> PlanOutcome:
        max_steps = self._step_bound(attempt.rules)
        schema = overseer.overseer_schema(self.registry, max_steps)
        prompt = self._prompt if self._prompt is not None else overseer.load_prompt()
        examples = prompt_examples(prompt)
        first = overseer.planner_messages(
            request,
            self.registry,
            max_steps,
            prompt,
            has_input=attempt.has_input,
            context=attempt.context,
        )
        if attempt.context and not await self._fits(first, max_steps):
            attempt.warnings.append("the conversation did not fit the planner's prompt; left out")
            first = overseer.planner_messages(
                request, self.registry, max_steps, prompt, has_input=attempt.has_input
            )
        messages = first
        stream = on_partial if self.settings.stream else None
        for round_ in range(self.settings.repairs + 1):
            try:  # sized before it is sent: a backend never sees a prompt it cannot hold
                await self.llm.check_fits(
                    messages, self._token_bound(max_steps), what="the planner's prompt"
                )
            except PromptTooLong:
                if round_ == 0:
                    raise  # the request itself is too long: exit 2 with the sizes and the fix
                break  # a repair turn does not fit: fall back with what went wrong so far
            reply = await self._generate(
                request, messages, schema, (max_steps, examples), attempt, stream
            )
            stream = None  # a repaired plan is not streamed: its steps may replace earlier ones
            try:
                organized = organize(overseer.parse_reply(reply, request, max_steps), self.registry)
                problems = plan_problems(
                    organized.plan, request, examples=examples, max_parts=max_steps
                )
            except PlanError as exc:
                problems = exc.problems
            else:
                if not problems:
                    return self._done(organized, "llm", attempt, organized.warnings)
            attempt.problems = problems
            if round_ < self.settings.repairs:
                # Only the last rejected reply goes back: the conversation stays within the
                # slot's context however many repairs there are.
                messages = overseer.repair_messages(first, reply, problems)
        return self._fallback(request, attempt, attempt.problems)

    async def _generate(
        self,
        request: str,
        messages: list[Message],
        schema: dict[str, object],
        bounds: tuple[int, tuple[str, ...]],
        attempt: _Attempt,
        on_partial: PartialListener | None,
    ) -> str:
        """One model round, streamed: progress as it goes, valid steps handed out at once.

        ``bounds`` is the step bound and the prompt's worked examples: a prefix that is already
        degenerate (a copy, a worked example) is not handed out, since it would run for nothing.
        """
        max_steps, examples = bounds
        attempt.calls += 1
        stage = f"planning with {self.llm.identity}"
        if attempt.calls > 1:
            stage = f"repairing the plan with {self.llm.identity} ({attempt.calls - 1})"
        self._progress(stage, attempt)
        stream = StepStream()
        steps: list[object] = []
        valid = True
        async for piece in self.llm.stream(
            messages,
            schema=schema,
            max_tokens=self._token_bound(max_steps),
            temperature=self.settings.temperature,
        ):
            attempt.tokens += 1
            for raw in stream.feed(piece):
                steps.append(overseer.coerce_step(raw))
                if on_partial is None or not valid or len(steps) > max_steps:
                    continue
                try:
                    prefix = organize(
                        Plan.from_data({"request": request, "steps": steps}), self.registry
                    )
                except PlanError:
                    valid = False  # later steps may build on this one: wait for the whole plan
                    continue
                if plan_problems(prefix.plan, request, examples=examples, max_parts=max_steps):
                    valid = False
                    continue
                if attempt.first_step_s is None:
                    attempt.first_step_s = attempt.elapsed()
                attempt.streamed = prefix
                on_partial(prefix)
            self._progress(stage, attempt, len(steps))
        return stream.text

    def _past_deadline(self, request: str, attempt: _Attempt) -> PlanOutcome:
        why = (
            f"the model did not finish planning within planner.deadline_s "
            f"({self.settings.deadline_s:g}s)"
        )
        if attempt.streamed is not None:  # its steps are running: it is the plan
            attempt.warnings.append(
                f"{why}; running the {len(attempt.streamed.plan.steps)} steps it had written"
            )
            return self._done(attempt.streamed, "llm", attempt)
        return self._fallback(request, attempt, (why, *attempt.problems))

    def _fallback(self, request: str, attempt: _Attempt, problems: tuple[str, ...]) -> PlanOutcome:
        """The rules' plan, else the request as one step; the warnings say why."""
        listed = "; ".join(problems[:3]) or "no reason given"
        tries = f" after {attempt.calls} tries" if attempt.calls > 1 else ""
        if isinstance(attempt.rules, Decomposition):
            attempt.warnings.append(
                f"the model could not make a valid plan{tries} ({listed}); "
                "running the rules' plan instead"
            )
            organized = organize(attempt.rules.plan, self.registry)
            return self._done(organized, "fallback", attempt)
        tool = self.settings.fallback_tool
        if tool not in self.registry:
            raise PlanError(
                f"no valid plan could be made ({listed}) and the fallback tool {tool!r} is not "
                "configured (planner.fallback_tool)"
            )
        attempt.warnings.append(
            f"no valid plan could be made{tries} ({listed}); running the whole request as one "
            f"{tool} step"
        )
        organized = organize(
            overseer.fallback_plan(
                request, tool, why=listed, has_input=attempt.has_input, context=attempt.context
            ),
            self.registry,
        )
        return self._done(organized, "fallback", attempt)

    def _as_chat_turn(self, request: str, attempt: _Attempt) -> PlanOutcome:
        """A follow-up the rules cannot read ("what about dogs?", "shorter please") is
        answered by one model step that reads the conversation, as a chat model would."""
        tool = self.settings.fallback_tool
        if tool not in self.registry:
            return self._fallback(request, attempt, ("the rules cannot read this follow-up",))
        plan = overseer.fallback_plan(
            request, tool, has_input=attempt.has_input, context=attempt.context
        )
        return self._done(organize(plan, self.registry), "rules", attempt)

    def _done(
        self,
        organized: OrganizedPlan,
        source: Source,
        attempt: _Attempt,
        warnings: tuple[str, ...] = (),
    ) -> PlanOutcome:
        return PlanOutcome(
            organized,
            source,
            (*attempt.warnings, *warnings, *organized.warnings),
            attempt.calls,
            attempt.elapsed(),
            attempt.first_step_s,
        )

    def _step_bound(self, rules: Decomposition | NotDecomposable) -> int:
        """How many steps the overseer may write: as many as the request has parts (as the
        rules count them, with room for a final join), within ``max_steps``: a small model
        otherwise fills every plan up to ``max_steps`` with copies."""
        if isinstance(rules, NotDecomposable):
            return self.settings.max_steps
        # Parts the rules did not understand may each need a step or two.
        parts = max(len(rules.plan.steps), len(rules.clauses) * (1 if rules.understood else 2))
        return max(1, min(self.settings.max_steps, parts + 1))

    def _token_bound(self, max_steps: int) -> int:
        return min(self.settings.max_tokens, 30 + self.settings.tokens_per_step * max_steps)

    def _progress(self, stage: str, attempt: _Attempt, steps: int = 0) -> None:
        attempt.stage, attempt.steps = stage, steps
        if self.on_progress is not None:
            self.on_progress(PlanProgress(stage, attempt.elapsed(), attempt.tokens, steps))

    async def _heartbeat(self, attempt: _Attempt) -> None:
        """The stage again every HEARTBEAT_S, also while no token comes (a long prompt being
        read): a log that hears nothing for a minute looks hung."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if attempt.stage:
                self._progress(attempt.stage, attempt, attempt.steps)

    def _outcome(self, organized: OrganizedPlan, source: Source, started: float) -> PlanOutcome:
        return PlanOutcome(organized, source, organized.warnings, 0, time.perf_counter() - started)

    async def _fits(self, messages: list[Message], max_steps: int) -> bool:
        try:
            await self.llm.check_fits(messages, self._token_bound(max_steps), what="")
        except PromptTooLong:
            return False
        return True

    def _cache_key(self, request: str, has_input: bool, context: str | None) -> str:
        return PlanCache.key(
            request, self.llm.identity, self.registry, has_input=has_input, context=context
        )


def _one_unread_clause(rules: Decomposition) -> bool:
    """The rules read the request as one clause they do not understand."""
    return not rules.understood and len(rules.clauses) == 1
