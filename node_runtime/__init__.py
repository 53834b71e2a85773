"""The stable API for node scripts: call tools, many at once, from inside a workflow or not.

    from node_runtime import call_tool, call_tools_parallel
    text = call_tool("translator", "Hello", target_lang="French")
    fr, es = call_tools_parallel([("translator", text, {"target_lang": "French"}),
                                  ("translator", text, {"target_lang": "Spanish"})])

Run as a step of a workflow, a script's calls go to the workflow over an inherited channel
(``node_runtime.protocol``), so the run's limits, timeouts, retries and record apply. Run on its
own (``python my_node.py < input.json``), calls run in-process with config.yaml found as for
``evolve``. Either way a failed call raises :class:`ToolCallError` naming the call.

Node scripts read ``{"input": ..., "params": {...}}`` on stdin and print ``{"result": ...}``;
:func:`read_input`, :func:`write_result` and :func:`run_node` do that for you.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, Protocol

from node_runtime._items import Call, to_call
from node_runtime.errors import ToolCallError
from node_runtime.protocol import ENV_FD, ENV_TOKEN

__all__ = [
    "ToolCallError",
    "acall_tool",
    "acall_tools_parallel",
    "call_tool",
    "call_tools_parallel",
    "read_input",
    "run_node",
    "write_result",
]


class _Client(Protocol):
    def submit(
        self, tool: str, prompt: str, params: dict[str, Any], timeout_s: float | None
    ) -> Future[Any]: ...


_client: _Client | None = None
_client_lock = threading.Lock()


def _get_client() -> _Client:
    """Brokered when the workflow gave us a channel, else in-process (made once)."""
    global _client
    with _client_lock:
        if _client is None:
            fd, token = os.environ.get(ENV_FD), os.environ.get(ENV_TOKEN)
            if fd is not None and token:
                from node_runtime._brokered import BrokeredClient

                _client = BrokeredClient(int(fd), token)
            else:
                from node_runtime._local import LocalClient

                _client = LocalClient()
        return _client


def _text(output: Any) -> str:
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)


def _result(future: Future[Any], call: Call, index: int | None, timeout: float | None) -> str:
    try:
        return _text(future.result(timeout=None if timeout is None else timeout + 5))
    except ToolCallError as exc:
        raise exc.for_call(index) if index is not None else exc from None
    except TimeoutError:
        raise ToolCallError(
            f"{call.describe(index)} timed out after {timeout:g}s",
            tool=call.tool,
            index=index,
            kind="StepTimeout",
        ) from None


def call_tool(tool: str, prompt: str, *, timeout: float | None = None, **params: Any) -> str:
    """Run one tool and return its output as text; raises ToolCallError."""
    call = to_call((tool, prompt, params), 0)
    return _result(
        _get_client().submit(call.tool, call.prompt, call.params, timeout), call, None, timeout
    )


def call_tools_parallel(
    calls: Iterable[Any],
    *,
    max_workers: int | None = None,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> list[Any]:
    """Run many tool calls at once; results come back in input order.

    Items are ``(tool, prompt)``, ``(tool, prompt, params)`` or ``{"tool", "prompt",
    "params"}``. ``max_workers`` bounds the calls in flight from this script (the workflow's
    own limits always apply); ``timeout`` bounds each call. The first failure raises
    ToolCallError naming the call, unless ``return_exceptions`` puts the errors in the list.
    """
    items = [to_call(item, i) for i, item in enumerate(calls)]
    if not items:
        return []
    if max_workers is not None and max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    client = _get_client()
    limit = max_workers or len(items)
    results: list[Any] = [None] * len(items)
    in_flight: dict[Future[Any], int] = {}
    waiting = iter(range(len(items)))
    for index in waiting:
        in_flight[
            client.submit(items[index].tool, items[index].prompt, items[index].params, timeout)
        ] = index
        if len(in_flight) >= limit:
            break
    while in_flight:
        done, _ = wait(
            in_flight, timeout=None if timeout is None else timeout + 5, return_when=FIRST_COMPLETED
        )
        if not done:
            index = min(in_flight.values())
            raise ToolCallError(
                f"{items[index].describe(index)} timed out after {timeout:g}s",
                tool=items[index].tool,
                index=index,
                kind="StepTimeout",
            )
        for future in done:
            index = in_flight.pop(future)
            try:
                results[index] = _result(future, items[index], index, timeout)
            except ToolCallError as exc:
                if not return_exceptions:
                    raise
                results[index] = exc
            following = next(waiting, None)
            if following is not None:
                item = items[following]
                in_flight[client.submit(item.tool, item.prompt, item.params, timeout)] = following
    return results


async def acall_tool(tool: str, prompt: str, *, timeout: float | None = None, **params: Any) -> str:
    """:func:`call_tool` for async scripts (the event loop is never blocked)."""
    return await asyncio.to_thread(call_tool, tool, prompt, timeout=timeout, **params)


async def acall_tools_parallel(
    calls: Iterable[Any],
    *,
    max_workers: int | None = None,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> list[Any]:
    """:func:`call_tools_parallel` for async scripts."""
    items = list(calls)
    return await asyncio.to_thread(
        call_tools_parallel,
        items,
        max_workers=max_workers,
        timeout=timeout,
        return_exceptions=return_exceptions,
    )


def read_input() -> tuple[Any, dict[str, Any]]:
    """The step's input and params from stdin (``{"input": ..., "params": {...}}``)."""
    raw = sys.stdin.read()
    data = json.loads(raw) if raw.strip() else {}
    if not isinstance(data, dict):
        return data, {}
    params = data.get("params") or {}
    return data.get("input", ""), params if isinstance(params, dict) else {}


def write_result(result: Any) -> None:
    """Print the node's result as the workflow expects it: ``{"result": ...}``."""
    sys.stdout.write(json.dumps({"result": result}, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def run_node(main: Callable[..., Any]) -> None:
    """Read the input, call ``main(input, **params)``, write its return value as the result."""
    value, params = read_input()
    write_result(main(value, **params))
