"""Standalone mode: no workflow around the script, so its tool calls run in this process.

The config comes from ``$CODE_EVOLVER_CONFIG``, ``./config.yaml`` or the packaged default, as
for ``evolve``. Calls are scheduled by the same broker a run uses (limits, timeouts, retries),
on an event loop in a background thread, so the synchronous API works from any script.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

from code_evolver.calls import CallBroker, CallChannel
from code_evolver.capacity import Capacity
from code_evolver.config import load_config
from code_evolver.errors import EvolverError
from code_evolver.events import EventBus
from code_evolver.tools.registry import ToolRegistry
from node_runtime.errors import ToolCallError


class LocalClient:
    def __init__(self) -> None:
        config = load_config()
        self._registry = ToolRegistry.from_config(config)
        capacity = Capacity(config.execution.max_parallel)
        capacity.open(self._registry)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._serve, name="node-runtime-local", daemon=True).start()
        self._ready.wait()
        self._channel: CallChannel = self._call_soon(self._open, config, capacity).result()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()

    def _call_soon(self, function: Any, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def run() -> None:
            try:
                future.set_result(function(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future

    def _open(self, config: Any, capacity: Capacity) -> CallChannel:
        broker = CallBroker(
            self._registry,
            config.execution,
            capacity,
            EventBus(),
            self._loop.time,
            lambda attempt: min(
                config.execution.retry_backoff_max_s,
                config.execution.retry_backoff_s * 2.0 ** (attempt - 1),
            ),
            lambda: broker.dispatch(),
        )
        return broker.channel("script")

    def submit(
        self, tool: str, prompt: str, params: dict[str, Any], timeout_s: float | None
    ) -> Future[Any]:
        future: Future[Any] = Future()

        async def call() -> None:
            try:
                output = await self._channel.call(tool, prompt, params, timeout_s)
            except EvolverError as exc:
                future.set_exception(
                    ToolCallError(f"{tool}: {exc}", tool=tool, kind=type(exc).__name__)
                )
            else:
                future.set_result(output)

        asyncio.run_coroutine_threadsafe(call(), self._loop)
        return future
