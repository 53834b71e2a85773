"""What config.yaml may say about a tool: one pydantic model per ``kind``.

The models only describe configuration; ``code_evolver.tools.registry`` turns them into runnable
tools. Adding a kind means adding a spec here and a tool class beside it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from code_evolver.launch.limits import LimitOverrides


class ToolSpecBase(BaseModel):
    """Settings every kind shares. ``None`` means "use the execution default"."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    description: str = ""
    max_concurrency: int | None = Field(default=None, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0, le=20)
    params: dict[str, Any] = Field(default_factory=dict)
    """Default params, merged under each step's own params."""

    @field_validator("params")
    @classmethod
    def _json_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(params, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"params must be JSON values (text, numbers, lists, mappings); quote dates "
                f"and the like ({exc})"
            ) from None
        return params


EnvSetting = dict[str, str | None] | list[str]
"""A tool's ``env:``: names passed through from evolve's environment (a list, or ``NAME: null``)
and variables set to a value (``NAME: value``)."""


class ProcessSpec(ToolSpecBase):
    """What every tool that runs a process may also say: isolation, limits, environment."""

    sandbox: Literal["strict", "contain", "none"] | None = None
    """Isolation of the tool's processes; default: ``execution.sandbox`` (``auto``: strict for
    nodes, contain for commands)."""
    limits: LimitOverrides | None = None
    """Resource limits replacing ``execution.limits`` key by key."""
    env: EnvSetting = Field(default_factory=dict)
    """Environment variables beyond the allow-list every child gets (PATH, HOME, LANG, LC_*,
    TZ, TMPDIR)."""

    @property
    def env_mapping(self) -> dict[str, str | None]:
        if isinstance(self.env, list):
            return dict.fromkeys(self.env)
        return dict(self.env)


class CommandSpec(ProcessSpec):
    """A program run with an argv list (never a shell); input on stdin, output from stdout."""

    kind: Literal["command"]
    command: list[str] = Field(min_length=1)
    cwd: str | None = None
    """Working directory, relative to the config file's folder (the default)."""
    runtime: bool = False
    """Offer the program the run's runtime channel (a Python script calling tools with
    ``node_runtime``); off by default: a program gets only what it needs."""


class FunctionSpec(ToolSpecBase):
    """An importable Python callable ``module:name``, called in-process."""

    kind: Literal["function"]
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class TemplateSpec(ToolSpecBase):
    """Returns its rendered input: joins the outputs of earlier steps without any model."""

    kind: Literal["template"]


class LlmSpec(ToolSpecBase):
    """A prompt template (``{input}``, ``{params.NAME}``) answered by the configured model."""

    kind: Literal["llm"]
    prompt: str
    """Path of the prompt template, relative to the config file's folder."""
    system: str | None = None
    """System message sent before the prompt."""
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)


class NodeSpec(ProcessSpec):
    """A Python script with the node contract (stdin ``{"input", "params"}``, stdout
    ``{"result"}``) whose ``node_runtime`` calls are brokered by the run."""

    kind: Literal["node"]
    script: str
    """Path of the script, relative to the config file's folder."""


class GeneratedSpec(ToolSpecBase):
    """Writes (or reuses) a tested node for a step that no other tool can do; the step's
    ``task`` param (else its description) says what it must do. Settings: ``evolve:``."""

    kind: Literal["generated"]


ToolSpec = Annotated[
    CommandSpec | FunctionSpec | TemplateSpec | LlmSpec | NodeSpec | GeneratedSpec,
    Field(discriminator="kind"),
]

SPEC_BY_KIND: dict[str, type[ToolSpecBase]] = {
    "command": CommandSpec,
    "function": FunctionSpec,
    "template": TemplateSpec,
    "llm": LlmSpec,
    "node": NodeSpec,
    "generated": GeneratedSpec,
}
TOOL_KINDS: tuple[str, ...] = tuple(SPEC_BY_KIND)
