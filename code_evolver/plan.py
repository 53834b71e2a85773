"""The plan: what the overseer emits and what ``evolve run FILE`` accepts.

A plan is data only. Whether it is consistent (known tools, no cycles, references that exist) is
the organizer's job; these models check the shape of each field, so both errors arrive with the
same ``PlanError`` type and one line per problem.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from code_evolver.bounded import MAX_DIGITS, TooLarge, bounded_int, huge_ints
from code_evolver.errors import PlanError
from code_evolver.suggest import did_you_mean

STEP_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
RUN_INPUT = "input"
"""``{input}`` in a step's input is the run's input (text piped to ``evolve``), not a step: a
plan that reads it is a template, reusable with any text (and cacheable as one)."""


class Step(BaseModel):
    """One unit of work: a tool applied to a rendered input."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    step_id: str = Field(pattern=STEP_ID_PATTERN, max_length=64)
    tool: str = Field(min_length=1)
    input: str
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    parallel_group: int | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0, le=20)

    @field_validator("params", "parallel_group")
    @classmethod
    def _numbers_within_bounds(cls, value: Any) -> Any:
        """A number no text can hold (Python writes at most 4,300 digits) fails here, named,
        instead of later, wherever a step's params are rendered or saved."""
        if any(True for _ in huge_ints(value)):
            raise ValueError(f"numbers may have at most {MAX_DIGITS} digits")
        return value


class Plan(BaseModel):
    """An ordered list of steps; order matters only for display and tie-breaking."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request: str = ""
    steps: list[Step] = Field(min_length=1)

    @classmethod
    def from_data(cls, data: Any, *, source: str = "plan") -> Plan:
        """Validate parsed JSON, turning pydantic's errors into one line per problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PlanError(list(_describe(exc, data, source))) from None
        except RecursionError:
            raise PlanError(f"{source}: the plan is nested too deeply") from None

    @classmethod
    def from_json(cls, text: str, *, source: str = "plan") -> Plan:
        try:
            data = json.loads(
                text.removeprefix("\ufeff"),
                parse_constant=_reject_constant,
                parse_float=_finite_float,
                parse_int=bounded_int,
            )
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except json.JSONDecodeError as exc:
            raise PlanError(f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
        except (_NotJson, TooLarge) as exc:
            raise PlanError(f"{source}: invalid JSON: {exc}") from None
        except RecursionError:
            raise PlanError(f"{source}: the JSON is nested too deeply") from None
        except UnicodeEncodeError:
            raise PlanError(
                f"{source}: the plan contains an invalid \\u escape (a lone surrogate)"
            ) from None
        return cls.from_data(data, source=source)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_defaults=True)

    @property
    def step_ids(self) -> list[str]:
        return [s.step_id for s in self.steps]


class _NotJson(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"{text} is too large for a number")
    return value


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Read a plan file; problems name the file (and line/column for bad JSON)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"{p}: cannot read plan: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PlanError(f"{p}: not a UTF-8 text file") from None
    return Plan.from_json(text, source=str(p))


def coerce_plan(plan: Plan | Mapping[str, Any] | str | os.PathLike[str]) -> Plan:
    """Accept what library callers naturally have: a Plan, a dict, or a path to a JSON file."""
    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, Mapping):
        return Plan.from_data(dict(plan))
    if isinstance(plan, str) and plan.lstrip().startswith("{"):  # JSON text, not a file name
        return Plan.from_json(plan, source="the plan text")
    if not isinstance(plan, str | os.PathLike):
        raise PlanError(
            f"a plan is a Plan, a mapping or the path of a JSON file, not {type(plan).__name__}"
        )
    return load_plan(plan)


def plan_json_schema(
    tools: Iterable[str] | None = None, *, max_steps: int = 12, max_text: int = 400
) -> dict[str, Any]:
    """JSON schema of a plan, for constrained decoding and for people writing plans.

    With ``tools`` the ``tool`` field becomes an enum, and every string and array is bounded:
    small models repeat themselves until ``max_tokens`` unless the grammar stops them.
    """
    schema = Plan.model_json_schema()
    if tools is None:
        return schema
    step = schema["$defs"]["Step"]
    props = step["properties"]
    props["tool"] = {"type": "string", "enum": sorted(set(tools))}
    props["input"]["maxLength"] = max_text
    props["description"]["maxLength"] = 120
    props["step_id"]["maxLength"] = 24
    props["depends_on"]["maxItems"] = max_steps
    props["depends_on"]["items"] = {"type": "string", "maxLength": 24}
    schema["properties"]["steps"]["maxItems"] = max_steps
    schema["properties"]["request"]["maxLength"] = max_text
    return schema


def _describe(exc: ValidationError, data: Any, source: str) -> Iterable[str]:
    """One readable line per pydantic error: where (step id when known), what, and the fix."""
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        where = source
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            where = f"{source}: step {loc[1] + 1}{_step_label(data, loc[1])}"
            field = ".".join(str(p) for p in loc[2:])
        else:
            field = ".".join(str(p) for p in loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed(loc)
            hint = did_you_mean(str(loc[-1]), allowed) or f" (allowed: {', '.join(allowed)})"
            message = f"unknown field {field!r}{hint}"
        elif kind == "missing":
            message = f"missing required field {field!r}"
        elif field == "step_id" and kind == "string_pattern_mismatch":
            message = "step_id may use only ASCII letters, digits, '_' and '-'"
        elif not loc and kind == "model_type":
            message = (
                f'a plan is a JSON object, {{"request": ..., "steps": [...]}}; this holds '
                f"{_a_json(data)}"
            )
        elif loc == ("steps",) and kind == "too_short":
            message = (
                'the plan has no steps; give at least one, like {"step_id": "s1", "tool": '
                '"content_generator", "input": "write a haiku"}'
            )
        else:
            message = f"{field}: {err['msg']}" if field else err["msg"]
        yield f"{where}: {message}"


def _a_json(value: Any) -> str:
    """What a JSON value is, in words: "a list", "a string"."""
    kinds = {list: "a list", str: "a string", bool: "true or false", int: "a number"}
    kinds |= {float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _step_label(data: Any, index: int) -> str:
    try:
        step_id = data["steps"][index]["step_id"]
    except (KeyError, IndexError, TypeError):
        return ""
    return f" ({step_id!r})" if isinstance(step_id, str) else ""


def _allowed(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = Step if len(loc) > 2 and loc[0] == "steps" else Plan
    return list(model.model_fields)
