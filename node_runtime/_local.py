"""Standalone mode: no workflow around the script, so its tool calls run in this process.

The config is layered as for ``evolve``: the packaged defaults, ``$EVOLVE_HOME/config.yaml``,
then ``$CODE_EVOLVER_CONFIG`` or ``./config.yaml``. Calls are scheduled by the same broker a run
uses (limits, timeouts, retries), on an event loop in a background thread, so the synchronous
API works from any script. When the script exits, calls still running are cancelled and their
processes killed.

With ``-v`` (or ``--verbose``) among the script's arguments, or ``EVOLVE_VERBOSE=1``, each call
and the loading of a model are shown on stderr as they happen: a script that waits minutes
for a model is never silent.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import random
import sys
import threading
from concurrent.futures import Future
from typing import Any

from code_evolver import events
from code_evolver.calls import CallBroker, CallChannel
from code_evolver.capacity import Capacity
from code_evolver.config import Config, load_config
from code_evolver.errors import EvolverError
from code_evolver.events import EventBus
from code_evolver.tools.registry import ToolRegistry
from node_runtime.errors import ToolCallError


class LocalClient:
    def __init__(self) -> None:
        try:
            config = load_config()
            self._registry = ToolRegistry.from_config(config)
        except EvolverError as exc:
            raise ToolCallError(f"cannot run tools here: {exc}", kind=type(exc).__name__) from None
        self._bus = EventBus(_show_on_stderr) if verbose() else EventBus()
        if self._registry.llm is not None:
            self._registry.llm.on_loading = lambda model, done, took: self._bus.emit(
                events.ModelLoading(model, done, took)
            )
        capacity = Capacity(config.execution.max_parallel)
        capacity.open(self._registry)
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(
            target=self._serve, args=(started,), name="node-runtime-local", daemon=True
        ).start()
        started.wait()
        self._broker = self._run(self._open(config, capacity)).result()
        self._channel: CallChannel = self._broker.channel("script")
        atexit.register(self._shutdown)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(started.set)
        self._loop.run_forever()

    def _run(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _open(self, config: Config, capacity: Capacity) -> CallBroker:
        execution = config.execution

        rng = random.Random()
        broker = CallBroker(
            self._registry,
            execution,
            capacity,
            self._bus,
            self._loop.time,
            lambda attempts: execution.retry_delay(attempts, rng),
            lambda: broker.dispatch(),
        )
        return broker

    def submit(
        self, tool: str, prompt: str, params: dict[str, Any], timeout_s: float | None
    ) -> Future[Any]:
        future: Future[Any] = Future()

        async def call() -> None:
            try:
                output = await self._channel.call(tool, prompt, params, timeout_s)
            except EvolverError as exc:
                error = ToolCallError(f"{tool}: {exc}", tool=tool, kind=type(exc).__name__)
                with contextlib.suppress(Exception):
                    future.set_exception(error)
            else:
                with contextlib.suppress(Exception):
                    future.set_result(output)

        task = self._run(call())
        future.add_done_callback(lambda f: task.cancel() if f.cancelled() else None)
        return future

    def _shutdown(self) -> None:
        """At exit: cancel what still runs (killing its processes) before the loop dies."""

        async def stop() -> None:
            self._broker.stop()
            for _ in range(200):
                if self._broker.active == 0:
                    break
                await asyncio.sleep(0.01)
            if self._registry.llm is not None:
                await self._registry.llm.close()

        with contextlib.suppress(Exception):
            self._run(stop()).result(timeout=5)


def verbose() -> bool:
    """``-v`` / ``--verbose`` among the script's arguments, or ``EVOLVE_VERBOSE`` set."""
    return bool({"-v", "--verbose"} & set(sys.argv[1:])) or os.environ.get(
        "EVOLVE_VERBOSE", ""
    ) not in ("", "0")


def _show_on_stderr(event: events.Event) -> None:
    match event:
        case events.ModelLoading(model=model, done=False):
            line = f"loading {model}…"
        case events.ModelLoading(model=model, seconds=took):
            line = f"{model} loaded in {took:.2f}s"
        case events.CallStarted(call_id=call_id, tool=tool, attempt=attempt):
            again = f" (attempt {attempt})" if attempt > 1 else ""
            line = f"→ {call_id} {tool}{again}"
        case events.CallFinished(call_id=call_id, tool=tool, status=status, duration_s=took):
            error = event.error
            mark = "✓" if status == "succeeded" else "✗"
            line = f"{mark} {call_id} {tool} {took:.2f}s" + (f": {error}" if error else "")
        case _:
            return
    print(f"[node_runtime] {line}", file=sys.stderr, flush=True)
