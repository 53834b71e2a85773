"""Endpoints benchmark: what a pool of model servers gains, whether a run survives losing one,
and what the routing costs.

The servers are local fake Ollamas (``tests/fake_ollama.py`` with ``serial``: one chat at a
time, the next waits; ``nodelay``, as Go's server) answering after 0.5 s, each behind a TCP
relay that the bench kills the way a process dies: the port closes and every connection
through it drops. (``FakeOllama.stop`` alone would not do: it closes the port, but the
client's keep-alive connections would go on being served.)

1. Spread: 12 independent ``content_generator`` steps through ``Session.run``, with
   ``llm.endpoints`` three servers of ``max_concurrency: 1``. Target: wall <= 1.15x the ideal
   2.0 s (12 x 0.5 s / 3); the same plan over one endpoint (ideal 6.0 s) is printed beside it.
2. Failover: the same, with the third server killed 0.8 s into the run, while it serves its
   second chat (the first calls start ~0.1 s in). Target: all 12 steps succeed and the wall
   time is <= 1.2x the ideal for two endpoints (3.0 s).
3. Routing: ``PoolBackend.complete`` over three ``ScriptedBackend`` endpoints that answer
   after one turn of the event loop, against one called directly: 2,000 calls one by one,
   2,000 at once within the pool's capacity, and 2,000 at once over 3 x 4 slots (the direct
   backend behind a semaphore of 12). Target: <= 1 ms more per call.

Wall time is ``Session.run``: creating the endpoints' clients and their start-up probes are
in it, importing the Ollama client is not. Each run is a fresh session in a temporary
``$EVOLVE_HOME``. Targets are printed as PASS/FAIL and never change the exit code.

    python bench/endpoints.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from repo_config import REPO, repo_config
from verdicts import verdict

from code_evolver.config import Config
from code_evolver.llm.base import LLMBackend, Message, user
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.llm.pool import Endpoint, PoolBackend
from code_evolver.organizer import organize
from code_evolver.plan import Plan, Step
from code_evolver.result import StepStatus
from code_evolver.session import Session

sys.path.insert(0, str(REPO / "tests"))
from fake_ollama import FakeOllama

LATENCY_S = 0.5
STEPS = 12
KILL_AT_S = 0.8
SPREAD_TARGET = 1.15
FAILOVER_TARGET = 1.2
ROUTING_TARGET_S = 0.001
CALLS = 2_000
PLAN = Plan(
    request="endpoints bench",
    steps=[Step(step_id=f"s{i}", tool="content_generator", input="a joke") for i in range(STEPS)],
)
PROMPT = [user("a joke")]


class Relay:
    """A TCP relay in front of a server, to kill it like a process: ``kill`` closes the port
    and drops every connection through it."""

    def __init__(self, url: str) -> None:
        self.port = int(url.rsplit(":", 1)[1])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.clients: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # killed
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            self.clients.append(client)
            for source, sink in ((client, upstream), (upstream, client)):
                sink.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                threading.Thread(target=_copy, args=(source, sink), daemon=True).start()

    def kill(self) -> None:
        for sock in [self.listener, *self.clients]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.listener.close()


def _copy(source: socket.socket, sink: socket.socket) -> None:
    """Bytes from ``source`` to ``sink`` until either ends; then ``sink`` ends its writing."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


# ------------------------------------------------------------ 1 and 2: sessions


@dataclass
class Outcome:
    wall: float
    first_call: float
    ok: int
    answered: dict[str, int]
    failed_calls: int
    errors: list[str]
    received: list[int]
    peak: int


async def timed_run(config: Config, fakes: list[FakeOllama], kill: Relay | None) -> Outcome:
    async with Session(config) as session:
        organized = organize(PLAN, session.registry)
        if kill is not None:
            threading.Timer(KILL_AT_S, kill.kill).start()
        began, started = datetime.now(UTC), time.perf_counter()
        result = await session.run(organized)
        wall = time.perf_counter() - started
        pool = await session.llm.backend()
    assert isinstance(pool, PoolBackend)
    steps = result.steps.values()
    first = min((s.started_at - began).total_seconds() for s in steps if s.started_at)
    calls = [c for s in steps for c in s.calls if c.tool.startswith("on ")]
    failed = sum(c.status is not StepStatus.SUCCEEDED for c in calls)
    errors = [f"{s.step_id}: {s.error}" for s in steps if not s.ok]
    received, peak = [len(fake.chats()) for fake in fakes], max(fake.peak for fake in fakes)
    ok = sum(s.ok for s in steps)
    return Outcome(wall, first, ok, dict(pool.served_by), failed, errors, received, peak)


def run_on(config: Config, servers: int, kill: bool = False) -> Outcome:
    """The plan over ``servers`` fresh endpoints; ``kill``: the last dies ``KILL_AT_S`` in."""
    fakes = [
        FakeOllama(reply="a joke", delay_s=LATENCY_S, serial=True, nodelay=True)
        for _ in range(servers)
    ]
    relays = [Relay(fake.start().url) for fake in fakes]
    endpoints = [
        {"name": f"e{i}", "backend": "ollama", "host": relay.url, "max_concurrency": 1}
        for i, relay in enumerate(relays)
    ]
    try:
        pooled = config.with_llm(model="llama3.2", endpoints=endpoints)
        return asyncio.run(timed_run(pooled, fakes, relays[-1] if kill else None))
    finally:
        for relay, fake in zip(relays, fakes, strict=True):
            relay.kill()
            fake.stop()


def median_of(runs: list[Outcome]) -> Outcome:
    return sorted(runs, key=lambda o: o.wall)[len(runs) // 2]


def spread(config: Config, rounds: int) -> None:
    three = median_of([run_on(config, 3) for _ in range(rounds)])
    one = median_of([run_on(config, 1) for _ in range(rounds)])
    ideal = STEPS * LATENCY_S / 3
    ok = three.wall / ideal <= SPREAD_TARGET and three.ok == STEPS
    print(
        f"1. Spread: {STEPS} LLM steps, {LATENCY_S:g} s a chat, servers serving one chat at a"
        f" time (peak {max(three.peak, one.peak)}), median of {rounds}\n"
        f"   3 endpoints {three.wall:5.2f} s (ideal {ideal:.1f} s), first call at"
        f" {three.first_call * 1000:3.0f} ms, answered {three.answered}, {three.ok} ok\n"
        f"   1 endpoint  {one.wall:5.2f} s (ideal {STEPS * LATENCY_S:.1f} s), first call at"
        f" {one.first_call * 1000:3.0f} ms, {one.ok} ok; 3 are {one.wall / three.wall:.2f}x"
        f" faster\n   {three.wall / ideal:.3f}x ideal   target <= {SPREAD_TARGET}x  {verdict(ok)}"
    )


def failover(config: Config, rounds: int) -> None:
    runs = [run_on(config, 3, kill=True) for _ in range(rounds)]
    run, ideal = median_of(runs), STEPS * LATENCY_S / 2
    ok = all(r.ok == STEPS for r in runs) and run.wall / ideal <= FAILOVER_TARGET
    print(
        f"2. Failover: e2 killed {KILL_AT_S:g} s into the run, median of {rounds}\n"
        f"   {run.wall:.2f} s (ideal for two {ideal:.1f} s), first call at"
        f" {run.first_call * 1000:.0f} ms; chats received {run.received}, answered"
        f" {run.answered}\n   calls failed (then moved) {[r.failed_calls for r in runs]},"
        f" steps ok {[r.ok for r in runs]}{''.join(f'; {e}' for r in runs for e in r.errors)}\n"
        f"   {run.wall / ideal:.3f}x ideal   target: all {STEPS} ok, <= {FAILOVER_TARGET}x"
        f"  {verdict(ok)}"
    )


# ------------------------------------------------------------ 3: routing


class OneTurn(ScriptedBackend):
    """Answers after one turn of the event loop, as a backend awaiting its socket would."""

    async def complete(self, messages: Sequence[Message], **limits: Any) -> str:
        await asyncio.sleep(0)
        return await super().complete(messages, **limits)


async def calls(backend: LLMBackend, at_once: int) -> None:
    """CALLS calls: one after another (``at_once`` 1), or all gathered behind a semaphore."""
    if at_once == 1:
        for _ in range(CALLS):
            await backend.complete(PROMPT)
        return
    gate = asyncio.Semaphore(at_once)

    async def call() -> None:
        async with gate:
            await backend.complete(PROMPT)

    await asyncio.gather(*(call() for _ in range(CALLS)))


def per_call(rounds: int, backend: Callable[[], LLMBackend], at_once: int) -> float:
    """Seconds per call, the best of ``rounds``, each with a new backend."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        asyncio.run(calls(backend(), at_once))
        times.append(time.perf_counter() - started)
    return min(times) / CALLS


def one() -> OneTurn:
    return OneTurn(lambda request: "a joke")


def pool(capacity: int) -> PoolBackend:
    return PoolBackend([Endpoint(f"e{i}", one(), capacity) for i in range(3)])


def routing(rounds: int) -> None:
    cases = {"one by one": (1, 1), "at once": (CALLS, CALLS), "at once, 3 x 4 slots": (12, 4)}
    print(f"3. Routing: {CALLS:,} calls, backends answering after one loop turn, best of {rounds}")
    worst = 0.0
    for label, (at_once, capacity) in cases.items():
        direct = per_call(rounds, one, at_once)
        pooled = per_call(rounds, partial(pool, capacity), 1 if at_once == 1 else CALLS)
        worst = max(worst, pooled - direct)
        print(
            f"   {label:<20} direct {direct * 1e6:6.1f} us/call, pool {pooled * 1e6:6.1f}"
            f" us/call, {(pooled - direct) * 1e6:+7.1f} us"
        )
    ok = worst <= ROUTING_TARGET_S
    print(
        f"   worst {worst * 1e6:+.1f} us   target <= {ROUTING_TARGET_S * 1e3:g} ms  {verdict(ok)}"
    )


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 round instead of 3 (routing: 3, 7)")
    quick = parser.parse_args().quick
    rounds, routing_rounds = (1, 3) if quick else (3, 7)
    started = time.perf_counter()
    importlib.import_module("code_evolver.llm.ollama")  # once per process, not the pool's cost
    with tempfile.TemporaryDirectory() as folder:
        os.environ["EVOLVE_HOME"] = folder
        config = repo_config()
        spread(config, rounds)
        failover(config, rounds)
        routing(routing_rounds)
    print(f"benchmark took {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
