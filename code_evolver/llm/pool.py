"""A pool of model servers behind one backend: least-busy routing, cooldown and failover.

Each call goes to the healthy endpoint with free capacity and the least work in flight
relative to its ``max_concurrency`` (ties: the lower measured latency, then the higher
``weight``). The pool's ``max_concurrency`` is the sum of its healthy endpoints' capacities,
so the executor's gate for LLM steps lets exactly as many calls run as the servers can take.

An endpoint that refuses connections, times out or answers 5xx goes into a cooldown that
doubles with each failure in a row (capped); when it ends, the next call that picks it is
its probe, and a success brings it back. A call that fails on one endpoint before any token
arrived moves to another at once; it does not count as an attempt of the step. One that
fails mid-answer starts over on another, when the reader can start over (an LLM step: its
text so far is void, :data:`RESTART`); other readers get the error. An endpoint
without the model is left out for the rest of the session. When no endpoint is left, the
error names each one's reason.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from code_evolver.errors import BackendError, BackendUnavailable, ModelMissing
from code_evolver.llm.base import LLMBackend, Message


class RoutingListener(Protocol):
    def __call__(
        self, endpoint: str, status: str, seconds: float = 0.0, error: str | None = None
    ) -> None:
        """``status``: running when a call goes to ``endpoint``, then succeeded or failed."""


ROUTING: ContextVar[RoutingListener | None] = ContextVar("evolve_llm_routing", default=None)
"""Who hears where the calls of the current task go (an LLM step, to show and record it)."""


class Restart(str):
    """Yielded by :meth:`PoolBackend.stream` when the text so far is void: the endpoint failed
    mid-answer and another one answers from the start. Only to a consumer that said it can
    start over (:data:`RESTARTABLE`); others get the error."""


RESTART = Restart("")
RESTARTABLE: ContextVar[bool] = ContextVar("evolve_llm_restartable", default=False)

COOLDOWN_S = 1.0
COOLDOWN_MAX_S = 60.0
PROBE_TIMEOUT_S = 5.0
LATENCY_WEIGHT = 0.3
"""How much the newest measured latency moves an endpoint's average."""


@dataclass
class Endpoint:
    name: str
    backend: LLMBackend
    capacity: int
    weight: float = 1.0
    in_flight: int = 0
    served: int = 0
    latency_s: float | None = None
    failures: int = 0
    cooldown_until: float = 0.0
    missing: bool = False
    """It does not have the model: left out for the session."""
    last_error: str | None = None
    peak: int = 0

    def usable(self, now: float) -> bool:
        return not self.missing and now >= self.cooldown_until

    def load(self) -> float:
        return self.in_flight / self.capacity


class PoolBackend(LLMBackend):
    name = "pool"

    def __init__(self, endpoints: Sequence[Endpoint], *, clock: Any = time.monotonic) -> None:
        if not endpoints:
            raise BackendError("llm.endpoints is empty; list at least one endpoint")
        self.endpoints = list(endpoints)
        self.model = self.endpoints[0].backend.model
        self._clock = clock
        self._waiters: deque[tuple[asyncio.Future[Endpoint], dict[str, str]]] = deque()
        """Calls waiting for a slot, in the order they came."""
        self.served_by: dict[str, int] = {e.name: 0 for e in self.endpoints}

    # ------------------------------------------------------------------ capacity

    @property
    def max_concurrency(self) -> int:  # type: ignore[override]
        now = self._clock()
        healthy = sum(e.capacity for e in self.endpoints if e.usable(now))
        return max(1, healthy)

    @property
    def context_tokens(self) -> int | None:  # type: ignore[override]
        """The smallest context among the endpoints: a prompt must fit wherever it goes."""
        known = [e.backend.context_tokens for e in self.endpoints if e.backend.context_tokens]
        return min(known) if known else None

    # ------------------------------------------------------------------ calls

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> str:
        tried: dict[str, str] = {}
        while True:
            endpoint = await self._acquire(tried)
            started = self._clock()
            _tell(endpoint.name, "running")
            try:
                text = await endpoint.backend.complete(
                    messages, schema=schema, max_tokens=max_tokens, temperature=temperature
                )
            except BackendError as exc:
                self._failed(endpoint, exc, tried)
                _tell(endpoint.name, "failed", self._clock() - started, str(exc))
                continue
            finally:
                await self._release(endpoint)
            self._succeeded(endpoint, self._clock() - started)
            _tell(endpoint.name, "succeeded", self._clock() - started)
            return text

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        tried: dict[str, str] = {}
        while True:
            endpoint = await self._acquire(tried)
            started = self._clock()
            first = True
            _tell(endpoint.name, "running")
            try:
                async for piece in endpoint.backend.stream(
                    messages, schema=schema, max_tokens=max_tokens, temperature=temperature
                ):
                    if first:
                        self._succeeded(endpoint, self._clock() - started)
                        first = False
                    yield piece
            except BackendError as exc:
                _tell(endpoint.name, "failed", self._clock() - started, str(exc))
                self._failed(endpoint, exc, tried)
                if not first:  # text has gone out: start over elsewhere, if the reader can
                    if not RESTARTABLE.get():
                        raise
                    yield RESTART
                continue
            finally:
                await self._release(endpoint)
            _tell(endpoint.name, "succeeded", self._clock() - started)
            return

    async def _acquire(self, tried: dict[str, str]) -> Endpoint:
        """The endpoint for the next call. While every usable one is full the call queues,
        first come first served: a freed slot goes to the first waiting call that may use
        it, so a long queue costs each release one look, not a wake-up of every waiter."""
        if not self._waiters and (endpoint := self._pick(tried)) is not None:
            return self._take(endpoint)
        self._check_left(tried)
        waiting: asyncio.Future[Endpoint] = asyncio.get_running_loop().create_future()
        self._waiters.append((waiting, tried))
        self._hand_over()  # a slot the earlier waiters cannot use may be free for this one
        try:
            return await waiting
        except asyncio.CancelledError:
            if waiting.done() and not waiting.cancelled() and waiting.exception() is None:
                await self._release(waiting.result())  # handed over as it was cancelled
            raise

    def _pick(self, tried: dict[str, str]) -> Endpoint | None:
        """The least busy usable endpoint with a free slot that this call has not tried."""
        now = self._clock()
        free = [
            e
            for e in self.endpoints
            if e.name not in tried and e.usable(now) and e.in_flight < e.capacity
        ]
        if not free:
            return None
        return min(free, key=lambda e: (e.load(), e.latency_s or 0.0, -e.weight, e.name))

    def _check_left(self, tried: dict[str, str]) -> None:
        """Raise when no endpoint is left for this call at all (not just busy)."""
        now = self._clock()
        left = [e for e in self.endpoints if e.name not in tried]
        if not any(e.usable(now) for e in left):
            raise self._none_left(tried, left, now)

    def _take(self, endpoint: Endpoint) -> Endpoint:
        endpoint.in_flight += 1
        endpoint.peak = max(endpoint.peak, endpoint.in_flight)
        return endpoint

    async def _release(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
        self._hand_over()

    def _hand_over(self) -> None:
        """Freed slots to the waiting calls, in the order they came."""
        still: deque[tuple[asyncio.Future[Endpoint], dict[str, str]]] = deque()
        while self._waiters:
            waiting, tried = self._waiters.popleft()
            if waiting.done():
                continue  # cancelled meanwhile
            endpoint = self._pick(tried)
            if endpoint is not None:
                waiting.set_result(self._take(endpoint))
                continue
            try:
                self._check_left(tried)
            except BackendError as exc:
                waiting.set_exception(exc)
                continue
            still.append((waiting, tried))
            if not any(e.in_flight < e.capacity for e in self.endpoints):
                break  # no slot free anywhere: the rest wait as they are
        still.extend(self._waiters)
        self._waiters = still

    def _succeeded(self, endpoint: Endpoint, seconds: float) -> None:
        endpoint.failures = 0
        endpoint.last_error = None
        endpoint.served += 1
        self.served_by[endpoint.name] += 1
        previous = endpoint.latency_s
        endpoint.latency_s = (
            seconds if previous is None else previous + LATENCY_WEIGHT * (seconds - previous)
        )

    def _failed(self, endpoint: Endpoint, exc: BackendError, tried: dict[str, str]) -> None:
        tried[endpoint.name] = str(exc)
        if isinstance(exc, ModelMissing):
            endpoint.missing = True
            endpoint.last_error = str(exc)
        else:
            self._cool(endpoint, exc)

    def _cool(self, endpoint: Endpoint, exc: BackendError) -> None:
        endpoint.failures += 1
        endpoint.last_error = str(exc)
        delay = min(COOLDOWN_MAX_S, COOLDOWN_S * 2 ** (endpoint.failures - 1))
        endpoint.cooldown_until = self._clock() + delay

    def _none_left(
        self, tried: dict[str, str], left: list[Endpoint], now: float, *, waits: bool = True
    ) -> BackendError:
        """``waits``: say how long each endpoint still cools down (in a session that goes
        on; not when the first probe found none, and the command ends)."""
        reasons = dict(tried)
        for endpoint in left:
            wait = max(0.0, endpoint.cooldown_until - now) if waits else 0.0
            why = endpoint.last_error or "unavailable"
            reasons[endpoint.name] = f"{why} (cooling down {wait:.0f}s more)" if wait else why
        listed = "; ".join(f"{name}: {why}" for name, why in reasons.items())
        if all(e.missing for e in self.endpoints):
            return ModelMissing(f"no endpoint has the model: {listed}")
        return BackendUnavailable(f"no LLM endpoint could answer: {listed}")

    # ------------------------------------------------------------------ the session

    async def check(self) -> None:
        """Probe every endpoint at once, each for at most ``PROBE_TIMEOUT_S``; those that
        fail start cooled down (or left out, without the model). Raises when none is left."""

        async def probe(endpoint: Endpoint) -> None:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await endpoint.backend.check()
            except TimeoutError:
                self._cool(endpoint, BackendUnavailable(f"no answer in {PROBE_TIMEOUT_S:g}s"))
            except ModelMissing as exc:
                endpoint.missing, endpoint.last_error = True, str(exc)
            except BackendError as exc:
                self._cool(endpoint, exc)

        await asyncio.gather(*(probe(e) for e in self.endpoints))
        now = self._clock()
        if not any(e.usable(now) for e in self.endpoints):
            raise self._none_left({}, self.endpoints, now, waits=False)

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        return await self.endpoints[0].backend.count_tokens(messages)

    async def close(self) -> None:
        await asyncio.gather(*(e.backend.close() for e in self.endpoints))

    def describe(self) -> str:
        return f"pool of {len(self.endpoints)} endpoints ({', '.join(self.names())})"

    def names(self) -> list[str]:
        return [e.name for e in self.endpoints]


def _tell(endpoint: str, status: str, seconds: float = 0.0, error: str | None = None) -> None:
    if (listener := ROUTING.get()) is not None:
        listener(endpoint, status, seconds, error)
