"""Normalising the items of ``call_tools_parallel``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Call:
    tool: str
    prompt: str
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self, index: int | None = None) -> str:
        where = f"call {index} " if index is not None else "call "
        return f"{where}({self.tool!r})"


_SHAPES = "(tool, prompt), (tool, prompt, params) or {'tool': ..., 'prompt': ..., 'params': ...}"


def to_call(item: Any, index: int) -> Call:
    """One item as a Call; TypeError naming the index when it has another shape."""
    if isinstance(item, Mapping):
        unknown = set(item) - {"tool", "prompt", "params"}
        if unknown or "tool" not in item or "prompt" not in item:
            raise TypeError(f"calls[{index}]: expected {_SHAPES}, got keys {sorted(item)}")
        tool, prompt, params = item["tool"], item["prompt"], item.get("params") or {}
    elif isinstance(item, tuple | list) and len(item) in (2, 3):
        tool, prompt = item[0], item[1]
        params = item[2] if len(item) == 3 else {}
    else:
        raise TypeError(f"calls[{index}]: expected {_SHAPES}, got {type(item).__name__}")
    if not isinstance(tool, str) or not tool:
        raise TypeError(f"calls[{index}]: the tool must be a name (str), got {tool!r}")
    if not isinstance(prompt, str):
        raise TypeError(f"calls[{index}]: the prompt must be str, got {type(prompt).__name__}")
    if not isinstance(params, Mapping):
        raise TypeError(f"calls[{index}]: params must be a dict, got {type(params).__name__}")
    return Call(tool, prompt, dict(params))
