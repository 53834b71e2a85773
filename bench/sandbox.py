"""Sandbox benchmark: what does starting a tool's process cost a run?

Part A (``spawning``): command steps run through the public API (``code_evolver.run`` with a
config file, ``max_parallel`` 64, each tool with its default isolation), one process per step:

* ``wide-50``: 50 parallel ``sleep 0.2`` steps and a join step (``true``) after them;
* ``layered-120``: a random layered DAG (seeded) of 120 ``sleep`` steps of 50-150 ms.

The ratio is the run's wall time over its critical path (``RunResult.critical_path_s``: the
longest dependency chain by measured step times). In-process tools reach about 1.02x
(``bench/scheduler.py``); processes must stay within 1.10x, so starting them must not serialise
the run. Where dozens of processes start at the same instant nothing does much better than
starting them back to back, so ``wide-50``'s wall time is also held against a floor measured
beside it in the same run: the same 50 ``sleep 0.2`` processes started with ``os.posix_spawn``
in a loop and waited for. It must stay within 1.15x of that floor. (Walls are compared, not
ratios: a step's measured time includes its own start, so the ratio forgives slow starts.)

``--compare-strategies`` runs both DAGs with each way of starting and reaping a child that was
tried, interleaved round by round: asyncio's ``subprocess_exec`` with the threaded child watcher
(what ran before) or the pidfd one; ``os.posix_spawn`` or ``Popen`` watched by a pidfd, started
on the event loop's thread or from worker threads. It does so with a small parent and then with
~1 GB of touched memory in the parent (a loaded model: fork() cost grows with it, vfork and
posix_spawn do not), and shows two reasons posix_spawn lost: what keeping the parent's
descriptors out of its child costs per spawn, and that it holds the GIL until its child execs.
The posix_spawn candidate lives here, not in the library.

Part B (``start-up``): one process start at each isolation level (``none``: the limits'
``prlimit``; ``contain``: a request to the run's contained fork server, ``launch.forkserver``;
``strict``: a bubblewrap sandbox of its own) against a plain spawn of the same program, for
``true`` and for ``python -c pass``; targets: contain adds <= 15 ms, strict <= 40 ms.

Each figure is the median of ``--repeat`` runs; ``--busy N`` adds N busy-loop processes as a
competing load (the figures that matter are the loaded ones); ``--isolation none`` takes the
sandbox's wrappers out, leaving the cost of starting and reaping the processes themselves.
Targets are printed as PASS/FAIL and never change the exit code, since a noisy machine can
miss them.

    python bench/sandbox.py [--repeat N] [--busy N] [--isolation LEVEL] [--compare-strategies]
                            [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from verdicts import verdict

import code_evolver
from code_evolver.launch import processes, spawn

DAG_TARGET = 1.10
"""Wall time may exceed the critical path by at most 10%."""
FLOOR_TARGET = 1.15
"""Where 50 processes start at once: at most 1.15x the wall time of the posix_spawn floor."""
WIDTH = 50
SLEEP_S = 0.2
LAYERED_STEPS = 120
SEED = 7
MAX_PARALLEL = 64
BIG_PARENT_MB = 1024
SETTLE_S = 0.3

CONFIG = """\
tools:
  sleep: {kind: command, command: ["sleep", "{params.seconds}"]}
  join: {kind: command, command: ["true"]}
"""
ISOLATIONS = ("strict", "contain", "none")

Plan = dict[str, Any]


# ------------------------------------------------------------------ the DAGs


def step(
    step_id: str, tool: str, seconds: float | None, deps: Sequence[str] = ()
) -> dict[str, Any]:
    params = {} if seconds is None else {"seconds": seconds}
    return {"step_id": step_id, "tool": tool, "input": "", "params": params, "depends_on": deps}


def wide_plan(width: int = WIDTH) -> Plan:
    leaves = [step(f"w{i}", "sleep", SLEEP_S) for i in range(width)]
    join = step("join", "join", None, [s["step_id"] for s in leaves])
    return {"request": f"wide-{width}", "steps": [*leaves, join]}


def layered_plan(total: int = LAYERED_STEPS, seed: int = SEED) -> Plan:
    """6 layers; each step reads one step of the previous layer and 0-2 of any earlier one."""
    rng = random.Random(seed)
    layers, steps = 6, []
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
            steps.append(step(step_id, "sleep", rng.randint(50, 150) / 1000, deps))
        earlier += ids
        previous = ids
    return {"request": f"layered-{len(steps)}", "steps": steps}


@dataclass(frozen=True)
class Run:
    wall_s: float
    critical_path_s: float

    @property
    def ratio(self) -> float:
        return self.wall_s / self.critical_path_s


def run_plan(plan: Plan, config: Path) -> Run:
    """One run through the public API, after a full collection so earlier garbage is not
    billed to it."""
    gc.collect()
    result = code_evolver.run(plan, config=config, max_parallel=MAX_PARALLEL)
    if not result.ok:
        failed = {s.error for s in result.steps.values() if not s.ok}
        raise RuntimeError(f"{plan['request']} ended {result.status}: {sorted(map(str, failed))}")
    return Run(result.wall_s, result.critical_path_s)


def posix_spawn_floor(width: int = WIDTH, seconds: float = SLEEP_S) -> float:
    """Wall time of ``width`` ``sleep`` processes started back to back with ``os.posix_spawn``
    and waited for: about the least that starting them costs."""
    program = shutil.which("sleep") or "/bin/sleep"
    gc.collect()
    started = time.perf_counter()
    pids = [os.posix_spawn(program, ["sleep", str(seconds)], os.environ) for _ in range(width)]
    for pid in pids:
        os.waitpid(pid, 0)
    return time.perf_counter() - started


# ------------------------------------------------------- ways to start a child


@dataclass(frozen=True)
class Strategy:
    label: str
    name: str
    """``processes.STRATEGY``."""
    threads: int = 0
    """``processes.SPAWN_THREADS``."""
    pidfd_watcher: bool = False
    """Run the ``asyncio`` strategy with asyncio's PidfdChildWatcher instead of the default."""
    posix_spawn: bool = False
    """Start children with :func:`posix_spawn_child` instead of ``spawn.spawn``."""


def strategies() -> list[Strategy]:
    found = [Strategy("asyncio subprocess_exec, threaded watcher", "asyncio")]
    if spawn.AVAILABLE:
        found += [
            Strategy("asyncio subprocess_exec, pidfd watcher", "asyncio", pidfd_watcher=True),
            Strategy("posix_spawn + pidfd, event loop thread", "pidfd", posix_spawn=True),
            Strategy("posix_spawn + pidfd, 4 spawn threads", "pidfd", 4, posix_spawn=True),
            Strategy("Popen (vfork) + pidfd, event loop thread", "pidfd"),
            Strategy("Popen (vfork) + pidfd, 1 spawn thread", "pidfd", 1),
            Strategy("Popen (vfork) + pidfd, 4 spawn threads", "pidfd", 4),
        ]
    return found


IN_USE = next(
    s
    for s in strategies()
    if (s.name, s.threads) == (processes.STRATEGY, processes.SPAWN_THREADS)
    and not (s.posix_spawn or s.pidfd_watcher)
)
"""What ``run_process`` uses here (for ``asyncio``: with its default, threaded watcher)."""


@contextmanager
def using(strategy: Strategy) -> Iterator[None]:
    saved = processes.STRATEGY, processes.SPAWN_THREADS, spawn.spawn
    processes.STRATEGY, processes.SPAWN_THREADS = strategy.name, strategy.threads
    if strategy.posix_spawn:
        spawn.spawn = posix_spawn_child
    if strategy.pidfd_watcher:
        set_child_watcher(asyncio.PidfdChildWatcher())
    try:
        yield
    finally:
        processes.STRATEGY, processes.SPAWN_THREADS, spawn.spawn = saved
        if strategy.pidfd_watcher:
            set_child_watcher(asyncio.ThreadedChildWatcher())


def set_child_watcher(watcher: asyncio.AbstractChildWatcher) -> None:
    with warnings.catch_warnings():  # deprecated in 3.12; this is 3.11's machinery on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_child_watcher(watcher)


def posix_spawn_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
    pass_fds: Sequence[int],
) -> spawn.Spawned:
    """The posix_spawn candidate for ``spawn.spawn``: a new session, SIGPIPE and SIGXFSZ back
    to their defaults, ``pass_fds`` duplicated onto themselves (which clears close-on-exec in
    the child only, glibc >= 2.29) and every other inheritable descriptor closed in the child.
    It cannot change directory, so the benchmark runs from its config folder."""
    if cwd is not None and not os.path.samefile(cwd, "."):
        raise NotImplementedError("os.posix_spawn cannot change directory")
    environ = os.environ if env is None else env
    program = argv[0]
    if not os.path.dirname(program):
        found = shutil.which(program, path=environ.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(2, "No such file or directory", program)
        program = found
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    actions: list[tuple[int, int] | tuple[int, int, int]] = [
        (os.POSIX_SPAWN_DUP2, stdin_r, 0),
        (os.POSIX_SPAWN_DUP2, stdout_w, 1),
        (os.POSIX_SPAWN_DUP2, stderr_w, 2),
    ]
    actions += [(os.POSIX_SPAWN_DUP2, fd, fd) for fd in pass_fds]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in inheritable_fds(pass_fds)]
    try:
        pid = os.posix_spawn(
            program,
            list(argv),
            environ,
            file_actions=actions,
            setsid=True,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
    except BaseException:
        for fd in (stdin_w, stdout_r, stderr_r):
            os.close(fd)
        raise
    finally:
        for fd in (stdin_r, stdout_w, stderr_w):
            os.close(fd)
    for fd in (stdin_w, stdout_r, stderr_r):
        os.set_blocking(fd, False)
    return spawn.Spawned(pid, os.pidfd_open(pid), stdin_w, stdout_r, stderr_r)


def inheritable_fds(exclude: Sequence[int] = ()) -> list[int]:
    """This process's descriptors above stderr that a child would inherit."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in exclude:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:  # the listing's own descriptor, closed by now
                pass
    return found


# ------------------------------------------------------------------ reporting


def load1() -> float:
    return os.getloadavg()[0]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


@dataclass
class Figures:
    """Runs per (strategy label, DAG name), with the floors and load averages beside them."""

    runs: dict[tuple[str, str], list[Run]]
    floors: list[float]
    loads: list[float]
    failed: dict[str, str]
    """Strategies that could not run here, with why."""

    def wall(self, label: str, dag: str) -> float:
        return median([r.wall_s for r in self.runs[(label, dag)]])

    def ratio(self, label: str, dag: str) -> float:
        return median([r.ratio for r in self.runs[(label, dag)]])

    def critical_path(self, label: str, dag: str) -> float:
        return median([r.critical_path_s for r in self.runs[(label, dag)]])


def measure(
    plans: Sequence[Plan], config: Path, repeat: int, chosen: Sequence[Strategy]
) -> Figures:
    """Every plan under every strategy, ``repeat`` rounds interleaved with the floor, so that a
    change of load hits every figure alike."""
    figures = Figures({}, [], [], {})
    for _ in range(repeat):
        figures.floors.append(posix_spawn_floor())
        for strategy in chosen:
            if strategy.label in figures.failed:
                continue
            with using(strategy):
                for plan in plans:
                    try:
                        run = run_plan(plan, config)
                    except RuntimeError as exc:
                        figures.failed[strategy.label] = str(exc)[:200]
                        break
                    figures.runs.setdefault((strategy.label, plan["request"]), []).append(run)
        figures.loads.append(load1())
    return figures


# ---------------------------------------------------------- part A: spawning


def report_spawning(config: Path, repeat: int) -> None:
    plans = [wide_plan(), layered_plan()]
    figures = measure(plans, config, repeat, [IN_USE])
    if IN_USE.label in figures.failed:
        raise RuntimeError(figures.failed[IN_USE.label])
    floor = median(figures.floors)
    print(
        f"Part A: spawning ({IN_USE.label}; command steps through code_evolver.run,"
        f" max_parallel {MAX_PARALLEL}; median of {repeat};"
        f" load average {median(figures.loads):.2f})"
    )
    print(f"  {'DAG':<12} {'crit. path':>10} {'wall':>9} {'ratio':>6} | targets")
    for plan in plans:
        name = plan["request"]
        wall, ratio = figures.wall(IN_USE.label, name), figures.ratio(IN_USE.label, name)
        line = f"  {name:<12} {ms(figures.critical_path(IN_USE.label, name)):>10} {ms(wall):>9}"
        line += f" {ratio:>6.3f} | <= {DAG_TARGET}x: {verdict(ratio <= DAG_TARGET)}"
        if name.startswith("wide"):
            line += (
                f"; wall {wall / floor:.3f}x the floor's, <= {FLOOR_TARGET}x:"
                f" {verdict(wall <= FLOOR_TARGET * floor)}"
            )
        print(line)
    print(
        f"  floor: {WIDTH} x sleep {SLEEP_S:g} started by os.posix_spawn in a loop and waited"
        f" for: {ms(floor)} ({floor / SLEEP_S:.3f}x {SLEEP_S:g}s)"
    )
    print()


# ------------------------------------------------- comparing spawn strategies


def report_strategies(config: Path, repeat: int) -> None:
    print(
        f"Spawn strategies compared (through code_evolver.run; ratio = wall / critical path;"
        f" last column: wide-{WIDTH}'s wall over the posix_spawn floor's)"
    )
    compare_strategies(config, repeat, "small")
    big = touched_memory(BIG_PARENT_MB)
    compare_strategies(config, repeat, f"+{BIG_PARENT_MB} MB touched")
    del big
    descriptor_cost()
    gil_during_spawn()
    print()


def compare_strategies(config: Path, repeat: int, parent: str) -> None:
    plans = [wide_plan(), layered_plan()]
    chosen = strategies()
    figures = measure(plans, config, repeat, chosen)
    floor = median(figures.floors)
    print(
        f"  parent {parent}: floor {ms(floor)}; median of {repeat};"
        f" load average {median(figures.loads):.2f}"
    )
    header = f"    {'strategy':<42}"
    for plan in plans:
        header += f" | {plan['request'] + ' wall':>16} {'ratio':>6}"
    print(header + " | /floor")
    for strategy in chosen:
        line = f"    {strategy.label:<42}"
        if strategy.label in figures.failed:
            print(f"{line} | could not run: {figures.failed[strategy.label]}")
            continue
        for plan in plans:
            wall = figures.wall(strategy.label, plan["request"])
            line += f" | {ms(wall):>16} {figures.ratio(strategy.label, plan['request']):>6.3f}"
        wide = figures.wall(strategy.label, plans[0]["request"])
        marker = "  <- in use" if strategy == IN_USE else ""
        print(line + f" | {wide / floor:>5.2f}x{marker}")


def touched_memory(megabytes: int) -> bytearray:
    """Memory the parent really holds (every page written), as a loaded model would."""
    block = bytearray(megabytes << 20)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    return block


def descriptor_cost(samples: int = 200) -> None:
    """What keeping the parent's descriptors out of a posix_spawn child costs per spawn (Popen
    closes them in the child with one close_range)."""
    if not spawn.AVAILABLE:
        return
    print("  posix_spawn's descriptor hygiene (list /proc/self/fd, keep the inheritable ones):")
    base = len(os.listdir("/proc/self/fd"))
    extra: list[int] = []
    try:
        for wanted in (64, 256, 512):
            missing = wanted - base - len(extra)
            extra += [os.open(os.devnull, os.O_RDONLY) for _ in range(max(0, missing))]
            listing = median([_timed(inheritable_fds) for _ in range(samples)])
            print(f"    {base + len(extra):>4} descriptors open: {listing * 1e6:5.0f}us per spawn")
    finally:
        for fd in extra:
            os.close(fd)


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def gil_during_spawn(samples: int = 30) -> None:
    """Whether another Python thread runs while a spawn waits for its child to exec: the event
    loop, or another spawn thread, must be able to go on meanwhile."""
    if not spawn.AVAILABLE:
        return
    program = shutil.which("true") or "/bin/true"
    spawners: dict[str, Callable[[], Callable[[], object]]] = {
        "os.posix_spawn": lambda: partial(
            os.waitpid, os.posix_spawn(program, [program], os.environ, setsid=True), 0
        ),
        "Popen (vfork)": lambda: subprocess.Popen([program], start_new_session=True).wait,
    }
    print("  another thread's progress while a spawn runs (1.0 = as fast as alone):")
    for name, start in spawners.items():
        print(f"    {name:<16} {_progress_beside(start, samples):.2f}")


def _progress_beside(start: Callable[[], Callable[[], object]], samples: int) -> float:
    """How many times a thread that keeps taking and releasing the GIL gets it while
    ``start()`` runs, per second, over how many times it gets it alone; ``start()`` returns
    what waits for the child."""
    ticks = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0)  # lets the GIL go at once: counts only time it can get it

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        before, began = ticks[0], time.perf_counter()
        time.sleep(0.1)
        alone = (ticks[0] - before) / (time.perf_counter() - began)
        inside, counted = 0.0, 0
        for _ in range(samples):
            before, began = ticks[0], time.perf_counter()
            wait = start()
            inside += time.perf_counter() - began
            counted += ticks[0] - before
            wait()
    finally:
        stop.set()
        thread.join()
    return counted / inside / alone if alone and inside else 0.0


# ------------------------------------------------------------------- CLI


@contextmanager
def competing_load(busy: int) -> Iterator[None]:
    """``busy`` busy-loop processes for the duration of the block, killed however it ends."""
    procs = [
        subprocess.Popen([sys.executable, "-S", "-c", "while True: pass"]) for _ in range(busy)
    ]
    try:
        if procs:
            time.sleep(SETTLE_S)
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


@contextmanager
def working_in(folder: str) -> Iterator[None]:
    """The tools' folder as the current one: the posix_spawn candidate cannot change it."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per measurement (default 5, 1 with --quick)"
    )
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes competing")
    parser.add_argument(
        "--isolation",
        choices=ISOLATIONS,
        help="run the command steps under this isolation (default: the tools' own default)",
    )
    parser.add_argument(
        "--compare-strategies",
        action="store_true",
        help="also compare the ways of starting and reaping a child, small and big parent",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: every DAG once")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.busy < 0:
        parser.error("--busy must not be negative")
    return args


STRICT_ADDED_MS, CONTAIN_ADDED_MS = 40.0, 15.0
"""Targets: what each isolation level may add to one process start over a plain spawn."""


def report_startup(starts: int) -> None:
    """Part B: the cost of one process start at each isolation level, against a plain spawn
    of the same program (``run_process`` with no wrapper), the median of ``starts``, each
    level interleaved with the others. Measured for ``true`` (a command) and for
    ``python -c pass`` (a node: the interpreter must be visible inside a strict sandbox)."""
    from code_evolver.config import ExecutionSettings
    from code_evolver.launch.launcher import Launcher
    from code_evolver.launch.processes import run_process
    from code_evolver.launch.sandbox import Request

    launcher = Launcher(ExecutionSettings())
    python = os.path.realpath(sys.executable)
    programs = {"true": [shutil.which("true") or "/bin/true"], "python": [python, "-c", "pass"]}

    async def once(level: str, argv: list[str]) -> float:
        started = time.perf_counter()
        if level == "plain":
            await run_process(argv)
        else:
            await launcher.run(Request(argv), stdin=b"", isolation=level)  # type: ignore[arg-type]
        return time.perf_counter() - started

    async def measure() -> dict[tuple[str, str], list[float]]:
        await launcher.ensure("contain")  # the run's fork server is up, as in a run
        await launcher.ensure("strict")
        times: dict[tuple[str, str], list[float]] = {}
        levels = ["plain", "none", "contain", "strict"]
        for round_ in range(starts):
            for level in levels[round_ % 4 :] + levels[: round_ % 4]:
                for name, argv in programs.items():
                    times.setdefault((level, name), []).append(await once(level, argv))
        return times

    try:
        times = asyncio.run(measure())
    finally:
        launcher.close()
    print(f"Part B: start-up per isolation level (median of {starts}; load average {load1():.2f})")
    print("  level          true   +plain   python   +plain")
    median = {key: statistics.median(values) * 1000 for key, values in times.items()}
    for level in ("plain", "none", "contain", "strict"):
        cells = []
        for name in programs:
            ms = median[(level, name)]
            cells.append(f"{ms:6.1f}ms {ms - median[('plain', name)]:+7.1f}")
        print(f"  {level:9s} {'  '.join(cells)}")
    for level, limit in (("contain", CONTAIN_ADDED_MS), ("strict", STRICT_ADDED_MS)):
        added = max(median[(level, name)] - median[("plain", name)] for name in programs)
        print(f"  {level} adds {added:.1f}ms at most: <= {limit:.0f}ms: {verdict(added <= limit)}")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    repeat: int = args.repeat or (1 if args.quick else 5)
    started = time.perf_counter()
    isolation = args.isolation or "the commands' default"
    print(
        f"Sandbox benchmark (load average {load1():.2f} at start; +{args.busy} busy;"
        f" isolation: {isolation})"
    )
    print()
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as folder:
        config = Path(folder) / "config.yaml"
        execution = f"execution: {{sandbox: {args.isolation}}}\n" if args.isolation else ""
        config.write_text(execution + CONFIG, encoding="utf-8")
        with working_in(folder), competing_load(args.busy):
            report_spawning(config, repeat)
            if args.compare_strategies:
                report_strategies(config, repeat)
            report_startup(30 if not args.quick else 3)
    print(f"benchmark took {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
