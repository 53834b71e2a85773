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
from code_evolver.organizer import OrganizedPlan, organize
from code_evolver.plan import Plan, coerce_plan
from code_evolver.result import RunResult
from code_evolver.tools.registry import ToolLike, ToolRegistry

PlanLike = Plan | Mapping[str, Any] | str | os.PathLike[str]
ConfigLike = Config | str | os.PathLike[str] | None


def resolve_config(config: ConfigLike = None, **execution: Any) -> Config:
    """A Config object from whatever was given, with execution overrides applied."""
    loaded = config if isinstance(config, Config) else load_config(config)
    return loaded.with_execution(**execution) if execution else loaded


def prepare(
    plan: PlanLike, config: Config, tools: Mapping[str, ToolLike] | None = None
) -> tuple[OrganizedPlan, ToolRegistry]:
    """Validate a plan against the tools it may use; raises ConfigError or PlanError."""
    registry = ToolRegistry.from_config(config, tools)
    return organize(coerce_plan(plan), registry), registry


async def arun(
    plan: PlanLike,
    *,
    config: ConfigLike = None,
    tools: Mapping[str, ToolLike] | None = None,
    listeners: Iterable[Listener] = (),
    **execution: Any,
) -> RunResult:
    """Run a plan and return its result; failed steps are in the result, not raised.

    ``execution`` overrides settings of config.yaml's ``execution`` section, e.g.
    ``max_parallel=4, scheduling="waves", on_failure="fail_fast"``. Raises ``UserError`` for a
    bad plan or config before anything runs.
    """
    resolved = resolve_config(config, **execution)
    organized, registry = prepare(plan, resolved, tools)
    executor = Executor(organized, registry, resolved.execution, bus=EventBus(*listeners))
    return await executor.run()


def run(
    plan: PlanLike,
    *,
    config: ConfigLike = None,
    tools: Mapping[str, ToolLike] | None = None,
    listeners: Iterable[Listener] = (),
    **execution: Any,
) -> RunResult:
    """The blocking form of :func:`arun`, for scripts and notebooks without an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("run() was called inside an event loop; use `await arun(...)`")
    return asyncio.run(arun(plan, config=config, tools=tools, listeners=listeners, **execution))
