"""Scheduler benchmark: does the executor add delay, and does its cost grow linearly?

Part A (``parallelism``) runs small synthetic DAGs whose steps are async sleeps of known length,
so the *planned* critical path (the longest dependency chain by the given durations) is the best
any scheduler can do. Each DAG runs in three modes: ``eager`` (a step starts when its last
dependency succeeds), ``waves`` (a barrier after every wave, kept for comparison) and
``sequential`` (``max_parallel=1``). The skewed and uneven-chain DAGs are built so that waves pay
for their barriers (about 1.3x); eager should stay within 5% of the critical path.

Part B (``scale``) runs 1,000 to 10,000 no-op steps as a chain, a fan-out and a random DAG with
about three edges per step. The tool returns at once, so the executor's wall time (constructing
the ``Executor`` plus ``run()``) is pure scheduling overhead; the organizer is timed on its own,
plan construction excluded. Time per step + edge should stay flat as the size grows.

Ratios, not absolute times, are the point: machines and load differ, but ``wall / critical
path`` near 1.0 and a flat ``us / (step + edge)`` mean the scheduler neither waits needlessly nor
degrades with size. Each figure is the median of ``--repeat`` runs. Targets are printed as
PASS/FAIL and never change the exit code, since a noisy machine can miss them.

    python bench/scheduler.py [--repeat N] [--only parallel|scale] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from verdicts import verdict

from code_evolver.config import ExecutionSettings
from code_evolver.executor import Executor
from code_evolver.organizer import OrganizedPlan, organize
from code_evolver.plan import Plan, Step
from code_evolver.tools.base import Tool
from code_evolver.tools.function import FunctionTool

EAGER_TARGET = 1.05
"""Eager wall time may exceed the planned critical path by at most 5%."""
OVERHEAD_TARGET_US = 200.0
ORGANIZE_TARGET_S = 0.5
TARGET_STEPS = 10_000
"""The organizer target applies to rows of this many steps."""
UNBOUNDED = 10_000
QUICK_SEQUENTIAL_MAX_STEPS = 20
RUN_TIMEOUT_S = 120.0
"""A run that takes longer has hung: fail loudly instead of waiting forever."""

SpecRow = tuple[str, int, Sequence[str]]
"""One step of a synthetic DAG: id, duration in ms, dependencies."""


async def sleep_tool(text: str, seconds: float | str = 0.1) -> str:
    """Sleep without blocking the event loop, then echo the input."""
    await asyncio.sleep(float(seconds))
    return text


async def noop_tool(text: str) -> str:
    """Return the input at once: all time measured around it is the scheduler's."""
    return text


SLEEP_TOOLS: dict[str, Tool] = {"sleep": FunctionTool("sleep", sleep_tool)}
NOOP_TOOLS: dict[str, Tool] = {"noop": FunctionTool("noop", noop_tool)}

MODES: dict[str, ExecutionSettings] = {
    "eager": ExecutionSettings(scheduling="eager", max_parallel=1000),
    "waves": ExecutionSettings(scheduling="waves", max_parallel=1000),
    "sequential": ExecutionSettings(scheduling="eager", max_parallel=1),
}


# ------------------------------------------------------------------ measuring


@dataclass(frozen=True)
class Measurement:
    elapsed_s: float
    """Constructing the executor plus ``run()``: every cost a caller of the executor pays."""
    critical_path_s: float
    """The longest dependency chain by measured step durations."""


async def _execute(
    organized: OrganizedPlan, tools: Mapping[str, Tool], settings: ExecutionSettings
) -> Measurement:
    """One timed run. It returns a small value rather than the ``RunResult`` because
    ``asyncio.run`` computes the repr of its task's result on the way out (CPython gh-112559),
    which takes a noticeable fraction of a second for a 10,000-step result."""
    started = time.perf_counter()
    async with asyncio.timeout(RUN_TIMEOUT_S):
        result = await Executor(organized, tools, settings).run()
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"benchmark run of {organized.plan.request!r} ended {result.status}")
    return Measurement(elapsed, result.critical_path_s)


def run_once(
    organized: OrganizedPlan, tools: Mapping[str, Tool], settings: ExecutionSettings
) -> Measurement:
    """One run on a fresh event loop, after a full collection so earlier garbage is not billed."""
    gc.collect()
    return asyncio.run(_execute(organized, tools, settings))


def time_organize(
    plan: Plan, tools: Mapping[str, Tool], repeat: int
) -> tuple[float, OrganizedPlan]:
    """Median seconds of ``organize(plan, tools)``, and its result."""
    times: list[float] = []
    organized = organize(plan, tools)
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        organized = organize(plan, tools)
        times.append(time.perf_counter() - started)
    return statistics.median(times), organized


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms"


# ------------------------------------------------------------ part A: DAGs


@dataclass(frozen=True)
class Dag:
    """A synthetic DAG of sleep steps with known durations (seconds)."""

    name: str
    durations: dict[str, float]
    depends_on: dict[str, list[str]]

    def plan(self) -> Plan:
        steps = [
            Step(
                step_id=step_id,
                tool="sleep",
                input=step_id,
                params={"seconds": seconds},
                depends_on=self.depends_on[step_id],
            )
            for step_id, seconds in self.durations.items()
        ]
        return Plan(request=self.name, steps=steps)


def make_dag(name: str, spec: Sequence[SpecRow]) -> Dag:
    return Dag(name, {s: d / 1000 for s, d, _ in spec}, {s: list(d) for s, _, d in spec})


def chain(prefix: str, durations_ms: Sequence[int]) -> list[SpecRow]:
    """``prefix1 -> prefix2 -> ...`` with the given durations."""
    return [
        (f"{prefix}{i}", d, [f"{prefix}{i - 1}"] if i > 1 else [])
        for i, d in enumerate(durations_ms, start=1)
    ]


def fan_out_dag() -> Dag:
    leaves: list[SpecRow] = [(f"leaf{i}", 50 * i, ["root"]) for i in range(1, 9)]
    join: SpecRow = ("join", 50, [s for s, _, _ in leaves])
    return make_dag("fan-out", [("root", 100, []), *leaves, join])


def skewed_dag() -> Dag:
    """Waves hold c2..c4 until the 400ms step ends: 600ms instead of 450ms."""
    spec = [*chain("c", [50] * 4), ("long", 400, []), ("join", 50, ["c4", "long"])]
    return make_dag("skewed", spec)


def uneven_chains_dag() -> Dag:
    """Waves pair a1/b1 and a2/b2, so chain A waits for B: 850ms instead of 650ms."""
    spec = [*chain("a", [50] * 6), *chain("b", [300] * 2), ("join", 50, ["a6", "b2"])]
    return make_dag("two-chains", spec)


def wide_dag(width: int = 50) -> Dag:
    spec: list[SpecRow] = [(f"w{i}", 50 + round(100 * i / (width - 1)), []) for i in range(width)]
    return make_dag(f"wide-{width}", spec)


def layered_dag(seed: int = 7, total: int = 120) -> Dag:
    """5-8 layers; each step reads one step of the previous layer and 0-2 of any earlier one."""
    rng = random.Random(seed)
    layers = rng.randint(5, 8)
    spec: list[SpecRow] = []
    earlier: list[str] = []
    previous: list[str] = []
    for layer in range(layers):
        ids = [f"l{layer}s{i}" for i in range(total // layers)]
        for step_id in ids:
            deps: list[str] = []
            if previous:
                deps.append(rng.choice(previous))
                extra = [s for s in rng.sample(earlier, min(2, len(earlier))) if s not in deps]
                deps += extra[: rng.randint(0, 2)]
            spec.append((step_id, rng.randint(50, 150), deps))
        earlier += ids
        previous = ids
    return make_dag(f"layered-{len(spec)}", spec)


def all_dags() -> list[Dag]:
    return [fan_out_dag(), skewed_dag(), uneven_chains_dag(), wide_dag(), layered_dag()]


@dataclass(frozen=True)
class ModeResult:
    wall_s: float
    measured_cp_s: float


def measure_mode(organized: OrganizedPlan, settings: ExecutionSettings, repeat: int) -> ModeResult:
    runs = [run_once(organized, SLEEP_TOOLS, settings) for _ in range(repeat)]
    return ModeResult(
        statistics.median(run.elapsed_s for run in runs),
        statistics.median(run.critical_path_s for run in runs),
    )


def report_parallel(repeat: int, quick: bool) -> None:
    print(f"Part A: parallelism (median of {repeat}; ratio = wall / planned critical path)")
    header = f"{'DAG':<12} {'steps':>5} {'planned CP':>10} |"
    for mode in MODES:
        header += f" {mode + ' wall':>15} {'ratio':>6} |"
    print(header + f" {'eager meas. CP':>14} | eager <= {EAGER_TARGET}x planned CP")
    for dag in all_dags():
        organized = organize(dag.plan(), SLEEP_TOOLS)
        planned, _ = organized.critical_path(dag.durations)
        line = f"{dag.name:<12} {len(dag.durations):>5} {ms(planned):>10} |"
        results: dict[str, ModeResult] = {}
        for mode, settings in MODES.items():
            if quick and mode == "sequential" and len(dag.durations) > QUICK_SEQUENTIAL_MAX_STEPS:
                line += f" {'skipped':>15} {'-':>6} |"
                continue
            results[mode] = measure_mode(organized, settings, repeat)
            wall = results[mode].wall_s
            line += f" {ms(wall):>15} {wall / planned:>6.3f} |"
        eager = results["eager"]
        ok = eager.wall_s <= EAGER_TARGET * planned
        print(line + f" {ms(eager.measured_cp_s):>14} | {verdict(ok)}")
    print()


# ------------------------------------------------------------- part B: scale


def noop_step(index: int, deps: Sequence[int]) -> Step:
    return Step(step_id=f"s{index}", tool="noop", input="x", depends_on=[f"s{d}" for d in deps])


def chain_plan(n: int) -> Plan:
    return Plan(request="chain", steps=[noop_step(i, [i - 1] if i else []) for i in range(n)])


def fan_out_plan(n: int) -> Plan:
    return Plan(request="fan-out", steps=[noop_step(i, [0] if i else []) for i in range(n)])


def random_plan(n: int, seed: int = 1) -> Plan:
    """Each step depends on three distinct random earlier steps (fewer for the first three)."""
    rng = random.Random(seed)
    steps = [noop_step(i, rng.sample(range(i), min(3, i))) for i in range(n)]
    return Plan(request="random", steps=steps)


SHAPES = {"chain": chain_plan, "fan-out": fan_out_plan, "random": random_plan}


@dataclass(frozen=True)
class ScaleRow:
    shape: str
    steps: int
    edges: int
    max_parallel: int
    organize_s: float
    execute_s: float

    @property
    def us_per_step(self) -> float:
        return self.execute_s / self.steps * 1e6

    def line(self) -> str:
        size = self.steps + self.edges
        targets = f"overhead {verdict(self.us_per_step <= OVERHEAD_TARGET_US)}"
        if self.steps >= TARGET_STEPS:
            targets += f", organize {verdict(self.organize_s <= ORGANIZE_TARGET_S)}"
        return (
            f"{self.shape:<8} {self.steps:>6} {self.edges:>6} {self.max_parallel:>7} |"
            f" {self.organize_s:>8.3f}s {self.organize_s / size * 1e6:>7.2f} |"
            f" {self.execute_s:>8.3f}s {self.us_per_step:>7.1f} {self.execute_s / size * 1e6:>7.2f}"
            f" | {targets}"
        )


def measure_shape(shape: str, steps: int, repeat: int) -> list[ScaleRow]:
    plan = SHAPES[shape](steps)
    edges = sum(len(s.depends_on) for s in plan.steps)
    organize_s, organized = time_organize(plan, NOOP_TOOLS, repeat)
    limits = [UNBOUNDED, ExecutionSettings().max_parallel] if shape == "fan-out" else [UNBOUNDED]
    rows = []
    for limit in limits:
        settings = ExecutionSettings(max_parallel=limit)
        walls = [run_once(organized, NOOP_TOOLS, settings).elapsed_s for _ in range(repeat)]
        rows.append(ScaleRow(shape, steps, edges, limit, organize_s, statistics.median(walls)))
    return rows


def report_scale(sizes: Sequence[int], repeat: int) -> None:
    print(f"Part B: scale (no-op steps, median of {repeat}; s+e = steps + edges)")
    print(
        f"{'shape':<8} {'steps':>6} {'edges':>6} {'max_par':>7} |"
        f" {'organize':>9} {'us/s+e':>7} | {'executor':>9} {'us/step':>7} {'us/s+e':>7} |"
        f" targets: <= {OVERHEAD_TARGET_US:g}us/step; organize <= {ORGANIZE_TARGET_S:g}s"
        f" at {TARGET_STEPS:,} steps"
    )
    for shape in SHAPES:
        for steps in sizes:
            for row in measure_shape(shape, steps, repeat):
                print(row.line())
    print()


# ------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per measurement (default 3, 1 with --quick)"
    )
    parser.add_argument("--only", choices=("parallel", "scale"), help="run one part only")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: each DAG once, long sequential runs skipped, scale at 1,000 steps",
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quick: bool = args.quick
    repeat: int = args.repeat or (1 if quick else 3)
    started = time.perf_counter()
    if args.only in (None, "parallel"):
        report_parallel(repeat, quick)
    if args.only in (None, "scale"):
        report_scale((1_000,) if quick else (1_000, 3_000, 10_000), repeat)
    print(f"benchmark took {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
