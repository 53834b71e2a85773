"""``kind: function``: a Python callable ``f(input, **params) -> str | dict``, run in-process.

Coroutine functions are awaited on the event loop; plain functions run in a worker thread so a
slow one never blocks the scheduler. A thread cannot be killed: when a sync function times out,
its attempt is abandoned and its eventual result ignored.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from code_evolver.errors import StepError, ToolFailed
from code_evolver.tools.base import Output, Tool, ToolCall, output_to_json

# Threads are created on demand, so a generous cap costs nothing until sync tools run in parallel;
# the default executor's cap (cores + 4) would quietly serialize them on small machines.
_MAX_THREADS = 64
_pool: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_MAX_THREADS, thread_name_prefix="evolve-tool")
    return _pool


class FunctionTool(Tool):
    kind = "function"

    def __init__(self, name: str, function: Callable[..., Any], **settings: Any) -> None:
        if not settings.get("description"):
            doc = inspect.getdoc(function) or ""
            settings["description"] = doc.strip().splitlines()[0] if doc.strip() else ""
        super().__init__(name, **settings)
        self.function = function
        self._is_async = inspect.iscoroutinefunction(function)

    async def run(self, call: ToolCall) -> Output:
        try:
            if self._is_async:
                result = await self.function(call.input, **call.params)
            else:
                bound = functools.partial(self.function, call.input, **call.params)
                result = await asyncio.get_running_loop().run_in_executor(_threads(), bound)
                if inspect.isawaitable(result):
                    result = await result
        except StepError:
            raise
        except Exception as exc:
            raise ToolFailed(f"{type(exc).__name__}: {exc}") from exc
        return output_to_json(result)


def import_function(reference: str, search_dir: Path | None = None) -> Callable[..., Any]:
    """Import ``module:name``; modules beside the config file are importable too."""
    module_name, _, attr = reference.partition(":")
    if search_dir is not None and str(search_dir) not in sys.path:
        sys.path.append(str(search_dir))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from exc
    function = getattr(module, attr, None)
    if function is None:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
    if not callable(function):
        raise ValueError(f"{reference} is not callable")
    return function  # type: ignore[no-any-return]
