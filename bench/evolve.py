"""Evolve benchmark: what reusing a written node saves, and what the fix loop costs beyond
the model's own time.

The model is scripted and answers like a model would: a reply takes 10 ms per 4 characters
(about a token: ~100 tokens/s, a fast local model), so the code and its tests, asked for at
once, overlap. The node's tests really run in the strict sandbox (bubblewrap).

1. Reuse: "count the vowels in this text" through ``Session(force_evolve=True).ask`` (a new
   session per request, as a new ``evolve --evolve`` process would have) writes, tests,
   stores and runs a node; the same request with another input then runs the stored node.
   Each round in a fresh ``$EVOLVE_HOME``, after a warm-up round (imports, the sandbox
   probe). Target: the second makes 0 model calls and is >= 5x faster end to end (medians).
2. Fix loop: ``NodeGenerator.generate`` with code that fails its tests, then code that
   passes. Per attempt, the overhead beyond the model (checks, writing the files, the tests
   in the sandbox) is ``attempt.seconds - attempt.model_seconds``. Target: median <= 200 ms
   (the max beside it). Below it, where the time goes: Python starting, what importing
   pytest would cost, the test runner on an empty test file, outside and inside the sandbox.

Targets are printed as PASS/FAIL and never change the exit code.

    python bench/evolve.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from repo_config import repo_config
from verdicts import verdict

from code_evolver.config import Config
from code_evolver.evolve.generator import NodeGenerator, stage
from code_evolver.evolve.node_store import NodeStore
from code_evolver.evolve.proving import RUNNER, run_tests
from code_evolver.launch.launcher import Launcher
from code_evolver.launch.sandbox import Request as Launch
from code_evolver.llm.base import Message, Request
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.llm.service import LLMService
from code_evolver.session import Session

TASK = "count the vowels in this text"
SECONDS_PER_CHAR = 0.010 / 4
SPEEDUP_TARGET = 5.0
OVERHEAD_TARGET_S = 0.200
GOOD = """from node_runtime import run_node

def main(text: str, **params: object) -> str:
    return str(sum(1 for c in text.lower() if c in "aeiou"))

if __name__ == "__main__":
    run_node(main)
"""
WRONG = GOOD.replace('str(sum(1 for c in text.lower() if c in "aeiou"))', '"0"')
TESTS = """from main import main

def test_counts():
    assert main("banana") == "3"

def test_none():
    assert main("xyz") == "0"
"""


class TypingBackend(ScriptedBackend):
    """A scripted model that takes as long as a model typing its reply would."""

    async def complete(self, messages: Sequence[Message], **limits: Any) -> str:
        reply = await super().complete(messages, **limits)
        await asyncio.sleep(len(reply) * SECONDS_PER_CHAR)
        return reply


def model(codes: Iterator[str]) -> TypingBackend:
    """Writes and fixes with the next of ``codes``, writes TESTS, answers anything else."""

    def answer(request: Request) -> str:
        prompt = request.messages[-1]["content"]
        if prompt.startswith("Write tests"):
            return f"Here you go:\n```python\n{TESTS}```\n"
        if prompt.startswith(("Write a small Python program", "This program does not pass")):
            return f"Here you go:\n```python\n{next(codes)}```\n"
        return f"the model's own answer to: {prompt[:40]}"

    return TypingBackend(answer, chunk_size=4, chunk_delay_s=4 * SECONDS_PER_CHAR)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


# ---------------------------------------------------------------- 1: reuse


async def request(config: Config, backend: TypingBackend, text: str) -> tuple[float, int, str]:
    """Seconds end to end (session, plan, run, close), model calls, and the step's output."""
    calls = len(backend.requests)
    started = time.perf_counter()
    async with Session(config, backend=backend, force_evolve=True) as session:
        answer = await session.ask(TASK, input_text=text)
    took = time.perf_counter() - started
    return took, len(backend.requests) - calls, str(answer.result.outputs.get("step1"))


def reuse_round(config: Config, root: Path) -> tuple[tuple[float, int, str], ...]:
    os.environ["EVOLVE_HOME"] = tempfile.mkdtemp(dir=root)
    backend = model(iter([GOOD] * 3))
    return asyncio.run(request(config, backend, "banana")), asyncio.run(
        request(config, backend, "aeiou")
    )


def reuse(config: Config, root: Path, rounds: int) -> None:
    runs = [reuse_round(config, root) for _ in range(rounds + 1)][1:]  # the first: warm-up
    first = statistics.median(r[0][0] for r in runs)
    second = statistics.median(r[1][0] for r in runs)
    calls = sorted({(r[0][1], r[1][1]) for r in runs})
    outputs = sorted({(r[0][2], r[1][2]) for r in runs})
    ratio = first / second
    ok = all(c[1] == 0 for c in calls) and ratio >= SPEEDUP_TARGET
    print(
        f"1. Reuse: {TASK!r}, twice per fresh home, median of {rounds} rounds\n"
        f"   first  {ms(first):>7} (best {ms(min(r[0][0] for r in runs))}),"
        f" second {ms(second):>6} (best {ms(min(r[1][0] for r in runs))});"
        f" model calls (first, second) {calls}; outputs {outputs}\n"
        f"   {ratio:.1f}x faster   target: 0 calls, >= {SPEEDUP_TARGET:g}x  {verdict(ok)}"
    )


# ------------------------------------------------------------- 2: fix loop


async def fix_round(config: Config, store: NodeStore) -> list[tuple[float, float, float]]:
    """(overhead beyond the model, model seconds, the tests' own run) for each attempt."""
    llm = LLMService(config.llm, model(iter([WRONG, GOOD])))
    generator = NodeGenerator(llm, config.evolve, config.execution, store)
    outcome = await generator.generate(TASK, "banana")
    if outcome.node is None or len(outcome.attempts) != 2:
        raise RuntimeError(f"expected a node on the second attempt: {outcome.reason}")
    return [
        (a.seconds - a.model_seconds, a.model_seconds, a.report.seconds if a.report else 0.0)
        for a in outcome.attempts
    ]


def best_of(n: int, job: Callable[[], Awaitable[object]]) -> float:
    async def timed() -> float:
        started = time.perf_counter()
        await job()
        return time.perf_counter() - started

    return min(asyncio.run(timed()) for _ in range(n))


async def sandboxed(argv: list[str], folder: Path) -> None:
    """``argv`` in the strict sandbox, the way run_tests starts its runner."""
    launcher = Launcher(repo_config().execution)
    await launcher.ensure("strict")
    try:
        await launcher.run(
            Launch(argv, None, {}, {}, (RUNNER, folder)), stdin=b"", isolation="strict"
        )
    finally:
        launcher.close()


def outside(*argv: str) -> Callable[[], Awaitable[object]]:
    return lambda: asyncio.to_thread(subprocess.run, argv, capture_output=True, check=False)


def breakdown(root: Path, n: int) -> None:
    empty, node = Path(tempfile.mkdtemp(dir=root)), Path(tempfile.mkdtemp(dir=root))
    stage(empty, GOOD, "")
    stage(node, GOOD, TESTS)
    python, runner = sys.executable, [sys.executable, str(RUNNER), str(empty)]
    rows = {
        "python -c pass, outside": outside(python, "-c", "pass"),
        "python -c pass, in the sandbox": lambda: sandboxed([python, "-c", "pass"], empty),
        "python -c 'import pytest' (the runner does not)": outside(python, "-c", "import pytest"),
        "test runner, empty tests, outside": outside(*runner),
        "test runner, empty tests, sandbox": lambda: sandboxed(runner, empty),
        "run_tests, the node's 2 tests": lambda: run_tests(node, repo_config().execution),
    }
    print(f"   where it goes (best of {n}; the sandbox rows include starting bubblewrap):")
    for name, job in rows.items():
        print(f"     {name:<36} {best_of(n, job) * 1000:6.1f} ms")


def fix_loop(config: Config, root: Path, rounds: int) -> None:
    store = NodeStore(Path(tempfile.mkdtemp(dir=root)))
    asyncio.run(fix_round(config, store))  # warm-up
    per = [p for _ in range(rounds) for p in asyncio.run(fix_round(config, store))]
    median, model_s, tests_s = (statistics.median(p[i] for p in per) for i in range(3))
    print(
        f"2. Fix loop: a failing attempt, then a passing one, {rounds} rounds"
        f" ({len(per)} attempts; the model {model_s:.2f}s an attempt)\n"
        f"   overhead beyond the model per attempt: median {median * 1000:.1f} ms,"
        f" max {max(p[0] for p in per) * 1000:.1f} ms (the tests' own run {tests_s * 1000:.1f} ms)"
        f"   target: median <= {ms(OVERHEAD_TARGET_S)}  {verdict(median <= OVERHEAD_TARGET_S)}"
    )
    breakdown(root, 5 if rounds < 5 else 10)


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7 and 10")
    quick = parser.parse_args().quick
    reuse_rounds, fix_rounds = (3, 3) if quick else (7, 10)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        os.environ["EVOLVE_HOME"] = str(root)
        config = repo_config()
        reuse(config, root, reuse_rounds)
        fix_loop(config, root, fix_rounds)
    print(f"benchmark took {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
