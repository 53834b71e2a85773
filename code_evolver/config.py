"""config.yaml: the layers it comes from, what it may contain, and errors that name the file and
the key path.

A config is read from up to three layers, each overriding only the keys it sets:

1. the defaults packaged with Code Evolver (this repository's ``config.yaml``);
2. ``$EVOLVE_HOME/config.yaml`` (default ``~/.code_evolver/config.yaml``), skipped when absent;
3. the project's config: the first of ``--config PATH``, ``$CODE_EVOLVER_CONFIG`` and
   ``./config.yaml`` (an explicit path that does not exist is an error).

Mappings (``llm``, ``planner``, ``execution`` and the mappings inside them) are merged key by
key; any other value (text, a number, a list, null) replaces the one before. Tools are merged by
name, but a layer that defines a tool replaces that tool's whole spec, never part of it: kinds
have different fields, and half of a ``command`` merged into an ``llm`` spec is never what was
meant. ``tools: {NAME: null}`` removes a tool an earlier layer defined.

Relative paths in a tool (a prompt, a script, a command's ``cwd``, the modules of a function
tool) are relative to the folder of the file that defined the tool. Every problem names the
file that set the key and the key path; :attr:`Config.origins` says which file set what.
"""

from __future__ import annotations

import os
import random
import resource
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic_core import ErrorDetails

from code_evolver.config_layers import (
    Layer,
    LayeredConfig,
    origin_of,
    parse_document,
    project_config,
    read_layers,
)
from code_evolver.errors import ConfigError
from code_evolver.launch.limits import Limits
from code_evolver.llm.settings import LlmSettings
from code_evolver.resources import default_config_path
from code_evolver.suggest import did_you_mean
from code_evolver.tools.specs import SPEC_BY_KIND, TOOL_KINDS, ToolSpec

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
    history: bool = True
    """Keep every run and step in ``$EVOLVE_HOME/history.db`` (``evolve runs``, ``resume``)."""

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
    endpoint: str | None = None
    """With ``llm.endpoints``: the one the planner asks (default: the strongest model's)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"mode": data} if isinstance(data, str) else data


class EvolveSettings(BaseModel):
    """How nodes are written, proved and reused (``evolve:`` in config.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_attempts: int = Field(default=3, ge=1, le=10)
    """Rounds of writing a node and its tests before the step falls back to an LLM step."""
    escalation_model: str | None = None
    """A stronger model for the last attempt (same backend), if any."""
    reuse: bool = True
    """Run a stored node that does what a step asks instead of writing one (--no-reuse)."""
    reuse_threshold: float = Field(default=0.6, ge=0, le=1)
    """How alike a step's description and a stored node's must be to run the node."""
    test_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    allowed_imports: tuple[str, ...] | None = None
    """Modules generated code may import; None: computation and text modules only."""


class Config(BaseModel):
    """The whole configuration. Build one in code, or load it with :func:`load_config`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    llm: LlmSettings = Field(default_factory=LlmSettings)
    planner: PlannerSettings = Field(default_factory=PlannerSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    evolve: EvolveSettings = Field(default_factory=EvolveSettings)
    tools: dict[str, ToolSpec] = Field(default_factory=dict)

    _path: Path | None = PrivateAttr(default=None)
    _sources: tuple[Path, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _planner_endpoint_is_listed(self) -> Config:
        wanted = self.planner.endpoint
        names = [e.name for e in self.llm.endpoints]
        if wanted is not None and wanted not in names:
            known = ", ".join(names) or "none configured"
            raise ValueError(f"planner.endpoint: no endpoint {wanted!r} in llm.endpoints ({known})")
        return self

    _origins: dict[str, Path] = PrivateAttr(default_factory=dict)

    @property
    def path(self) -> Path | None:
        """The file this config was loaded from, if any: of its layers, the one that wins (the
        project's config, else ``$EVOLVE_HOME/config.yaml``, else the packaged one)."""
        return self._path

    @property
    def sources(self) -> tuple[Path, ...]:
        """Every file this config was loaded from, lowest layer first."""
        return self._sources

    @property
    def origins(self) -> Mapping[str, Path]:
        """The file each setting came from, by dotted key path of every value a file set
        (``llm.backend``, ``tools.shout.command``); settings no file set are absent."""
        return MappingProxyType(self._origins)

    def origin(self, key: str) -> Path | None:
        """The file that set ``key`` (a dotted path, e.g. ``tools.shout``), if a file did."""
        return origin_of(self._origins, key)

    @property
    def base_dir(self) -> Path:
        """The folder of :attr:`path` (or the working directory for a config made in code)."""
        return self._path.parent if self._path else Path.cwd()

    def tool_dir(self, name: str) -> Path:
        """The folder that relative paths of tool ``name`` are relative to: that of the file
        that defined the tool."""
        origin = self.origin(f"tools.{name}")
        return origin.parent if origin else self.base_dir

    def with_execution(self, **changes: Any) -> Config:
        """A copy with some execution settings replaced (CLI flags), validated like the file."""
        return self._with_section("execution", changes)

    def with_llm(self, **changes: Any) -> Config:
        """A copy with some ``llm`` settings replaced (``--backend``, ``--model``)."""
        return self._with_section("llm", changes)

    def with_planner(self, **changes: Any) -> Config:
        """A copy with some ``planner`` settings replaced (``--planner``, ``--no-cache``)."""
        return self._with_section("planner", changes)

    def with_evolve(self, **changes: Any) -> Config:
        """A copy with some ``evolve`` settings replaced (``--no-reuse``)."""
        return self._with_section("evolve", changes)

    def _with_section(self, section: str, changes: dict[str, Any]) -> Config:
        current: BaseModel = getattr(self, section)
        given = {k: v for k, v in changes.items() if v is not None}
        if not given:
            return self
        try:
            replaced = type(current).model_validate(current.model_dump() | given)
        except ValidationError as exc:
            raise ConfigError([p for _, p in _describe(exc, prefix=(section,))]) from None
        copy = self.model_copy(update={section: replaced})
        copy._path, copy._sources, copy._origins = self._path, self._sources, self._origins
        return copy


def find_config(path: str | os.PathLike[str] | None = None) -> Path:
    """The project's config file (``--config``, ``$CODE_EVOLVER_CONFIG``, ``./config.yaml``),
    else the packaged one: the top layer, which :func:`load_config` stacks on the others."""
    project = project_config(path)
    return project[0] if project else default_config_path()


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read every layer (packaged defaults, ``$EVOLVE_HOME/config.yaml``, the project's config
    or ``path``), merge and validate them; every problem names its file and key path."""
    return _validated(read_layers(path))


def parse_config(text: str, *, path: Path | None = None) -> Config:
    """One config document on its own (no layers); ``path`` is where it was read from, for
    messages and relative paths."""
    file = path.resolve() if path else None
    stack = LayeredConfig()
    stack.add(Layer(file, "config", parse_document(text, file)))
    return _validated(stack)


def _validated(stack: LayeredConfig) -> Config:
    problems = list(stack.problems)
    top = stack.layers[-1].path if stack.layers else None
    try:
        config = Config.model_validate(stack.data)
    except ValidationError as exc:
        for loc, problem in _describe(exc):
            source = origin_of(stack.origins, ".".join(loc)) or top
            problems.append(f"{source or 'config'}: {problem}")
    if problems:
        raise ConfigError(problems)
    config._path = top
    config._sources = tuple(layer.path for layer in stack.layers if layer.path)
    config._origins = dict(stack.origins)
    return config


def _describe(
    exc: ValidationError, prefix: tuple[str, ...] = ()
) -> Iterable[tuple[tuple[str, ...], str]]:
    """One line per error, with its key path: the dotted key path, then what is wrong and what
    is allowed."""
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in (*prefix, *err["loc"])]
        # A tagged union puts the tag into the path (tools.x.command.command): drop it.
        if len(loc) >= 3 and loc[0] == "tools" and loc[2] in TOOL_KINDS:
            del loc[2]
        yield tuple(loc), _problem(err, ".".join(loc))


def _problem(err: ErrorDetails, key: str) -> str:
    kind = err["type"]
    kinds = ", ".join(TOOL_KINDS)
    if kind == "union_tag_invalid":
        tag = str(err.get("ctx", {}).get("tag", ""))
        return (
            f"{key}.kind: unknown tool kind {tag!r}{did_you_mean(tag, TOOL_KINDS)}; "
            f"expected one of {kinds}"
        )
    if kind == "union_tag_not_found":
        return f"{key}.kind: missing; every tool needs a kind ({kinds})"
    if kind == "extra_forbidden":
        return f"{key}: unknown setting{_suggest_key(err['loc'])}"
    if kind == "missing":
        return f"{key}: required setting is missing"
    if kind == "string_pattern_mismatch" and key.endswith(".function"):
        return (
            f"{key}: give it as module:function, like tools_mod:shout (the module's file is "
            "beside the config file, or importable)"
        )
    if kind == "too_short" and key.endswith(".command"):
        return f"{key}: name the program to run, and its arguments, like [wc, -w]"
    if kind == "list_type" and key.endswith(".command"):
        return (
            f"{key}: give the program and its arguments as a list, like [wc, -w] (no shell "
            "reads it, so it is never one string)"
        )
    if kind == "list_type":
        return f"{key}: should be a list, like [a, b] (or one '- item' a line)"
    if kind == "value_error" and "error" in err.get("ctx", {}):
        return f"{key}: {err['ctx']['error']}"  # our own validators' words, unprefixed
    return f"{key}: {err['msg']}"


def _suggest_key(loc: tuple[int | str, ...]) -> str:
    """Suggest the closest known key for an unknown one, looked up by where it sits."""
    sections: dict[str, type[BaseModel]] = {
        "execution": ExecutionSettings,
        "evolve": EvolveSettings,
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
