"""From a request to a validated plan: rules first, then the cache, then the LLM overseer.

``planner.mode``: ``auto`` (rules when they match, else cache, else LLM), ``rules`` (rules
only), ``llm`` (cache, else LLM). The LLM path validates every reply with the organizer, sends
the problems back for a repair (``planner.repairs`` times), and when nothing valid comes back
runs the request as a single step with a visible warning: never a crash.

While the overseer streams, each step that is complete and valid with what came before it is
handed to ``on_partial`` at once, so the caller can start it before the plan is finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from code_evolver.config import Config
from code_evolver.errors import PlanError
from code_evolver.llm.base import Message
from code_evolver.llm.service import LLMService
from code_evolver.organizer import OrganizedPlan, organize
from code_evolver.plan import Plan
from code_evolver.planner import overseer
from code_evolver.planner.cache import PlanCache
from code_evolver.planner.rules import rules_plan
from code_evolver.planner.streaming import StepStream
from code_evolver.tools.registry import ToolRegistry

Source = Literal["rules", "cache", "llm", "fallback"]
PartialListener = Callable[[OrganizedPlan], None]


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


class Planner:
    def __init__(
        self,
        config: Config,
        registry: ToolRegistry,
        *,
        llm: LLMService | None = None,
        cache: PlanCache | None = None,
        prompt: str | None = None,
    ) -> None:
        self.settings = config.planner
        self.registry = registry
        self.llm = llm or registry.llm or LLMService(config.llm)
        self._cache = cache
        self._prompt = prompt

    @property
    def cache(self) -> PlanCache:
        if self._cache is None:
            self._cache = PlanCache()
        return self._cache

    async def quick(self, request: str, *, use_cache: bool = True) -> PlanOutcome | None:
        """A plan without asking a model (rules or cache), or None."""
        started = time.perf_counter()
        if self.settings.mode in ("auto", "rules"):
            plan = rules_plan(request, self.registry)
            if plan is not None:
                return self._outcome(organize(plan, self.registry), "rules", started)
        if self.settings.mode in ("auto", "llm") and use_cache and self.settings.cache:
            await self.llm.resolve()  # the cache key names the backend actually used
            cached = self.cache.get(self._cache_key(request))
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
    ) -> PlanOutcome:
        if not request.strip():
            raise PlanError("the request is empty; say what you want done")
        quick = await self.quick(request, use_cache=use_cache)
        if quick is not None:
            return quick
        if self.settings.mode == "rules":
            raise PlanError(
                "no planning rule matches this request; rephrase it (e.g. 'write X and "
                "translate it to French') or use --planner auto to let the model plan"
            )
        outcome = await self._ask_model(request, on_partial)
        if outcome.source == "llm" and self.settings.cache:
            self.cache.put(self._cache_key(request), outcome.organized.plan)
        return outcome

    async def _ask_model(self, request: str, on_partial: PartialListener | None) -> PlanOutcome:
        started = time.perf_counter()
        await self.llm.resolve()
        max_steps = self.settings.max_steps
        schema = overseer.overseer_schema(self.registry, max_steps)
        prompt = self._prompt if self._prompt is not None else overseer.load_prompt()
        messages = overseer.planner_messages(request, self.registry, max_steps, prompt)
        first_step_s: float | None = None
        if on_partial is not None and self.settings.stream:
            reply, first_step_s = await self._stream(request, messages, schema, on_partial, started)
        else:
            reply = await self._complete(messages, schema)
        calls = 1
        problems: tuple[str, ...] = ()
        for attempt in range(self.settings.repairs + 1):
            try:
                organized = organize(overseer.parse_reply(reply, request, max_steps), self.registry)
            except PlanError as exc:
                problems = exc.problems
            else:
                return PlanOutcome(
                    organized,
                    "llm",
                    organized.warnings,
                    calls,
                    time.perf_counter() - started,
                    first_step_s,
                )
            if attempt == self.settings.repairs:
                break
            messages = overseer.repair_messages(messages, reply, problems)
            reply = await self._complete(messages, schema)
            calls += 1
        return self._fallback(request, problems, calls, started, first_step_s)

    async def _complete(self, messages: list[Message], schema: dict[str, object]) -> str:
        return await self.llm.complete(
            messages,
            schema=schema,
            max_tokens=self.settings.max_tokens,
            temperature=self.settings.temperature,
        )

    async def _stream(
        self,
        request: str,
        messages: list[Message],
        schema: dict[str, object],
        on_partial: PartialListener,
        started: float,
    ) -> tuple[str, float | None]:
        """Stream the reply; hand out the valid prefix of the plan each time it grows."""
        stream = StepStream()
        steps: list[object] = []
        first_step_s: float | None = None
        valid = True
        async for piece in self.llm.stream(
            messages,
            schema=schema,
            max_tokens=self.settings.max_tokens,
            temperature=self.settings.temperature,
        ):
            for raw in stream.feed(piece):
                if not valid or len(steps) >= self.settings.max_steps:
                    continue
                steps.append(overseer.coerce_step(raw))
                try:
                    prefix = organize(
                        Plan.from_data({"request": request, "steps": steps}), self.registry
                    )
                except PlanError:
                    valid = False  # later steps may build on this one: wait for the whole plan
                    continue
                if first_step_s is None:
                    first_step_s = time.perf_counter() - started
                on_partial(prefix)
        return stream.text, first_step_s

    def _fallback(
        self,
        request: str,
        problems: tuple[str, ...],
        calls: int,
        started: float,
        first_step_s: float | None,
    ) -> PlanOutcome:
        tool = self.settings.fallback_tool
        if tool not in self.registry:
            raise PlanError(
                f"the model could not make a valid plan ({'; '.join(problems[:3])}) and the "
                f"fallback tool {tool!r} is not configured (planner.fallback_tool)"
            )
        organized = organize(overseer.fallback_plan(request, tool), self.registry)
        warning = (
            f"the model could not make a valid plan after {calls} tries "
            f"({'; '.join(problems[:2])}); running the request as one {tool} step"
        )
        return PlanOutcome(
            organized, "fallback", (warning,), calls, time.perf_counter() - started, first_step_s
        )

    def _outcome(self, organized: OrganizedPlan, source: Source, started: float) -> PlanOutcome:
        return PlanOutcome(organized, source, organized.warnings, 0, time.perf_counter() - started)

    def _cache_key(self, request: str) -> str:
        return PlanCache.key(request, self.llm.identity, self.registry)
