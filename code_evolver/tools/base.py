"""The seam between the executor and everything a step can do: ``Tool.run(ToolCall)``.

A tool receives the step's rendered input and params and returns its output: text, or a JSON
object/array that later steps can read with ``{step.key}``. Failing means raising a ``StepError``
(``ToolFailed``); any other exception is wrapped into one by the executor. Cancellation (timeout,
fail-fast, Ctrl-C) arrives as ``asyncio.CancelledError`` and a tool must release what it holds,
e.g. kill its process group, before letting it propagate.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from code_evolver.errors import RenderError
from code_evolver.templating import MissingKey, Ref, Template, lookup_path, parse, to_text

Output = str | dict[str, Any] | list[Any]

TOOL_TEMPLATE_NAMES = ("input", "params")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One invocation: the rendered input, the merged params, and who asked."""

    input: str
    params: Mapping[str, Any] = field(default_factory=dict)
    step_id: str = ""
    attempt: int = 1


class Tool(abc.ABC):
    """A named, configured capability. Subclasses implement :meth:`run`."""

    kind: str = "tool"

    def __init__(
        self,
        name: str,
        *,
        description: str = "",
        max_concurrency: int | None = None,
        timeout_s: float | None = None,
        retries: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.default_params: Mapping[str, Any] = dict(params or {})

    @property
    def required_params(self) -> frozenset[str]:
        """Params a step must give (the ``{params.NAME}`` its templates use without a default)."""
        return frozenset()

    @abc.abstractmethod
    async def run(self, call: ToolCall) -> Output:
        """Do the work for one attempt of one step."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def output_to_json(value: Any) -> Output:
    """Normalize what a tool returned: text, or a JSON object/array; anything else as text."""
    if isinstance(value, str | dict | list):
        return value
    if value is None:
        return ""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, bool | int | float):
        return to_text(value)
    return str(value)


def parse_tool_template(text: str) -> Template:
    """Parse a tool's template, rejecting placeholders other than ``{input}`` and ``{params.X}``."""
    template = parse(text)
    for ref in template.refs:
        if ref.name not in TOOL_TEMPLATE_NAMES:
            raise ValueError(
                f"unknown placeholder {ref}; use {{input}} or {{params.NAME}} "
                "(write {{ and }} for literal braces)"
            )
    return template


def params_used(templates: list[Template]) -> frozenset[str]:
    """The top-level param names that ``{params.NAME...}`` placeholders read."""
    return frozenset(
        ref.path[0] for t in templates for ref in t.refs if ref.name == "params" and ref.path
    )


def tool_resolver(call: ToolCall) -> Callable[[Ref], str]:
    """Resolve ``{input}`` / ``{params.NAME}`` placeholders of a tool template for one call."""

    def resolve(ref: Ref) -> str:
        root: Any = call.input if ref.name == "input" else call.params
        try:
            return to_text(lookup_path(root, ref.path))
        except MissingKey as exc:
            raise RenderError(f"tool {ref}: {exc}") from None

    return resolve
