"""The tools a run can use, built from config.yaml plus any Python callables given in code."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from code_evolver.config import Config, EvolveSettings
from code_evolver.errors import ConfigError, ToolNotFound
from code_evolver.evolve.node_store import NodeStore, StoredNode
from code_evolver.llm.service import LLMService
from code_evolver.suggest import did_you_mean
from code_evolver.tools.base import Tool, parse_tool_template
from code_evolver.tools.command import CommandTool
from code_evolver.tools.function import FunctionTool
from code_evolver.tools.generated import GeneratedTool
from code_evolver.tools.llm import LlmTool
from code_evolver.tools.node import NodeTool
from code_evolver.tools.specs import (
    CommandSpec,
    FunctionSpec,
    GeneratedSpec,
    LlmSpec,
    NodeSpec,
    ProcessSpec,
    TemplateSpec,
    ToolSpecBase,
)
from code_evolver.tools.template import TemplateTool

ToolLike = Tool | Callable[..., Any]


class ToolRegistry(Mapping[str, Tool]):
    """A read-only name -> tool mapping whose lookups fail with a suggestion."""

    def __init__(self, tools: Mapping[str, Tool], llm: LLMService | None = None) -> None:
        self._tools = dict(tools)
        self.llm = llm
        """The model service the llm tools share (None when no tool needs one)."""
        self._definitions: dict[str, tuple[ToolSpecBase, Path]] = {}
        self._digests: dict[str, str] = {}
        self._stored: set[str] = set()
        """Tools that are stored nodes (a newer version replaces them)."""

    def add_node(self, node: StoredNode) -> None:
        """A node of the registry as a tool of this run (strict, like any node): stored
        nodes are tools plans can use, and one written during a session joins it at once.
        A configured tool of the same name keeps the name."""
        if node.name in self._tools and node.name not in self._stored:
            return
        self._tools[node.name] = NodeTool(node.name, node.main, description=node.description)
        self._stored.add(node.name)
        self._digests.pop(node.name, None)

    def add_stored_nodes(self, store: NodeStore | None = None) -> None:
        """Every node of ``$EVOLVE_HOME/nodes`` (its newest version) as a tool."""
        for node in (store or NodeStore()).all():
            self.add_node(node)

    def digest(self, name: str) -> str:
        """A digest of what the tool does: its settings and the prompt or script they name.
        History keeps it with each step, so that resuming re-runs a step whose tool changed."""
        if (known := self._digests.get(name)) is not None:
            return known
        tool = self[name]
        material = f"{tool.kind}:{type(tool).__qualname__}:{tool.description}"
        if (definition := self._definitions.get(name)) is not None:
            spec, folder = definition
            material = spec.model_dump_json()
            for path in (getattr(spec, "prompt", None), getattr(spec, "script", None)):
                if isinstance(path, str):
                    try:
                        material += hashlib.sha256((folder / path).read_bytes()).hexdigest()
                    except OSError:
                        material += f"{path}: unreadable"
        elif isinstance(tool, NodeTool):
            try:
                material += hashlib.sha256(tool.script.read_bytes()).hexdigest()
            except OSError:
                material += f"{tool.script}: unreadable"
        elif isinstance(tool, FunctionTool):
            material += f":{tool.target}"
        self._digests[name] = digest = hashlib.sha256(material.encode()).hexdigest()[:16]
        return digest

    @classmethod
    def from_config(
        cls,
        config: Config,
        extra: Mapping[str, ToolLike] | None = None,
        *,
        llm: LLMService | None = None,
    ) -> ToolRegistry:
        """Build every configured tool; all problems are reported at once, each with the file
        that defined the tool and the key path. Relative paths of a tool are relative to that
        file's folder. Function tools import their module when a step first uses them.

        ``llm`` is the service llm tools use; by default one is made from ``config.llm``
        (nothing is loaded or contacted until a tool or the planner first needs it).
        """
        llm = llm or LLMService(config.llm)
        tools: dict[str, Tool] = {}
        problems: list[str] = []
        for name, spec in config.tools.items():
            source = config.origin(f"tools.{name}")
            where = f"{source}: tools.{name}" if source else f"tools.{name}"
            try:
                tools[name] = build_tool(
                    name,
                    spec,
                    config.tool_dir(name),
                    llm,
                    config.path,
                    where=where,
                    evolve=config.evolve,
                    others=tuple(n for n in config.tools if n != name),
                )
            except SpecError as exc:
                problems.append(f"{where}.{exc.field}: {exc}")
        if problems:
            raise ConfigError(problems)
        for name, tool in (extra or {}).items():
            tools[name] = as_tool(name, tool)
        registry = cls(tools, llm)
        registry._definitions = {
            name: (spec, config.tool_dir(name))
            for name, spec in config.tools.items()
            if name not in (extra or {})
        }
        registry.add_stored_nodes()
        for tool in tools.values():
            if isinstance(tool, GeneratedTool):
                tool.on_stored = registry.add_node
        return registry

    async def prepare(self, names: Iterable[str] | None = None) -> None:
        """Let the tools a run will use do their async set-up (each tool once)."""
        for name in dict.fromkeys(names if names is not None else self._tools):
            await self[name].prepare()

    def __getitem__(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolNotFound(
                f"unknown tool {name!r}{did_you_mean(name, self._tools)}; "
                "see `evolve tools` for the configured ones"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools


def as_tool(name: str, value: ToolLike) -> Tool:
    """A Tool as is; a plain callable becomes a function tool."""
    if isinstance(value, Tool):
        return value
    if callable(value):
        return FunctionTool(name, value)
    raise TypeError(f"tool {name!r} must be a Tool or a callable, not {type(value).__name__}")


class SpecError(ValueError):
    """A tool spec that validates but cannot be built; ``field`` is the offending key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def build_tool(
    name: str,
    spec: ToolSpecBase,
    base_dir: Path,
    llm: LLMService,
    config_path: Path | None = None,
    *,
    where: str = "",
    evolve: EvolveSettings | None = None,
    others: tuple[str, ...] = (),
) -> Tool:
    """Turn one validated spec into a runnable tool. Raises SpecError naming the bad key.

    ``base_dir`` is the folder of the file that defined the tool, ``config_path`` the config a
    process tool's script loads when it runs on its own, and ``where`` names the tool's spec in
    messages (``FILE: tools.NAME``).
    """
    settings: dict[str, Any] = {
        "description": spec.description,
        "max_concurrency": spec.max_concurrency,
        "timeout_s": spec.timeout_s,
        "retries": spec.retries,
        "params": spec.params,
    }
    if isinstance(spec, CommandSpec):
        for index, item in enumerate(spec.command):
            try:
                parse_tool_template(item)
            except ValueError as exc:
                raise SpecError(f"command[{index}]", str(exc)) from None
        cwd = base_dir / spec.cwd if spec.cwd else base_dir
        if not cwd.is_dir():
            raise SpecError("cwd", f"no such directory: {cwd}")
        return CommandTool(
            name,
            spec.command,
            cwd=cwd,
            runtime=spec.runtime,
            **_process(spec, config_path),
            **settings,
        )
    if isinstance(spec, FunctionSpec):
        # Imported when a step first uses it: listing tools or planning runs no module code.
        return FunctionTool(
            name,
            spec.function,
            search_dir=base_dir,
            where=f"{where or f'tools.{name}'}.function",
            **settings,
        )
    if isinstance(spec, NodeSpec):
        script = base_dir / spec.script
        if not script.is_file():
            raise SpecError("script", f"no such file: {script}")
        return NodeTool(name, script, **_process(spec, config_path), **settings)
    if isinstance(spec, TemplateSpec):
        return TemplateTool(name, **settings)
    if isinstance(spec, LlmSpec):
        path = base_dir / spec.prompt
        try:
            # Editors end files with a newline; the prompt should not.
            template = parse_tool_template(path.read_text(encoding="utf-8").rstrip("\n"))
        except OSError as exc:
            raise SpecError("prompt", f"cannot read {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise SpecError("prompt", f"{path}: {exc}") from None
        return LlmTool(
            name,
            template,
            llm,
            system_prompt=spec.system,
            max_tokens=spec.max_tokens,
            temperature=spec.temperature,
            **settings,
        )
    if isinstance(spec, GeneratedSpec):
        return GeneratedTool(name, llm, evolve=evolve, tools=others, **settings)
    raise SpecError("kind", f"no tool implementation for {type(spec).__name__}")


def _process(spec: ProcessSpec, config_path: Path | None) -> dict[str, Any]:
    """The settings every process tool takes from its spec."""
    return {
        "sandbox": spec.sandbox,
        "limits": spec.limits,
        "env": spec.env_mapping,
        "config_path": config_path,
    }
