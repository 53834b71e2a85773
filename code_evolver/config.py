"""config.yaml: where it is found, what it may contain, and errors that name the key path.

Search order: an explicit path (``--config``), ``$CODE_EVOLVER_CONFIG``, ``./config.yaml``, then the
default packaged with Code Evolver. Relative paths inside a config file (prompts, scripts, a
command's working directory) are relative to the folder of that file.
"""

from __future__ import annotations

import os
import random
import re
import resource
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from code_evolver.bounded import TooLarge, load_yaml
from code_evolver.errors import ConfigError
from code_evolver.launch.limits import Limits
from code_evolver.llm.settings import LlmSettings
from code_evolver.resources import default_config_path
from code_evolver.suggest import did_you_mean
from code_evolver.tools.specs import SPEC_BY_KIND, TOOL_KINDS, TOOL_NAME_PATTERN, ToolSpec

CONFIG_ENV = "CODE_EVOLVER_CONFIG"

Scheduling = Literal["eager", "waves"]
OnFailure = Literal["continue", "fail_fast"]
PlannerMode = Literal["auto", "rules", "clauses", "llm"]
SandboxSetting = Literal["auto", "strict", "contain", "none"]


DEFAULT_MAX_PARALLEL = 8
FDS_PER_PROCESS_STEP = 8
"""Descriptors a starting process step holds: three pipes, the runtime socketpair, the spawn's
error pipe."""
FDS_RESERVED = 64
"""Descriptors kept for the interpreter, the model and connections to backends."""


def default_max_parallel() -> int:
    """8, or fewer when the file descriptor limit (``ulimit -n``) could not feed 8 processes."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_PARALLEL
    return max(1, min(DEFAULT_MAX_PARALLEL, (soft - FDS_RESERVED) // FDS_PER_PROCESS_STEP))


class ExecutionSettings(BaseModel):
    """How the executor runs a plan. Steps and tools may override timeout and retries."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    scheduling: Scheduling = "eager"
    """``eager``: a step starts when its last dependency succeeds. ``waves``: barrier per wave."""
    max_parallel: int = Field(default_factory=default_max_parallel, ge=1)
    """Steps running at once. Starting a process when descriptors run out waits for them."""
    on_failure: OnFailure = "continue"
    timeout_s: float = Field(default=300.0, gt=0)
    retries: int = Field(default=0, ge=0, le=20)
    retry_backoff_s: float = Field(default=0.5, ge=0)
    """Delay before the first retry; it doubles per attempt, with jitter."""
    retry_backoff_max_s: float = Field(default=30.0, ge=0)
    sandbox: SandboxSetting = "auto"
    """Isolation of tool processes: ``auto`` is ``strict`` for nodes, ``contain`` for commands;
    a tool's own ``sandbox:`` wins."""
    bubblewrap: str = "bwrap"
    """The bubblewrap program (a name on PATH, or a path)."""
    limits: Limits | None = None
    """Resource limits of every tool process; unset: 4 GB, 600 s, ... and tighter ones for
    strict isolation (``launch.limits``)."""
    max_call_depth: int = Field(default=4, ge=1, le=32)
    """How deep node scripts may nest their tool calls (a call's call's call...)."""
    max_output_bytes_total: int = Field(default=256 * 1024 * 1024, ge=1024)
    """Outputs a run keeps in memory; beyond it they are written to files in the run's folder."""

    def retry_delay(self, attempts: int, rng: random.Random) -> float:
        """Delay after ``attempts`` failed attempts: exponential, capped, with equal jitter
        (half fixed, half random) so retries of many steps do not stampede together."""
        delay = min(self.retry_backoff_max_s, self.retry_backoff_s * 2.0 ** (attempts - 1))
        return delay / 2 + rng.uniform(0, delay / 2)


class PlannerSettings(BaseModel):
    """How a request becomes a plan. ``planner: rules`` is short for ``planner: {mode: rules}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mode: PlannerMode = "auto"
    """auto: the rules when they understand the request, else the cache, else the clause planner
    (the embedded model) or the LLM overseer (Ollama, OpenAI-compatible); rules: the rules only,
    no model; clauses: the rules, with the model choosing where they are unsure; llm: the
    overseer writes the whole plan."""
    deadline_s: float = Field(default=20.0, gt=0, le=3600)
    """All model rounds of one plan together (repairs included); past it, the best plan so far."""
    tokens_per_step: int = Field(default=90, ge=20, le=1000)
    """The overseer's reply is bounded by this times the steps it may write (and max_tokens)."""
    repairs: int = Field(default=2, ge=0, le=5)
    """How often a plan the organizer rejects goes back to the model with the errors."""
    stream: bool = True
    """Start each step as soon as the streaming plan has it complete."""
    cache: bool = True
    """Reuse the last good plan for the same request, model and tools."""
    max_steps: int = Field(default=8, ge=1, le=50)
    max_tokens: int = Field(default=700, ge=64)
    temperature: float = Field(default=0.2, ge=0, le=2)
    fallback_tool: str = "content_generator"
    """The one step that runs the request as is when no valid plan can be made."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"mode": data} if isinstance(data, str) else data


class Config(BaseModel):
    """The whole configuration. Build one in code, or load it with :func:`load_config`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    llm: LlmSettings = Field(default_factory=LlmSettings)
    planner: PlannerSettings = Field(default_factory=PlannerSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    tools: dict[str, ToolSpec] = Field(default_factory=dict)

    _path: Path | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path | None:
        """The file this config was loaded from, if any."""
        return self._path

    @property
    def base_dir(self) -> Path:
        """The folder that relative paths in this config are relative to."""
        return self._path.parent if self._path else Path.cwd()

    def with_execution(self, **changes: Any) -> Config:
        """A copy with some execution settings replaced (CLI flags), validated like the file."""
        return self._with_section("execution", changes)

    def with_llm(self, **changes: Any) -> Config:
        """A copy with some ``llm`` settings replaced (``--backend``, ``--model``)."""
        return self._with_section("llm", changes)

    def with_planner(self, **changes: Any) -> Config:
        """A copy with some ``planner`` settings replaced (``--planner``, ``--no-cache``)."""
        return self._with_section("planner", changes)

    def _with_section(self, section: str, changes: dict[str, Any]) -> Config:
        current: BaseModel = getattr(self, section)
        given = {k: v for k, v in changes.items() if v is not None}
        if not given:
            return self
        try:
            replaced = type(current).model_validate(current.model_dump() | given)
        except ValidationError as exc:
            raise ConfigError(list(_describe(exc, prefix=(section,)))) from None
        copy = self.model_copy(update={section: replaced})
        copy._path = self._path
        return copy


def find_config(path: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use, following the documented search order."""
    if path is not None:
        return _existing(Path(path), "--config")
    if env := os.environ.get(CONFIG_ENV):
        return _existing(Path(env), f"${CONFIG_ENV}")
    local = Path("config.yaml")
    if local.is_file():
        return local.resolve()
    return default_config_path()


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Find, read and validate config.yaml; every problem is reported with its key path."""
    found = find_config(path)
    try:
        text = found.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{found}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{found}: not a UTF-8 text file") from None
    return parse_config(text, path=found)


def parse_config(text: str, *, path: Path | None = None) -> Config:
    source = str(path) if path else "config"
    try:
        data = load_yaml(text)
    except RecursionError:
        raise ConfigError(f"{source}: the YAML is nested too deeply") from None
    except TooLarge as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of settings")
    problems = [f"{source}: {p}" for p in _check_tool_names(data.get("tools"))]
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += [f"{source}: {p}" for p in _describe(exc)]
    if problems:
        raise ConfigError(problems)
    config._path = path.resolve() if path else None
    return config


def _existing(path: Path, origin: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (from {origin})")
    return path.resolve()


def _check_tool_names(tools: Any) -> Iterable[str]:
    if not isinstance(tools, dict):
        return
    for name in tools:
        if not isinstance(name, str) or not re.match(TOOL_NAME_PATTERN, name):
            yield f"tools.{name}: tool names may use only letters, digits, '_' and '-'"


def _describe(exc: ValidationError, prefix: tuple[str, ...] = ()) -> Iterable[str]:
    """One line per error: the dotted key path, then what is wrong and what is allowed."""
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in (*prefix, *err["loc"])]
        # A tagged union puts the tag into the path (tools.x.command.command): drop it.
        if len(loc) >= 3 and loc[0] == "tools" and loc[2] in TOOL_KINDS:
            del loc[2]
        key = ".".join(loc)
        kind = err["type"]
        kinds = ", ".join(TOOL_KINDS)
        if kind == "union_tag_invalid":
            tag = str(err.get("ctx", {}).get("tag", ""))
            yield (
                f"{key}.kind: unknown tool kind {tag!r}{did_you_mean(tag, TOOL_KINDS)}; "
                f"expected one of {kinds}"
            )
        elif kind == "union_tag_not_found":
            yield f"{key}.kind: missing; every tool needs a kind ({kinds})"
        elif kind == "extra_forbidden":
            yield f"{key}: unknown setting{_suggest_key(err['loc'])}"
        elif kind == "missing":
            yield f"{key}: required setting is missing"
        elif kind == "value_error" and "error" in err.get("ctx", {}):
            yield f"{key}: {err['ctx']['error']}"  # our own validators' words, unprefixed
        else:
            yield f"{key}: {err['msg']}"


def _suggest_key(loc: tuple[int | str, ...]) -> str:
    """Suggest the closest known key for an unknown one, looked up by where it sits."""
    sections: dict[str, type[BaseModel]] = {
        "execution": ExecutionSettings,
        "planner": PlannerSettings,
        "llm": LlmSettings,
    }
    if len(loc) == 1:
        candidates: Iterable[str] = Config.model_fields
    elif len(loc) == 2 and str(loc[0]) in sections:
        candidates = sections[str(loc[0])].model_fields
    elif len(loc) == 3 and loc[0] == "llm" and str(loc[1]) in LlmSettings.model_fields:
        nested = LlmSettings.model_fields[str(loc[1])].annotation
        candidates = (
            nested.model_fields
            if isinstance(nested, type) and issubclass(nested, BaseModel)
            else ()
        )
    elif len(loc) == 4 and loc[0] == "tools" and str(loc[2]) in SPEC_BY_KIND:
        candidates = SPEC_BY_KIND[str(loc[2])].model_fields
    else:
        return ""
    return did_you_mean(str(loc[-1]), candidates)
