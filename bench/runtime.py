"""Runtime benchmark: what does a node script pay to call tools through the workflow?

A node script's ``node_runtime`` calls travel over the runtime channel to the run that started
it (brokered mode), so every call crosses a process boundary twice. This benchmark runs a real
``kind: node`` step through ``code_evolver.run`` and times, inside the script (process start-up
excluded), two things:

Part A: 20 calls of a 200 ms async function tool sent with ``call_tools_parallel``, against one
call and against 20 sequential ``call_tool`` calls. The tool has no ``max_concurrency`` and
``max_parallel`` is 64, so nothing but the runtime can serialise the batch: its wall time should
stay within 1.3x of one call.

Part B: 200 sequential calls of a no-op async function tool; the median round trip must stay
under 2 ms. The same script run on its own (``CODE_EVOLVER_CONFIG`` set, no runtime channel, so
its calls are served in its own process) is shown for comparison only.

Part C: scale. One node step fans out N calls of the no-op tool with one
``call_tools_parallel`` for N = 1,000, 2,000, 4,000 and 8,000, side by side in one run. Scheduling
must stay proportional to the work: 8,000 calls may take at most 6x the time of 2,000 (linear is
4x; the broker once rescanned every pending call on each wake, which made it quadratic).

Each figure is the median of ``--repeat`` runs. Targets are printed as PASS/FAIL and never change
the exit code, since a noisy machine can miss them.

    python bench/runtime.py [--repeat N] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verdicts import verdict

import code_evolver
from code_evolver.tools.node import node_result
from node_runtime.protocol import ENV_FD, ENV_TOKEN

PARALLEL_TARGET = 1.3
"""The parallel batch may take at most 1.3x the wall time of one call."""
ROUND_TRIP_TARGET_S = 0.002
SCALE_TARGET = 6.0
"""A fan-out 4x as wide may take at most 6x as long (linear is 4x)."""
FANOUTS = (1000, 2000, 4000, 8000)
QUICK_FANOUTS = (250, 1000)
SLEEP_S = 0.2
RUN_TIMEOUT_S = 300.0

TOOLS_MODULE = """\
import asyncio

async def sleepy(text: str, seconds: float = 0.2) -> str:
    await asyncio.sleep(float(seconds))
    return text

async def noop(text: str) -> str:
    return text
"""

PROBE_SCRIPT = """\
import time

from node_runtime import call_tool, call_tools_parallel, run_node


def main(text, calls=20, round_trips=200, seconds=0.2, parallel=True):
    for _ in range(5):  # warm-up: the first call opens the channel
        call_tool("noop", text)
    result = {}
    if parallel:
        started = time.perf_counter()
        call_tool("sleepy", text, seconds=seconds)
        result["one_s"] = time.perf_counter() - started
        batch = [("sleepy", f"{text}{i}", {"seconds": seconds}) for i in range(calls)]
        started = time.perf_counter()
        outputs = call_tools_parallel(batch)
        result["parallel_s"] = time.perf_counter() - started
        result["parallel_ok"] = outputs == [prompt for _, prompt, _ in batch]
        started = time.perf_counter()
        for _ in range(calls):
            call_tool("sleepy", text, seconds=seconds)
        result["sequential_s"] = time.perf_counter() - started
    samples = []
    for _ in range(round_trips):
        started = time.perf_counter()
        call_tool("noop", text)
        samples.append(time.perf_counter() - started)
    result["round_trips_s"] = samples
    return result


if __name__ == "__main__":
    run_node(main)
"""

FANOUT_SCRIPT = """\
import time

from node_runtime import call_tool, call_tools_parallel, run_node


def main(text, sizes=()):
    for _ in range(5):  # warm-up: the first call opens the channel
        call_tool("noop", text)
    times = {}
    for size in sizes:
        batch = [("noop", f"{text}{i}") for i in range(size)]
        started = time.perf_counter()
        outputs = call_tools_parallel(batch)
        times[str(size)] = time.perf_counter() - started
        if outputs != [prompt for _, prompt in batch]:
            raise SystemExit(f"the fan-out of {size} calls returned something else")
    return times


if __name__ == "__main__":
    run_node(main)
"""

CONFIG = f"""\
execution:
  max_parallel: 64
  timeout_s: {RUN_TIMEOUT_S:g}
tools:
  sleepy: {{kind: function, function: "runtime_tools:sleepy"}}
  noop: {{kind: function, function: "runtime_tools:noop"}}
  probe: {{kind: node, script: probe.py}}
  fanout: {{kind: node, script: fanout.py}}
"""


@dataclass(frozen=True)
class Probe:
    """One run of the probe script; times in seconds, measured inside the script."""

    round_trip_median_s: float
    round_trip_p90_s: float
    one_s: float = 0.0
    parallel_s: float = 0.0
    sequential_s: float = 0.0
    step_s: float = 0.0
    """The whole node step as the run saw it: process start-up and exit included."""

    @classmethod
    def from_output(cls, output: Any, step_s: float = 0.0) -> Probe:
        if not isinstance(output, dict) or output.get("parallel_ok") is False:
            raise RuntimeError(f"the probe returned something unexpected: {output!r:.300}")
        samples: list[float] = output["round_trips_s"]
        return cls(
            statistics.median(samples),
            statistics.quantiles(samples, n=10)[-1],
            output.get("one_s", 0.0),
            output.get("parallel_s", 0.0),
            output.get("sequential_s", 0.0),
            step_s,
        )


def write_workspace(folder: Path) -> Path:
    """The config, the tools module and the probe script; returns the config's path."""
    files = {
        "runtime_tools.py": TOOLS_MODULE,
        "probe.py": PROBE_SCRIPT,
        "fanout.py": FANOUT_SCRIPT,
        "config.yaml": CONFIG,
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder / "config.yaml"


def probe_params(calls: int, round_trips: int, parallel: bool) -> dict[str, Any]:
    return {"calls": calls, "round_trips": round_trips, "seconds": SLEEP_S, "parallel": parallel}


def run_brokered(config: Path, calls: int, round_trips: int) -> Probe:
    """One run of a one-step plan whose node script calls the tools over the runtime channel,
    after a full collection: else the first run in this process may pay a full collection of
    everything imported so far (30-60 ms) in the middle of its parallel batch."""
    gc.collect()
    params = probe_params(calls, round_trips, parallel=True)
    step = {"step_id": "probe", "tool": "probe", "input": "x", "params": params}
    plan = {"request": "runtime benchmark", "steps": [step]}
    result = code_evolver.run(plan, config=config)
    probe = result.steps["probe"]
    if not probe.ok:
        raise RuntimeError(f"the probe step ended {probe.status.value}: {probe.error}")
    return Probe.from_output(probe.output, probe.duration_s)


def run_fanout(config: Path, sizes: Sequence[int]) -> dict[int, float]:
    """One node step fanning out each of ``sizes`` no-op calls in turn; seconds per size."""
    gc.collect()
    step = {"step_id": "fanout", "tool": "fanout", "input": "x", "params": {"sizes": sizes}}
    plan = {"request": "runtime scale benchmark", "steps": [step]}
    result = code_evolver.run(plan, config=config)
    fanout = result.steps["fanout"]
    if not fanout.ok or not isinstance(fanout.output, dict):
        raise RuntimeError(f"the fan-out step ended {fanout.status.value}: {fanout.error}")
    return {int(size): float(seconds) for size, seconds in fanout.output.items()}


def run_standalone(config: Path, round_trips: int) -> Probe:
    """The script started directly: no runtime channel, so its calls run in its own process."""
    env = {k: v for k, v in os.environ.items() if k not in (ENV_FD, ENV_TOKEN)}
    env["CODE_EVOLVER_CONFIG"] = str(config)
    payload = {"input": "x", "params": probe_params(0, round_trips, parallel=False)}
    proc = subprocess.run(
        [sys.executable, str(config.parent / "probe.py")],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=config.parent,
        env=env,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the standalone probe exited {proc.returncode}: {proc.stderr[-500:]}")
    return Probe.from_output(node_result(proc.stdout))


def median_of(probes: Sequence[Probe], field: str) -> float:
    return float(statistics.median(getattr(probe, field) for probe in probes))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}ms"


def report_parallel(brokered: Sequence[Probe], calls: int) -> None:
    one = median_of(brokered, "one_s")
    parallel = median_of(brokered, "parallel_s")
    sequential = median_of(brokered, "sequential_s")
    print(f"Part A: {calls} calls of a {SLEEP_S * 1000:g}ms tool (ratio = wall / one call)")
    print(f"  {'one call_tool':<26} {ms(one):>10} {1.0:>7.2f}x")
    ok = parallel <= PARALLEL_TARGET * one
    print(
        f"  {f'call_tools_parallel x{calls}':<26} {ms(parallel):>10} {parallel / one:>7.2f}x"
        f" | target <= {PARALLEL_TARGET}x one call: {verdict(ok)}"
    )
    label = f"sequential call_tool x{calls}"
    print(f"  {label:<26} {ms(sequential):>10} {sequential / one:>7.2f}x")
    print()


def report_round_trip(brokered: Sequence[Probe], standalone: Sequence[Probe], n: int) -> None:
    print(f"Part B: round trip of one no-op call ({n} sequential calls per run)")
    print(f"  {'mode':<12} {'median':>10} {'p90':>10}")
    for name, probes in (("brokered", brokered), ("standalone", standalone)):
        median = median_of(probes, "round_trip_median_s")
        line = f"  {name:<12} {ms(median):>10} {ms(median_of(probes, 'round_trip_p90_s')):>10}"
        if name == "brokered":
            line += f" | target median <= {ms(ROUND_TRIP_TARGET_S)}: "
            line += verdict(median <= ROUND_TRIP_TARGET_S)
        else:
            line += " | for comparison only (calls served in the script's own process)"
        print(line)
    step = median_of(brokered, "step_s")
    print(f"  (the whole brokered node step, process start-up included: {step:.2f}s)")
    print()


def report_scale(runs: Sequence[dict[int, float]]) -> None:
    sizes = sorted(runs[0])
    print("Part C: scale, one node step fanning out N no-op calls with call_tools_parallel")
    print(f"  {'N':>6} {'wall':>10} {'per call':>10}")
    walls = {size: float(statistics.median(run[size] for run in runs)) for size in sizes}
    for size in sizes:
        print(f"  {size:>6} {ms(walls[size]):>10} {walls[size] / size * 1e6:>8.1f}us")
    large = sizes[-1]
    small = max((size for size in sizes if size * 4 <= large), default=sizes[0])
    ratio = walls[large] / walls[small]
    print(
        f"  ratio {large}/{small}: {ratio:.2f}x (linear is {large / small:g}x)"
        f" | target <= {SCALE_TARGET:g}x: {verdict(ratio <= SCALE_TARGET)}"
    )
    print()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per measurement (default 3, 1 with --quick)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 10 parallel calls, 50 round trips, fan-outs of 250 and 1,000",
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quick: bool = args.quick
    repeat: int = args.repeat or (1 if quick else 3)
    calls, round_trips = (10, 50) if quick else (20, 200)
    fanouts = QUICK_FANOUTS if quick else FANOUTS
    started = time.perf_counter()
    print(f"Runtime benchmark: node_runtime calls timed inside a node script (median of {repeat})")
    print()
    with tempfile.TemporaryDirectory(prefix="runtime-bench-") as folder:
        config = write_workspace(Path(folder))
        brokered = [run_brokered(config, calls, round_trips) for _ in range(repeat)]
        standalone = [run_standalone(config, round_trips) for _ in range(repeat)]
        scale = [run_fanout(config, fanouts) for _ in range(repeat)]
    report_parallel(brokered, calls)
    report_round_trip(brokered, standalone, round_trips)
    report_scale(scale)
    print(f"benchmark took {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
