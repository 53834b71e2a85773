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
import contextlib
import json
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
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


def _seal_process() -> None:
    """Keep the secret from this script's other processes: the environment it started with
    stays readable in ``/proc/PID/environ`` (popping it changes only a copy), and a process of
    the same user may read that, or take the descriptor with ``pidfd_getfd``, unless this
    process is not "dumpable" (Linux; no core dumps and no tracing by the same user either)."""
    if sys.platform != "linux":
        return
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        pr_set_dumpable = 4
        libc.prctl(pr_set_dumpable, 0, 0, 0, 0)


class _Client(Protocol):
    def submit(
        self, tool: str, prompt: str, params: dict[str, Any], timeout_s: float | None
    ) -> Future[Any]: ...


# The channel belongs to this process only: child processes must inherit neither its address
# nor its descriptor (the workflow passed it inheritable, as passing a descriptor requires).
_CHANNEL = (os.environ.pop(ENV_FD, None), os.environ.pop(ENV_TOKEN, None))
if _CHANNEL[0] is not None and _CHANNEL[0].isdigit():
    with contextlib.suppress(OSError):  # not open here: the client says so at the first call
        os.set_inheritable(int(_CHANNEL[0]), False)
    _seal_process()
_client: _Client | None = None
_client_lock = threading.Lock()
_SAFETY_S = 5.0
"""How much longer than a call's deadline a script waits for the workflow's own verdict."""


def _get_client() -> _Client:
    """Brokered when the workflow gave us a channel, else in-process (made once)."""
    global _client
    with _client_lock:
        if _client is None:
            fd, token = _CHANNEL
            if fd is not None and token:
                from node_runtime._brokered import BrokeredClient

                _client = BrokeredClient(int(fd), token)
            else:
                from node_runtime._local import LocalClient

                _client = LocalClient()
        return _client


def _after_fork_in_child() -> None:
    client = _client
    if client is not None and hasattr(client, "close_after_fork"):
        client.close_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _text(output: Any) -> str:
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)


def _timed_out(call: Call, index: int | None, timeout: float) -> ToolCallError:
    return ToolCallError(
        f"{call.describe(index)} timed out after {timeout:g}s",
        tool=call.tool,
        index=index,
        kind="StepTimeout",
    )


def _result(future: Future[Any], call: Call, index: int | None, timeout: float | None) -> str:
    try:
        return _text(future.result(timeout=None if timeout is None else timeout + _SAFETY_S))
    except ToolCallError as exc:
        raise exc.for_call(index) if index is not None else exc from None
    except TimeoutError:
        future.cancel()
        raise _timed_out(call, index, timeout or 0) from None


def call_tool(tool: str, prompt: str, **params: Any) -> str:
    """Run one tool and return its output as text; raises ToolCallError."""
    call = to_call((tool, prompt, params), 0)
    future = _get_client().submit(call.tool, call.prompt, call.params, None)
    return _result(future, call, None, None)


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
    own limits always apply); ``timeout`` is each call's deadline, queueing and retries
    included. The first failure raises ToolCallError naming the call (the calls still in
    flight are cancelled), unless ``return_exceptions`` puts the errors in the list.
    """
    items = [to_call(item, i) for i, item in enumerate(calls)]
    if not items:
        return []
    if max_workers is not None and max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be positive")
    client = _get_client()
    limit = max_workers or len(items)
    results: list[Any] = [None] * len(items)
    in_flight: dict[Future[Any], int] = {}
    unsent = iter(range(len(items)))
    # Futures report here as they finish: waiting costs O(1) per call, whatever is in flight
    # (concurrent.futures.wait() visits every future it waits for, on every wake).
    finished: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()

    def send_next() -> None:
        index = next(unsent, None)
        if index is not None:
            item = items[index]
            future = client.submit(item.tool, item.prompt, item.params, timeout)
            in_flight[future] = index
            future.add_done_callback(finished.put)

    for _ in range(limit):
        send_next()
    try:
        while in_flight:
            wait_s = None if timeout is None else timeout + _SAFETY_S
            try:
                future = finished.get(timeout=wait_s)
            except queue.Empty:  # the workflow never answered: give up on the oldest
                min(in_flight, key=in_flight.__getitem__).cancel()  # it reports as finished
                continue
            index = in_flight.pop(future)
            if future.cancelled():
                outcome: Any = _timed_out(items[index], index, timeout or 0)
            else:
                try:
                    outcome = _result(future, items[index], index, timeout)
                except ToolCallError as exc:
                    outcome = exc
            if isinstance(outcome, ToolCallError) and not return_exceptions:
                raise outcome
            results[index] = outcome
            send_next()
    finally:
        for future in in_flight:
            future.cancel()  # tells the workflow to stop the calls nobody waits for
    return results


async def acall_tool(tool: str, prompt: str, **params: Any) -> str:
    """:func:`call_tool` for async scripts; cancelling it cancels the call."""
    call = to_call((tool, prompt, params), 0)
    future = _get_client().submit(call.tool, call.prompt, call.params, None)
    try:
        return _text(await asyncio.wrap_future(future))
    except ToolCallError as exc:
        raise exc from None


async def acall_tools_parallel(
    calls: Iterable[Any],
    *,
    max_workers: int | None = None,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> list[Any]:
    """:func:`call_tools_parallel` for async scripts (the event loop is never blocked)."""
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
