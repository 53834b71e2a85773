"""Code Evolver: turn one request into a plan of steps and run every independent step at once.

The library API (the CLI is a thin layer over it)::

    import code_evolver
    answer = code_evolver.ask("write a joke and translate it to french and spanish")
    answer.result.outputs   # {step_id: output}
    result = code_evolver.run("examples/plans/text_report.json")
    result.speedup          # sum of step times / run time (None for one step)
"""

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
