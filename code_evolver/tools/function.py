"""``kind: function``: a Python callable ``f(input, **params) -> str | dict``, run in-process.

A tool from config.yaml names its function as ``module:name`` and imports the module when a
step first uses the tool, not when the tool is built: listing the tools or planning never runs a
module's code, and a module that cannot be imported fails the steps that use it (each with the
same message, naming the config file and key), not the whole command. Its description comes
from the config's ``description:``, since reading the docstring would mean importing it.

Coroutine functions are awaited on the event loop; plain functions run in a thread of their own
so a slow one never blocks the scheduler. A thread cannot be killed: when a sync function times
out or the run is interrupted, its attempt ends at once and the thread's eventual result is
dropped. The threads are daemons, so an abandoned one never keeps the process alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from code_evolver.errors import StepError, ToolFailed
from code_evolver.tools.base import Output, Tool, ToolCall, output_to_json


class FunctionTool(Tool):
    """A callable, or a ``module:name`` reference imported on first use (``search_dir``: a
    folder to import modules from; ``where``: what to name in an import error, e.g.
    ``config.yaml: tools.shout.function``)."""

    kind = "function"

    def __init__(
        self,
        name: str,
        function: Callable[..., Any] | str,
        *,
        search_dir: Path | None = None,
        where: str = "",
        **settings: Any,
    ) -> None:
        if not settings.get("description") and callable(function):
            doc = inspect.getdoc(function) or ""
            settings["description"] = doc.strip().splitlines()[0] if doc.strip() else ""
        super().__init__(name, **settings)
        self.reference = function if isinstance(function, str) else None
        """``module:name`` for a function not imported yet (None for a callable given)."""
        self._function = None if isinstance(function, str) else function
        self._search_dir = search_dir
        self._where = where or f"tool {name!r}"
        self._import_error: str | None = None

    @property
    def target(self) -> str:
        """What it calls: ``module:name``, or a given callable's qualified name."""
        if self.reference is not None:
            return self.reference
        function = self._function
        return f"{getattr(function, '__module__', '')}:{getattr(function, '__qualname__', '')}"

    @property
    def imported(self) -> bool:
        """Whether the function is at hand (given as a callable, or imported by a step)."""
        return self._function is not None

    async def resolve(self) -> Callable[..., Any]:
        """The callable, importing its module the first time; ToolFailed (not retried) when
        that fails, and again for every later step without importing it again."""
        if self._function is not None:
            return self._function
        if self._import_error is None:
            reference = self.reference or ""
            try:
                self._function = await in_thread(import_function, reference, self._search_dir)
                return self._function
            except ValueError as exc:
                self._import_error = f"{self._where}: {exc}"
        raise ToolFailed(self._import_error, retryable=False)

    async def run(self, call: ToolCall) -> Output:
        try:
            function = await self.resolve()
            if inspect.iscoroutinefunction(function):
                result = await function(call.input, **call.params)
            else:
                result = await in_thread(function, call.input, **call.params)
                if inspect.isawaitable(result):
                    result = await result
        except (StepError, asyncio.CancelledError):
            raise
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            # SystemExit from a tool must not end the whole program, nor pick its exit code.
            raise ToolFailed(f"{type(exc).__name__}: {exc}{_where_raised(exc)}") from exc
        return output_to_json(result)


def _where_raised(exc: BaseException) -> str:
    """`` (at FILE:LINE in NAME)``: the last line of the tool's own code that the error went
    through (not Python's library, nor evolve's), so a failed step says where to look."""
    own = None
    tb = exc.__traceback__
    library = (sys.prefix, sys.base_prefix, str(Path(__file__).resolve().parents[1]))
    while tb is not None:
        code = tb.tb_frame.f_code
        if not code.co_filename.startswith(library) and not code.co_filename.startswith("<"):
            own = (code.co_filename, tb.tb_lineno, code.co_name)
        tb = tb.tb_next
    if own is None:
        return ""
    return f" (at {Path(own[0]).name}:{own[1]} in {own[2]})"


async def in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` in a new daemon thread and await its result."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Any, failed: bool) -> None:
        if not future.done():
            if failed:
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def work() -> None:
        try:
            outcome, failed = function(*args, **kwargs), False
        except BaseException as exc:
            outcome, failed = exc, True
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome, failed)

    threading.Thread(target=work, name=f"evolve-tool-{function.__name__}", daemon=True).start()
    return await future


def import_function(reference: str, search_dir: Path | None = None) -> Callable[..., Any]:
    """Import ``module:name``; modules beside the config file are importable too."""
    module_name, _, attr = reference.partition(":")
    if search_dir is not None and str(search_dir) not in sys.path:
        sys.path.append(str(search_dir))
    try:
        module = importlib.import_module(module_name)
    except SystemExit as exc:  # a module that "exits" on import must not end evolve
        raise ValueError(
            f"cannot import module {module_name!r}: it raised SystemExit({exc.code!r})"
        ) from None
    except Exception as exc:
        raise ValueError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    function = getattr(module, attr, None)
    if function is None:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
    if not callable(function):
        raise ValueError(f"{reference} is not callable")
    return function  # type: ignore[no-any-return]
