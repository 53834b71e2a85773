"""The seam between the executor and everything a step can do: ``Tool.run(ToolCall)``.

A tool receives the step's rendered input and params and returns its output: text, or a JSON
object/array that later steps can read with ``{step.key}``. Failing means raising a ``StepError``
(``ToolFailed``); any other exception is wrapped into one by the executor. Cancellation (timeout,
fail-fast, Ctrl-C) arrives as ``asyncio.CancelledError`` and a tool must release what it holds,
e.g. kill its process group, before letting it propagate.
"""

from __future__ import annotations

import abc
import datetime
import decimal
import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from code_evolver.errors import RenderError, ToolFailed
from code_evolver.templating import MissingKey, Ref, Template, lookup_path, parse, to_text

if TYPE_CHECKING:
    from code_evolver.launch.launcher import Launcher

Output = str | dict[str, Any] | list[Any]

TOOL_TEMPLATE_NAMES = ("input", "params")


class Caller(Protocol):
    """Lets a running tool call other tools under the run's limits (``code_evolver.calls``)."""

    async def call(
        self,
        tool: str,
        input: str,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Output: ...


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One invocation: the rendered input, the merged params, and who asked."""

    input: str
    params: Mapping[str, Any] = field(default_factory=dict)
    step_id: str = ""
    attempt: int = 1
    calls: Caller | None = None
    """Where the tool's own tool calls go (node scripts); None outside a run."""
    launcher: Launcher | None = None
    """How the run starts processes (isolation, limits); None: the defaults."""
    on_output: Callable[[str], None] | None = None
    """Told each piece of the output as it is made (a final answer, streamed to the screen);
    None: nobody watches, and a tool makes its output whole."""
    on_stage: StageListener | None = None
    """Told of the stages of a tool's own work (a generate step's attempts), which the run
    shows and records as calls under the step; None outside a run."""


class StageListener(Protocol):
    def __call__(
        self, stage: str, name: str, status: str, seconds: float = 0.0, error: str | None = None
    ) -> None:
        """``stage``: an id unique in the step; ``status``: running, then succeeded or
        failed with the seconds it took (and why it failed)."""


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

    @property
    def resource(self) -> str | None:
        """A capacity this tool shares with other tools (e.g. one LLM backend), if any."""
        return None

    @property
    def resource_capacity(self) -> int | None:
        """How many calls the shared resource serves at once; read when a run starts."""
        return None

    async def prepare(self) -> None:  # noqa: B027 - an optional hook
        """Async set-up before a run may use the tool (e.g. decide which backend serves it)."""

    async def close(self) -> None:  # noqa: B027 - an optional hook
        """Release what the tool made for itself (not what its session gave it)."""

    @abc.abstractmethod
    async def run(self, call: ToolCall) -> Output:
        """Do the work for one attempt of one step."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def output_to_json(value: Any) -> Output:
    """Normalize what a tool returned: text, or a JSON object/array; anything else as text.

    Objects and arrays are round-tripped through strict JSON (dates and paths become text), so
    every output can be printed, saved and read by later steps. Raises ToolFailed when an
    output cannot be JSON (NaN, or an object with no text form).
    """
    if isinstance(value, str):
        return _valid_text(value)
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return to_text(value)
    if isinstance(value, dict | list | tuple):
        try:
            text = _valid_text(
                json.dumps(value, ensure_ascii=False, allow_nan=False, default=_as_json)
            )
        except (TypeError, ValueError) as exc:
            raise ToolFailed(f"the tool's output is not JSON: {exc}", retryable=False) from None
        result: dict[str, Any] | list[Any] = json.loads(text)
        return result
    return _valid_text(str(value))


def _as_json(value: Any) -> Any:
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, os.PathLike | decimal.Decimal | uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _valid_text(text: str) -> str:
    """Text that can be written as UTF-8 (a lone surrogate cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


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
