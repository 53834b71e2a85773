"""The library API that the CLI (and anyone else) calls: load, organize, run.

    import code_evolver
    result = code_evolver.run("plan.json", tools={"shout": lambda text: text.upper()})
    print(result.outputs)

``arun`` is the same in async code. Python callables passed in ``tools`` become function tools
next to the configured ones (and replace a configured tool of the same name).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from typing import Any

from code_evolver.config import Config, load_config
from code_evolver.events import EventBus, Listener
from code_evolver.executor import Executor
from code_evolver.llm.base import LLMBackend
from code_evolver.llm.service import LLMService
from code_evolver.organizer import OrganizedPlan, organize
from code_evolver.plan import Plan, coerce_plan
from code_evolver.planner.planner import PlanOutcome
from code_evolver.result import RunResult
from code_evolver.session import Answer, Session, require_input
from code_evolver.tools.registry import ToolLike, ToolRegistry

PlanLike = Plan | Mapping[str, Any] | str | os.PathLike[str]
ConfigLike = Config | str | os.PathLike[str] | None


def resolve_config(config: ConfigLike = None, **execution: Any) -> Config:
    """A Config object from whatever was given, with execution overrides applied."""
    if not isinstance(config, Config | str | os.PathLike | type(None)):
        raise TypeError(
            f"config must be a Config or the path of a config.yaml, not {type(config).__name__}"
        )
    loaded = config if isinstance(config, Config) else load_config(config)
    return loaded.with_execution(**execution) if execution else loaded


BackendLike = LLMBackend | str | None
"""A backend object (a ``ScriptedBackend`` in tests), or a name as ``--backend`` takes it."""


def _backend(config: Config, backend: BackendLike) -> tuple[Config, LLMBackend | None]:
    """``backend`` by name becomes the config's choice (as ``--backend`` does); an object is
    used as it is. Anything else is a TypeError naming what is accepted."""
    if isinstance(backend, str):
        return config.with_llm(backend=backend, endpoints=[]), None
    if backend is not None and not isinstance(backend, LLMBackend):
        raise TypeError(
            "backend must be a name (auto, ollama, embedded, openai) or an LLMBackend, "
            f"not {type(backend).__name__}"
        )
    return config, backend


def _checked(request: object = "", tools: object = None) -> None:
    """Arguments of the wrong kind, named, before anything runs."""
    if not isinstance(request, str):
        raise TypeError(f"request must be text (str), not {type(request).__name__}")
    if tools is not None and not isinstance(tools, Mapping):
        raise TypeError(
            "tools must be a mapping of names to tools or callables, like {'shout': fn}, "
            f"not {type(tools).__name__}"
        )


def prepare(
    plan: PlanLike,
    config: Config,
    tools: Mapping[str, ToolLike] | None = None,
    backend: LLMBackend | None = None,
) -> tuple[OrganizedPlan, ToolRegistry]:
    """Validate a plan against the tools it may use; raises ConfigError or PlanError."""
    registry = ToolRegistry.from_config(config, tools, llm=LLMService(config.llm, backend))
    return organize(coerce_plan(plan), registry), registry


async def arun(
    plan: PlanLike,
    *,
    config: ConfigLike = None,
    tools: Mapping[str, ToolLike] | None = None,
    backend: BackendLike = None,
    listeners: Iterable[Listener] = (),
    input_text: str | None = None,
    **execution: Any,
) -> RunResult:
    """Run a plan and return its result; failed steps are in the result, not raised.

    ``execution`` overrides settings of config.yaml's ``execution`` section, e.g.
    ``max_parallel=4, scheduling="waves", on_failure="fail_fast"``. ``input_text`` is what the
    plan's ``{input}`` reads. Raises ``UserError`` for a bad plan or config (or a plan that
    reads ``{input}`` with no input) before anything runs.
    """
    _checked(tools=tools)
    resolved, given = _backend(resolve_config(config, **execution), backend)
    organized, registry = prepare(plan, resolved, tools, given)
    require_input(organized, input_text)
    executor = Executor(
        organized, registry, resolved.execution, bus=EventBus(*listeners), run_input=input_text
    )
    try:
        return await executor.run()
    finally:
        if registry.llm is not None:
            await registry.llm.close()


def _no_running_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{name}() was called inside an event loop; use `await a{name}(...)`")


async def aplan(
    request: str,
    *,
    config: ConfigLike = None,
    tools: Mapping[str, ToolLike] | None = None,
    backend: BackendLike = None,
    use_cache: bool = True,
    planner: str | None = None,
    has_input: bool = False,
) -> PlanOutcome:
    """Plan a natural-language request without running it.

    ``planner``: ``auto`` (rules, else cache, else the LLM), ``rules``, ``clauses`` or
    ``llm``. ``backend`` replaces the configured model (e.g. a ``ScriptedBackend`` in tests).
    ``has_input``: the plan will run with piped text, which its steps read as ``{input}``.
    """
    _checked(request, tools)
    resolved, given = _backend(resolve_config(config).with_planner(mode=planner), backend)
    async with Session(resolved, tools=tools, backend=given) as session:
        return await session.plan(request, use_cache=use_cache, has_input=has_input)


def plan(request: str, **options: Any) -> PlanOutcome:
    """The blocking form of :func:`aplan`."""
    _no_running_loop("plan")
    return asyncio.run(aplan(request, **options))


async def aask(
    request: str,
    *,
    config: ConfigLike = None,
    tools: Mapping[str, ToolLike] | None = None,
    backend: BackendLike = None,
    use_cache: bool = True,
    planner: str | None = None,
    listeners: Iterable[Listener] = (),
    input_text: str | None = None,
    **execution: Any,
) -> Answer:
    """Plan a request and run the plan (the main job); see :func:`aplan` and :func:`arun`.
    ``input_text``: the text the request works on (what a user pipes to ``evolve``)."""
    _checked(request, tools)
    resolved, given = _backend(
        resolve_config(config, **execution).with_planner(mode=planner), backend
    )
    bus = EventBus(*listeners)
    async with Session(resolved, tools=tools, backend=given, bus=bus) as session:
        return await session.ask(request, use_cache=use_cache, input_text=input_text)


def ask(request: str, **options: Any) -> Answer:
    """The blocking form of :func:`aask`."""
    _no_running_loop("ask")
    return asyncio.run(aask(request, **options))


def run(
    plan: PlanLike,
    *,
    config: ConfigLike = None,
    tools: Mapping[str, ToolLike] | None = None,
    backend: BackendLike = None,
    listeners: Iterable[Listener] = (),
    input_text: str | None = None,
    **execution: Any,
) -> RunResult:
    """The blocking form of :func:`arun`, for scripts and notebooks without an event loop."""
    _no_running_loop("run")
    return asyncio.run(
        arun(
            plan,
            config=config,
            tools=tools,
            backend=backend,
            listeners=listeners,
            input_text=input_text,
            **execution,
        )
    )
