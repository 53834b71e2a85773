"""Code Evolver: turn one request into a plan of steps and run every independent step at once.

The library API (the CLI is a thin layer over it)::

    import code_evolver
    answer = code_evolver.ask("write a joke and translate it to french and spanish")
    answer.result.outputs   # {step_id: output}
    result = code_evolver.run("examples/plans/text_report.json")
    result.speedup          # sum of step times / run time (None for one step)
"""

from __future__ import annotations

import importlib
import sys
import types

TYPE_CHECKING = False
"""Not ``typing.TYPE_CHECKING``: importing typing costs 10 ms, and the history writer, a
process that must start fast, imports this package (type checkers read it as True)."""
if TYPE_CHECKING:
    from typing import Any

    from code_evolver.api import aask, aplan, arun, ask, plan, prepare, resolve_config, run
    from code_evolver.config import Config, ExecutionSettings, load_config
    from code_evolver.errors import (
        BackendError,
        BackendUnavailable,
        ConfigError,
        EvolverError,
        ModelMissing,
        PlanError,
        StepError,
        StepTimeout,
        ToolFailed,
        ToolNotFound,
        UserError,
    )
    from code_evolver.events import EventBus
    from code_evolver.executor import Executor
    from code_evolver.llm import LLMBackend, ScriptedBackend
    from code_evolver.organizer import OrganizedPlan, organize
    from code_evolver.plan import Plan, Step, load_plan, plan_json_schema
    from code_evolver.planner import Planner, PlanOutcome
    from code_evolver.result import RunResult, RunStatus, StepResult, StepStatus
    from code_evolver.session import Answer, Session
    from code_evolver.tools.base import Tool, ToolCall
    from code_evolver.tools.registry import ToolRegistry

__version__ = "0.1.0"

_LAZY = {
    "Answer": "code_evolver.session",
    "BackendError": "code_evolver.errors",
    "BackendUnavailable": "code_evolver.errors",
    "Config": "code_evolver.config",
    "ConfigError": "code_evolver.errors",
    "EventBus": "code_evolver.events",
    "EvolverError": "code_evolver.errors",
    "ExecutionSettings": "code_evolver.config",
    "Executor": "code_evolver.executor",
    "LLMBackend": "code_evolver.llm",
    "ModelMissing": "code_evolver.errors",
    "OrganizedPlan": "code_evolver.organizer",
    "Plan": "code_evolver.plan",
    "PlanError": "code_evolver.errors",
    "PlanOutcome": "code_evolver.planner",
    "Planner": "code_evolver.planner",
    "RunResult": "code_evolver.result",
    "RunStatus": "code_evolver.result",
    "ScriptedBackend": "code_evolver.llm",
    "Session": "code_evolver.session",
    "Step": "code_evolver.plan",
    "StepError": "code_evolver.errors",
    "StepResult": "code_evolver.result",
    "StepStatus": "code_evolver.result",
    "StepTimeout": "code_evolver.errors",
    "Tool": "code_evolver.tools.base",
    "ToolCall": "code_evolver.tools.base",
    "ToolFailed": "code_evolver.errors",
    "ToolNotFound": "code_evolver.errors",
    "ToolRegistry": "code_evolver.tools.registry",
    "UserError": "code_evolver.errors",
    "aask": "code_evolver.api",
    "aplan": "code_evolver.api",
    "arun": "code_evolver.api",
    "ask": "code_evolver.api",
    "load_config": "code_evolver.config",
    "load_plan": "code_evolver.plan",
    "organize": "code_evolver.organizer",
    "plan": "code_evolver.api",
    "plan_json_schema": "code_evolver.plan",
    "prepare": "code_evolver.api",
    "resolve_config": "code_evolver.api",
    "run": "code_evolver.api",
}
"""Where each public name lives. They are imported on first use, so that ``import
code_evolver`` (and with it every ``evolve`` command, ``--help`` too) costs only what it uses."""


class _Package(types.ModuleType):
    """The package keeps its function ``plan`` when the submodule ``code_evolver.plan`` is
    first imported (Python would otherwise set the package's ``plan`` to that module)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "plan" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'code_evolver' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Answer",
    "BackendError",
    "BackendUnavailable",
    "Config",
    "ConfigError",
    "EventBus",
    "EvolverError",
    "ExecutionSettings",
    "Executor",
    "LLMBackend",
    "ModelMissing",
    "OrganizedPlan",
    "Plan",
    "PlanError",
    "PlanOutcome",
    "Planner",
    "RunResult",
    "RunStatus",
    "ScriptedBackend",
    "Session",
    "Step",
    "StepError",
    "StepResult",
    "StepStatus",
    "StepTimeout",
    "Tool",
    "ToolCall",
    "ToolFailed",
    "ToolNotFound",
    "ToolRegistry",
    "UserError",
    "__version__",
    "aask",
    "aplan",
    "arun",
    "ask",
    "load_config",
    "load_plan",
    "organize",
    "plan",
    "plan_json_schema",
    "prepare",
    "resolve_config",
    "run",
]
