"""Writing a node: the code and its tests, proved in the sandbox, repaired from the failures.

The code and the tests are asked for at once (two independent model calls). Each attempt is
checked without running (:mod:`code_evolver.evolve.code`), then its tests run in the strict
sandbox; a failure goes back to the model with the code, trimmed. The loop stops at
``evolve.max_attempts``, or early when the same failure comes back twice (the model is not
getting anywhere); the last attempt may go to ``evolve.escalation_model``. The outcome is
explicit: a stored node, or the reason there is none, with every attempt recorded.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from code_evolver.config import EvolveSettings, ExecutionSettings
from code_evolver.evolve.code import (
    allowed_imports,
    extract_code,
    fenced_blocks,
    problems,
    with_entry_point,
)
from code_evolver.evolve.matching import FILLER
from code_evolver.evolve.node_store import NodeStore, StoredNode
from code_evolver.evolve.proving import TestReport, run_tests
from code_evolver.llm.base import user
from code_evolver.llm.service import LLMService
from code_evolver.planner.overseer import load_prompt
from code_evolver.templating import Ref, parse
from code_evolver.tools.base import StageListener

PROMPTS = Path(__file__).resolve().parent.parent.parent / "prompts"
MAX_CODE_TOKENS = 700
_LINE = re.compile(r"\bline \d+\b")


@dataclass
class Attempt:
    number: int
    model: str
    problems: list[str] = field(default_factory=list)
    """Refused before running (syntax, imports, shape)."""
    report: TestReport | None = None
    seconds: float = 0.0
    model_seconds: float = 0.0

    @property
    def failure(self) -> str:
        if self.problems:
            return "\n".join(self.problems)
        return self.report.failures_text() if self.report is not None else ""

    @property
    def gist(self) -> str:
        """The failure in one line: the first problem found (with how many more), or the
        last line of a test failure (a traceback ends with the error itself)."""
        if self.problems:
            more = len(self.problems) - 1
            return self.problems[0][:200] + (f" (and {more} more)" if more else "")
        return _gist(self.failure) if self.failure else ""

    @property
    def sameness(self) -> str:
        """The failure with its line numbers left out: the same mistake made again one line
        lower is the same failure."""
        if self.problems:
            return "\n".join(sorted({_LINE.sub("line N", p) for p in self.problems}))
        return _LINE.sub("line N", self.failure)

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "model": self.model,
            "passed": self.report is not None and self.report.passed,
            "problems": self.problems,
            "tests": self.report.summary() if self.report is not None else None,
            "seconds": round(self.seconds, 3),
            "model_seconds": round(self.model_seconds, 3),
        }


@dataclass
class Outcome:
    node: StoredNode | None
    attempts: list[Attempt]
    reason: str | None = None
    """Why no node was stored (None when one was)."""
    model_calls: int = 0


class NodeGenerator:
    def __init__(
        self,
        llm: LLMService,
        settings: EvolveSettings,
        execution: ExecutionSettings,
        store: NodeStore | None = None,
        *,
        tools: Collection[str] = (),
        escalate: Callable[[], LLMService] | None = None,
    ) -> None:
        self.llm = llm
        self.settings = settings
        self.execution = execution
        self.store = store or NodeStore()
        self.tools = sorted(tools)
        self._escalate = escalate
        self.allowed = allowed_imports(settings.allowed_imports)

    async def generate(
        self,
        task: str,
        example: str,
        name: str | None = None,
        on_stage: StageListener | None = None,
    ) -> Outcome:
        """A node for ``task``, stored as the next version of ``name`` (made from the task
        when not given), or the reason there is none. ``on_stage`` hears of each attempt."""
        report = on_stage or _silent
        name = name or node_name(task)
        values = {"task": task, "example": example[:300] or "(none)"}
        values |= {"allowed": ", ".join(sorted(self.allowed - {"main", "__future__"}))}
        values |= {"tools": self._tools_line()}
        outcome = Outcome(None, [])
        started = time.perf_counter()
        report("attempt1", "write node (attempt 1)", "running")
        code_reply, tests_reply = await asyncio.gather(
            self._ask(self.llm, "node_writer.txt", values),
            self._ask(self.llm, "node_tests.txt", values),
        )
        outcome.model_calls = 2
        code, tests = with_entry_point(extract_code(code_reply)), extract_code(tests_reply)
        model_seconds = time.perf_counter() - started
        previous = ""
        for number in range(1, self.settings.max_attempts + 1):
            llm = self.llm
            attempt = Attempt(number, llm.identity, model_seconds=model_seconds)
            checking = time.perf_counter()
            outcome.attempts.append(attempt)
            attempt.problems = problems(code, self.allowed, node=True)
            attempt.problems += [f"tests: {p}" for p in problems(tests, self.allowed, node=False)]
            if not attempt.problems:
                attempt.report = await self._prove(code, tests)
            attempt.seconds = model_seconds + time.perf_counter() - checking
            passed = attempt.report is not None and attempt.report.passed
            failure = "" if passed else attempt.failure
            status = "succeeded" if passed else "failed"
            label = f"write node (attempt {number})"
            report(f"attempt{number}", label, status, attempt.seconds, attempt.gist or None)
            if attempt.report is not None and attempt.report.passed:
                outcome.node = self._store(name, task, example, code, tests, outcome)
                return outcome
            if attempt.sameness == previous:
                outcome.reason = f"the same failure twice: {attempt.gist}"
                return outcome
            previous = attempt.sameness
            if number == self.settings.max_attempts:
                break
            if number + 1 == self.settings.max_attempts and self._escalate is not None:
                llm = self._escalate()
            fix_started = time.perf_counter()
            report(f"attempt{number + 1}", f"write node (attempt {number + 1})", "running")
            fixed = await self._ask(
                llm, "node_fix.txt", values | {"code": code, "tests": tests, "failures": failure}
            )
            outcome.model_calls += 1
            model_seconds = time.perf_counter() - fix_started
            code, tests = _fixed(fixed, code, tests)
            code = with_entry_point(code)
        last = outcome.attempts[-1].gist if outcome.attempts else "no attempt"
        outcome.reason = f"no attempt passed its tests; the last: {last}"
        return outcome

    async def _ask(self, llm: LLMService, prompt: str, values: dict[str, str]) -> str:
        template = parse(load_prompt(PROMPTS / prompt))

        def resolve(ref: Ref) -> str:
            return values.get(ref.name, str(ref))

        return await llm.complete(
            [user(template.render(resolve))], max_tokens=MAX_CODE_TOKENS, temperature=0.2
        )

    async def _prove(self, code: str, tests: str) -> TestReport:
        with tempfile.TemporaryDirectory(prefix="evolve-node-") as folder:
            await asyncio.to_thread(stage, Path(folder), code, tests)
            return await run_tests(
                Path(folder), self.execution, timeout_s=self.settings.test_timeout_s
            )

    def _store(
        self, name: str, task: str, example: str, code: str, tests: str, outcome: Outcome
    ) -> StoredNode:
        last = outcome.attempts[-1].report
        meta = {
            "description": task,
            "example_input": example[:1000],
            "model": self.llm.identity,
            "attempts": len(outcome.attempts),
            "attempt_log": [a.to_json() for a in outcome.attempts],
            "test_result": last.summary() if last is not None else None,
        }
        return self.store.add(name, code, tests, meta)

    def _tools_line(self) -> str:
        if not self.tools:
            return ""
        return (
            "- It may call these tools: from node_runtime import call_tool; "
            f"call_tool(NAME, text) with NAME one of {', '.join(self.tools)}.\n"
        )


def _fixed(reply: str, code: str, tests: str) -> tuple[str, str]:
    """The repaired code, and the repaired tests when the reply has them too."""
    blocks = fenced_blocks(reply)
    new_tests = next((b for b in blocks[1:] if "def test" in b), None)
    new_code = extract_code(blocks[0]) if blocks else extract_code(reply)
    return new_code or code, new_tests or tests


def _gist(text: str) -> str:
    """The last line of a failure (a traceback ends with the error itself), for one-line
    reasons."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "unknown"


def node_name(task: str) -> str:
    """``count the vowels in a text`` -> ``count_vowels``: a registry name from a task."""
    skip = FILLER | {"text", "input", "string"}
    words = [w for w in re.findall(r"[a-z0-9]+", task.lower()) if w not in skip]
    name = "_".join(words[:5]) or "node"
    if not name[0].isalpha():
        name = f"node_{name}"
    return name[:48].rstrip("_")


def stage(folder: Path, code: str, tests: str) -> None:
    """A node's two files in ``folder``, as its tests will import them."""
    (folder / "main.py").write_text(code, encoding="utf-8")
    (folder / "test_main.py").write_text(tests, encoding="utf-8")


def _silent(
    stage: str, name: str, status: str, seconds: float = 0.0, error: str | None = None
) -> None:
    pass
