"""A node proves itself: its tests run in the strict sandbox, never outside it.

Generated code and a person's own node enter the registry the same way: the tests of the
folder run under bubblewrap (no network, a private work folder, read-only interpreter), by
:mod:`code_evolver.evolve.test_runner`. Without bubblewrap nothing is tested, and so nothing
enters the registry: the error says how to install it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from code_evolver.config import ExecutionSettings
from code_evolver.launch.launcher import Launcher
from code_evolver.launch.sandbox import Request

RUNNER = Path(__file__).with_name("test_runner.py")


@dataclass(frozen=True)
class TestReport:
    passed: bool
    tests: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(test name, the end of its traceback) for each failure."""
    seconds: float = 0.0
    problem: str | None = None
    """What went wrong around the tests (a timeout, a crash, no report)."""

    def summary(self) -> str:
        if self.problem:
            return self.problem
        if self.passed:
            return f"{self.tests} test{'s' * (self.tests != 1)} passed"
        if not self.tests:
            return "no tests ran (test_main.py needs test_* functions)"
        names = ", ".join(name for name, _ in self.failed)
        return f"{len(self.failed)} of {self.tests} tests failed: {names}"

    def failures_text(self, limit: int = 2000) -> str:
        """The failures for a model (or a person) to read, trimmed to ``limit`` characters."""
        failed = "\n\n".join(f"{name}:\n{trace}" for name, trace in self.failed)
        text = self.problem or failed or self.summary()
        return text[:limit]


async def run_tests(
    folder: Path, settings: ExecutionSettings | None = None, *, timeout_s: float = 60.0
) -> TestReport:
    """Run ``folder``'s test_main.py against its main.py in the strict sandbox; raises
    SandboxUnavailable when strict isolation cannot be made here."""
    launcher = Launcher(settings)
    await launcher.ensure("strict")
    started = time.perf_counter()
    request = Request([sys.executable, str(RUNNER), str(folder)], None, {}, {}, (RUNNER, folder))
    try:
        async with asyncio.timeout(timeout_s):
            ending = await launcher.run(request, stdin=b"", isolation="strict")
    except TimeoutError:
        return TestReport(
            False, 0, seconds=timeout_s, problem=f"the tests took over {timeout_s:g}s"
        )
    finally:
        launcher.close()
    seconds = time.perf_counter() - started
    stdout = ending.result.stdout.decode("utf-8", "replace").strip()
    try:
        report = json.loads(stdout.splitlines()[-1])
        failed = [(str(name), str(trace)) for name, trace in report["failed"]]
        tests = int(report["tests"])
    except (ValueError, KeyError, IndexError, TypeError):
        stderr = ending.result.stderr.decode("utf-8", "replace").strip()
        why = ending.limit or stderr[-800:] or stdout[-800:] or "no output"
        return TestReport(False, 0, seconds=seconds, problem=f"the tests did not report: {why}")
    return TestReport(tests > 0 and not failed, tests, failed, seconds)
