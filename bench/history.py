"""History benchmark: what keeping every run costs, how fast it lists, and whether resume
re-runs exactly what did not succeed.

1. Overhead: a 1,000-step random DAG (three dependencies a step) of an async no-op function
   tool, run through ``Session.run`` with history on and off, rounds interleaved, each on a
   fresh session and event loop (the writer process is the process's: the warm-up round
   starts it, as a process's first session does, and is printed apart). The "on" time
   includes ``history.flush()``: the records are committed when the clock stops. Target:
   the median "on" run <= 1.05x the median "off" run. Beside them, "events only": history
   off but a listener that does nothing, so the executor builds its events, as it does for
   every ``evolve`` command (the progress display listens); "on / events only" is what the
   recorder and its writer add to that.
2. Listing: ``evolve runs`` (the real CLI, a subprocess) with 10,000 runs of 5 steps stored,
   beside ``python -c "import click"`` for reference, best of N each. Target: <= 200 ms.
3. Resume: a 1,000-step run in which some steps fail, so that they and the dependents they
   skip make 10 steps that did not succeed; the tool is healed and the run resumed with
   ``resumption()`` + ``Session.resume``. Target: the tool is called exactly for those 10
   steps, and the stored run is then ``succeeded``.

History goes to a temporary ``$EVOLVE_HOME``. Targets are printed as PASS/FAIL and never
change the exit code.

    python bench/history.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import networkx as nx
from repo_config import REPO, repo_config
from verdicts import verdict

from code_evolver.config import Config
from code_evolver.history import store
from code_evolver.history.resume import resumption
from code_evolver.organizer import OrganizedPlan, organize
from code_evolver.plan import Plan, Step
from code_evolver.session import Session
from code_evolver.tools.base import Tool
from code_evolver.tools.function import FunctionTool

STEPS = 1_000
OVERHEAD_TARGET = 1.05
RUNS_TARGET_S = 0.200
STORED_RUNS = 10_000
STEPS_PER_STORED_RUN = 5
UNFINISHED = 10
EVOLVE = [sys.executable, "-c", "from code_evolver.cli import main; main()"]

BROKEN: set[str] = set()
"""Inputs the flaky tool fails on (step ids); emptied to heal it."""
CALLS: list[str] = []
"""Inputs the flaky tool was called with."""


async def noop_tool(text: str) -> str:
    """Return the input at once: all time measured around it is the executor's and history's."""
    return text


async def flaky_tool(text: str) -> str:
    """Count the call; fail for the inputs in BROKEN."""
    CALLS.append(text)
    if text in BROKEN:
        raise RuntimeError(f"{text} is broken")
    return text


TOOLS: dict[str, Tool] = {
    "noop": FunctionTool("noop", noop_tool),
    "flaky": FunctionTool("flaky", flaky_tool),
}


def random_plan(tool: str, n: int = STEPS, seed: int = 1) -> Plan:
    """Each step depends on three distinct random earlier steps; its input is its id."""
    rng = random.Random(seed)
    deps = [[f"s{d}" for d in rng.sample(range(i), min(3, i))] for i in range(n)]
    steps = [Step(step_id=f"s{i}", tool=tool, input=f"s{i}", depends_on=deps[i]) for i in range(n)]
    return Plan(request=f"history bench ({tool})", steps=steps)


# ------------------------------------------------------------ 1: overhead


async def timed_run(config: Config, organized: OrganizedPlan, listen: bool) -> tuple[float, float]:
    """Seconds of ``Session.run``, and of the run plus the recorder's flush, on a fresh
    session; ``listen``: a listener that does nothing, so the executor builds its events."""
    session = Session(config, tools=TOOLS)
    if listen:
        session.bus.subscribe(lambda event: None, watches_output=False)
    try:
        started = time.perf_counter()
        result = await session.run(organized)
        ran = time.perf_counter() - started
        if session.history is not None:
            session.history.flush()
        flushed = time.perf_counter() - started
    finally:
        await session.close()
    if not result.ok:
        raise RuntimeError(f"benchmark run ended {result.status}")
    return ran, flushed


def overhead(config: Config, rounds: int) -> None:
    organized = organize(random_plan("noop"), TOOLS)
    on, off = config.with_execution(history=True), config.with_execution(history=False)
    modes = {"off": (off, False), "events only": (off, True), "on": (on, False)}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in modes}
    first: dict[str, float] = {}
    for name, (mode, listen) in modes.items():  # warm-up: imports, the database, the writer
        first[name] = asyncio.run(timed_run(mode, organized, listen))[1]
    for i in range(rounds):
        for name in list(modes)[:: 1 if i % 2 == 0 else -1]:
            gc.collect()
            mode, listen = modes[name]
            times[name].append(asyncio.run(timed_run(mode, organized, listen)))
    print(f"1. Overhead: {STEPS:,} no-op steps, median (best) of {rounds} interleaved rounds")
    base = statistics.median(t[1] for t in times["off"])
    for name, runs in times.items():
        ran, total = statistics.median(t[0] for t in runs), statistics.median(t[1] for t in runs)
        flush = f", + flush {(total - ran) * 1000:5.1f} ms" if name == "on" else ""
        print(
            f"   history {name:<11} {total * 1000:6.1f} ms ({min(t[1] for t in runs) * 1000:5.1f})"
            f"  {total / base:.3f}x  {(total - base) / STEPS * 1e6:+5.1f} us/step"
            f"  (run {ran * 1000:5.1f} ms{flush})"
        )
    with_history = statistics.median(t[1] for t in times["on"])
    events = statistics.median(t[1] for t in times["events only"])
    ratio = with_history / base
    ok = ratio <= OVERHEAD_TARGET
    print(f"   on / events only {with_history / events:.3f}x  (the recorder and its writer)")
    print(
        f"   first run of the process: history on {first['on'] * 1000:.1f} ms (its writer"
        f" starting beside it), off {first['off'] * 1000:.1f} ms"
    )
    print(f"   on / off {ratio:.3f}x   target <= {OVERHEAD_TARGET}x  {verdict(ok)}")


# ------------------------------------------------------------- 2: listing


def fill_history(path: Path, runs: int) -> None:
    """``runs`` finished runs of a small plan, a minute apart, written straight into the schema."""
    plan = random_plan("noop", STEPS_PER_STORED_RUN)
    text, first = plan.to_json(), datetime(2024, 1, 1, tzinfo=UTC)
    starts = [first + timedelta(minutes=i) for i in range(runs)]
    db = store.connect(path)
    with db:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO runs (run_id, request, plan, planner_source, status, started_at, "
            "finished_at, wall_s, critical_path_s, speedup, peak_concurrency) "
            "VALUES (?, ?, ?, 'rules', 'succeeded', ?, ?, 1.0, 0.5, 2.0, 3)",
            ((f"{i:012x}", f"request number {i}", text, began.isoformat(),
              (began + timedelta(seconds=1)).isoformat()) for i, began in enumerate(starts)),
        )  # fmt: skip
        db.executemany(
            "INSERT INTO step_executions (run_id, step_id, attempt, tool, wave, status, "
            "started_s, finished_s, input, output) VALUES (?, ?, 1, ?, ?, 'succeeded', ?, ?, ?, ?)",
            ((f"{i:012x}", step.step_id, step.tool, n + 1, n * 0.1, n * 0.1 + 0.1, step.input,
              f'"{step.input}"') for i in range(runs) for n, step in enumerate(plan.steps)),
        )  # fmt: skip
        db.execute("COMMIT")
    db.close()


def timed_command(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO, env=env)
    return time.perf_counter() - started, proc.stdout


def listing(home: Path, rounds: int) -> None:
    path = home / "listing" / store.FILE_NAME
    started = time.perf_counter()
    fill_history(path, STORED_RUNS)
    filled = time.perf_counter() - started
    env = {**os.environ, "EVOLVE_HOME": str(path.parent)}
    mine: list[float] = []
    base: list[float] = []
    shown = ""
    for _ in range(rounds):
        took, shown = timed_command([*EVOLVE, "runs"], env)
        mine.append(took)
        base.append(timed_command([sys.executable, "-c", "import click"], env)[0])
    listed = sum(f"{i:012x}" in shown for i in range(STORED_RUNS - 20, STORED_RUNS))
    print(
        f"2. Listing: {STORED_RUNS:,} runs x {STEPS_PER_STORED_RUN} steps stored"
        f" ({path.stat().st_size / 2**20:.1f} MB, filled in {filled:.1f}s), best of {rounds}\n"
        f"   evolve runs {min(mine) * 1000:5.0f} ms (median {statistics.median(mine) * 1000:.0f}),"
        f" showed {listed} of the newest 20;  import click {min(base) * 1000:5.0f} ms"
        f"   target <= {RUNS_TARGET_S * 1000:.0f} ms  {verdict(min(mine) <= RUNS_TARGET_S)}"
    )


# -------------------------------------------------------------- 3: resume


def pick_failures(organized: OrganizedPlan, total: int, seed: int = 3) -> tuple[set[str], set[str]]:
    """Steps to break, and every step that will then not succeed (they and the dependents they
    skip): disjoint closures, ``total`` steps in all."""
    rng = random.Random(seed)
    order = sorted(organized.steps)
    rng.shuffle(order)
    broken, lost = set[str](), set[str]()
    for step_id in order:
        closure = {step_id} | nx.descendants(organized.graph, step_id)
        if len(lost) + len(closure) <= total and not closure & lost:
            broken.add(step_id)
            lost |= closure
        if len(lost) == total:
            break
    return broken, lost


async def resume_once(config: Config, home: Path) -> None:
    organized = organize(random_plan("flaky"), TOOLS)
    broken, lost = pick_failures(organized, UNFINISHED)
    BROKEN.update(broken)
    async with Session(config, tools=TOOLS) as session:
        first = await session.run(organized)
        assert session.history is not None
        session.history.flush()
    not_ok = {step_id for step_id, step in first.steps.items() if not step.ok}
    BROKEN.clear()  # healed: the function (and so the tool's digest) is unchanged
    CALLS.clear()
    db = store.connect(home / store.FILE_NAME)
    async with Session(config, tools=TOOLS) as session:
        started = time.perf_counter()
        run = store.find_run(db, first.run_id)
        plan = resumption(run, session.registry)
        planned = time.perf_counter() - started
        second = await session.resume(run, plan)
        assert session.history is not None
        session.history.flush()
        took = time.perf_counter() - started
    stored = store.find_run(db, first.run_id).status
    db.close()
    ok = len(CALLS) == len(not_ok) == UNFINISHED and set(CALLS) == not_ok == set(plan.rerun)
    ok = ok and stored == "succeeded" and second.ok
    print(
        f"3. Resume: {STEPS:,} steps, {len(broken)} broken + {len(lost) - len(broken)} skipped"
        f" dependents; first run {first.status.value}, {len(not_ok)} did not succeed\n"
        f"   resumption() re-runs {len(plan.rerun)}, keeps {len(plan.kept)}; the resume called"
        f" the tool {len(CALLS)} times ({len(set(CALLS) & not_ok)} of the unfinished steps)\n"
        f"   resume {took * 1000:.1f} ms (find_run + resumption {planned * 1000:.1f} ms);"
        f" stored run now {stored}   target: exactly {UNFINISHED} calls, succeeded  {verdict(ok)}"
    )


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 15")
    quick = parser.parse_args().quick
    rounds, listing_rounds = (3, 3) if quick else (15, 15)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        os.environ["EVOLVE_HOME"] = str(home)
        config = repo_config()
        overhead(config, rounds)
        listing(home, listing_rounds)
        asyncio.run(resume_once(config.with_execution(history=True), home))
    print(f"benchmark took {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
