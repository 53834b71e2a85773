"""Chat benchmark: how soon the prompt is ready, how soon a follow-up starts, and whether a
long conversation holds its memory.

1. Prompt ready: ``evolve`` started in a pseudo-terminal until its prompt shows, beside
   ``evolve --help`` run to its end, rounds interleaved; target <= 1.5x. The prompt shows
   before prompt-toolkit has loaded (keys typed meanwhile wait in the terminal), so the time
   until the editor has drawn its toolbar is printed beside it.
2. Follow-up: in one chat (the scripted model answers at once), the time from a message to
   its first step starting, for requests the rules plan; target <= 50 ms (median and p95).
3. Memory: 200 requests in one chat; resident memory after the first 20 and after all 200;
   target: flat (growth <= 10%).

Targets are printed as PASS/FAIL and never change the exit code.

    python bench/chat.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import io
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time

from repo_config import REPO, repo_config
from rich.console import Console
from verdicts import verdict

from code_evolver import events
from code_evolver.chat.session import ChatSession
from code_evolver.llm.fake import ScriptedBackend

EVOLVE = [sys.executable, "-c", "from code_evolver.cli import main; main()"]
FOLLOW_UPS = ("write a joke about owls", "now summarize it", "translate it to french")


def prompt_ready(home: str) -> tuple[float, float]:
    """Seconds from start to the chat's prompt in a pseudo-terminal, and to its editor."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {**os.environ, "EVOLVE_HOME": home, "TERM": "xterm"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*EVOLVE, "--config", str(REPO / "config.yaml")],
        stdin=child,
        stdout=child,
        stderr=child,
        env=env,
        start_new_session=True,
    )
    os.close(child)
    seen = b""
    times: list[float] = []
    try:
        for mark in ("›".encode(), b"/help"):
            while mark not in seen:
                if select.select([main], [], [], 5)[0]:
                    chunk = os.read(main, 65536)
                    seen += chunk
                    if b"\x1b[6n" in chunk:  # where is the cursor? answered as a terminal does
                        os.write(main, b"\x1b[1;1R")
                elif proc.poll() is not None:
                    raise RuntimeError(f"evolve ended before its prompt: {seen[-500:]!r}")
            times.append(time.perf_counter() - started)
        return times[0], times[1]
    finally:
        proc.kill()
        proc.wait()
        os.close(main)


def help_time() -> float:
    started = time.perf_counter()
    subprocess.run([*EVOLVE, "--help"], capture_output=True, check=True)
    return time.perf_counter() - started


def quiet_chat() -> ChatSession:
    console = Console(file=io.StringIO(), width=100)
    return ChatSession(repo_config(), console, console, backend=ScriptedBackend(lambda r: "ok"))


async def follow_up_latencies(rounds: int) -> list[float]:
    chat = quiet_chat()
    began: list[float] = []
    chat.session.bus.subscribe(
        lambda e: began.append(time.perf_counter()) if isinstance(e, events.StepStarted) else None
    )
    latencies = []
    for i in range(rounds):
        for message in FOLLOW_UPS:
            began.clear()
            sent = time.perf_counter()
            await chat.handle(message)
            if i and began:  # the first round loads what a chat loads once
                latencies.append(began[0] - sent)
    await chat.close()
    return latencies


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def memory(requests: int) -> tuple[float, float]:
    chat = quiet_chat()
    early = 0.0
    for i in range(requests):
        await chat.handle(FOLLOW_UPS[i % len(FOLLOW_UPS)])
        if i == 19:
            early = rss_mb()
    await chat.close()
    return early, rss_mb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and requests")
    quick = parser.parse_args().quick
    rounds, requests = (3, 40) if quick else (7, 200)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as home:
        os.environ["EVOLVE_HOME"] = home
        ready, editor, helped = [], [], []
        for _ in range(rounds):
            prompt, drawn = prompt_ready(home)
            ready.append(prompt)
            editor.append(drawn)
            helped.append(help_time())
        ratio = min(ready) / min(helped)
        print(
            f"Prompt ready: {min(ready) * 1000:.0f} ms, evolve --help {min(helped) * 1000:.0f} ms "
            f"(best of {rounds}): {ratio:.2f}x  target <= 1.5x  {verdict(ratio <= 1.5)}\n"
            f"  editor drawn (history, completion, toolbar): {min(editor) * 1000:.0f} ms, "
            f"{min(editor) / min(helped):.2f}x"
        )
        latencies = asyncio.run(follow_up_latencies(rounds * 3))
        median = statistics.median(latencies) * 1000
        p95 = sorted(latencies)[int(0.95 * (len(latencies) - 1))] * 1000
        print(
            f"Follow-up to first step: median {median:.1f} ms, p95 {p95:.1f} ms "
            f"({len(latencies)} messages)  target <= 50 ms  {verdict(p95 <= 50)}"
        )
        early, late = asyncio.run(memory(requests))
        growth = late / early - 1
        print(
            f"Memory over {requests} requests: {early:.0f} MB after 20, {late:.0f} MB after "
            f"{requests} (+{growth:.1%})  target <= +10%  {verdict(growth <= 0.10)}"
        )
    print(f"benchmark took {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
