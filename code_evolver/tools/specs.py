"""What config.yaml may say about a tool: one pydantic model per ``kind``.

The models only describe configuration; ``code_evolver.tools.registry`` turns them into runnable
tools. Adding a kind means adding a spec here and a tool class beside it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"


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


class CommandSpec(ToolSpecBase):
    """A program run with an argv list (never a shell); input on stdin, output from stdout."""

    kind: Literal["command"]
    command: list[str] = Field(min_length=1)
    cwd: str | None = None
    """Working directory, relative to the config file's folder (the default)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables, added to the inherited environment."""


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


class NodeSpec(ToolSpecBase):
    """A Python script with the node contract (stdin ``{"input", "params"}``, stdout
    ``{"result"}``) whose ``node_runtime`` calls are brokered by the run."""

    kind: Literal["node"]
    script: str
    """Path of the script, relative to the config file's folder."""
    env: dict[str, str] = Field(default_factory=dict)


ToolSpec = Annotated[
    CommandSpec | FunctionSpec | TemplateSpec | LlmSpec | NodeSpec, Field(discriminator="kind")
]

SPEC_BY_KIND: dict[str, type[ToolSpecBase]] = {
    "command": CommandSpec,
    "function": FunctionSpec,
    "template": TemplateSpec,
    "llm": LlmSpec,
    "node": NodeSpec,
}
TOOL_KINDS: tuple[str, ...] = tuple(SPEC_BY_KIND)
