"""The planner's bounds with a scripted model: the deadline, the step and token bounds, the
degenerate plans a weak model writes (each rejected or repaired), the bounded choices of the
clause planner, and progress."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from code_evolver.config import load_config
from code_evolver.errors import PlanError, PromptTooLong
from code_evolver.llm.base import Request
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.organizer import OrganizedPlan
from code_evolver.planner import planner as planner_module
from code_evolver.planner.cache import PlanCache
from code_evolver.planner.choices import ToolChooser
from code_evolver.planner.clauses import Clause
from code_evolver.planner.planner import Planner, PlanOutcome, PlanProgress
from code_evolver.session import Session

REPO = Path(__file__).resolve().parent.parent
# Understood by the rules, so auto mode asks the model only when told to (mode llm).
REQUEST = "write a poem about the sea and translate it to french"


def step(n: int, tool: str, text: str, *after: int, **params: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "step_id": f"step{n}",
        "description": text[:40],
        "tool": tool,
        "input": text,
        "depends_on": [f"step{a}" for a in after],
    }
    if params:
        data["params"] = params
    return data


GOOD = json.dumps(
    {
        "steps": [
            step(1, "content_generator", "Write a poem about the sea."),
            step(2, "translator", "{step1}", 1, target_lang="French"),
        ]
    }
)


class EmbeddedScript(ScriptedBackend):
    """A scripted backend that the planner takes for the (weak) embedded model."""

    name = "embedded"


def make_planner(
    backend: ScriptedBackend, tmp_path: Path, **planner: Any
) -> tuple[Planner, list[PlanProgress]]:
    config = load_config(REPO / "config.yaml").with_planner(**planner)
    session = Session(config, backend=backend)
    seen: list[PlanProgress] = []
    built = Planner(
        session.config,
        session.registry,
        llm=session.llm,
        cache=PlanCache(tmp_path / "cache"),
        on_progress=seen.append,
    )
    return built, seen


def plan(planner: Planner, request: str = REQUEST, **kwargs: Any) -> PlanOutcome:
    return asyncio.run(planner.plan(request, **kwargs))


def test_the_deadline_brings_the_rules_plan_on_time(tmp_path: Path) -> None:
    slow = ScriptedBackend([GOOD], chunk_size=1, chunk_delay_s=0.05)  # ~10 s for the reply
    planner, _ = make_planner(slow, tmp_path, mode="llm", deadline_s=0.3)
    started = time.perf_counter()
    outcome = plan(planner)
    assert time.perf_counter() - started < 2
    assert outcome.source == "fallback"
    assert [s.tool for s in outcome.organized.plan.steps] == ["content_generator", "translator"]
    assert "did not finish planning within planner.deadline_s (0.3s)" in outcome.warnings[0]
    assert outcome.warnings[0].endswith("running the rules' plan instead")


def test_past_the_deadline_the_steps_already_streamed_are_the_plan(tmp_path: Path) -> None:
    text = json.dumps(json.loads(GOOD), separators=(",", ":"))
    first_step_end = text.index("},{") + 1
    # The first step arrives at once; the rest trickles in far past the deadline.
    backend = ScriptedBackend([text], chunk_size=first_step_end + 1, chunk_delay_s=0.0)
    original = backend.stream

    async def trickle(*args: Any, **kwargs: Any) -> Any:
        pieces = original(*args, **kwargs)
        yield await anext(pieces)
        await asyncio.sleep(10)
        async for piece in pieces:
            yield piece

    backend.stream = trickle  # type: ignore[method-assign]
    planner, _ = make_planner(backend, tmp_path, mode="llm", deadline_s=0.3)
    handed: list[OrganizedPlan] = []
    outcome = plan(planner, on_partial=handed.append)
    assert [s.step_id for s in outcome.organized.plan.steps] == ["step1"]
    assert outcome.source == "llm"
    assert "running the 1 steps it had written" in outcome.warnings[0]
    assert handed
    assert handed[-1].plan.steps == outcome.organized.plan.steps


def test_a_plan_is_bounded_by_the_request_s_parts(tmp_path: Path) -> None:
    backend = ScriptedBackend([GOOD])
    planner, _ = make_planner(backend, tmp_path, mode="llm", tokens_per_step=50)
    assert plan(planner).source == "llm"
    (request,) = backend.requests
    assert request.schema is not None
    steps = request.schema["properties"]["steps"]
    assert steps["maxItems"] == 3  # two parts (a poem, a translation) and room for a join
    assert request.max_tokens == 30 + 50 * 3


BAD_PATTERNS = {
    "identical steps": (
        [step(n, "content_generator", "Write a poem about the sea.") for n in (1, 2, 3)],
        "are the same",
    ),
    "a worked example copied": (
        [
            step(1, "content_generator", "Write a short story about a lighthouse keeper."),
            step(2, "translator", "{step1}", 1, target_lang="French"),
        ],
        "lighthouse keeper",
    ),
    "a step unrelated to the request": (
        [
            step(1, "content_generator", "Write a poem about the sea."),
            step(2, "content_generator", "Describe quantum chromodynamics."),
        ],
        "step2",
    ),
    "more steps than parts": (
        [
            step(1, "content_generator", "Write a poem about the sea."),
            step(2, "translator", "{step1}", 1, target_lang="French"),
            step(3, "translator", "{step1}", 1, target_lang="French"),
            step(4, "summarizer", "{step1}", 1),
        ],
        "use at most 3",
    ),
    "translations of nothing": (
        [
            step(1, "translator", "translate to french", target_lang="French"),
            step(2, "translator", "translate to french", target_lang="Spanish"),
        ],
        "nothing to translate",
    ),
}


@pytest.mark.parametrize("pattern", sorted(BAD_PATTERNS))
def test_each_degenerate_pattern_is_rejected_and_repaired(pattern: str, tmp_path: Path) -> None:
    steps, named = BAD_PATTERNS[pattern]
    backend = ScriptedBackend([json.dumps({"steps": steps}), GOOD])
    planner, _ = make_planner(backend, tmp_path, mode="llm", repairs=1)
    outcome = plan(planner)
    assert (outcome.source, outcome.llm_calls) == ("llm", 2)
    repair = backend.requests[1].messages[-1]["content"]
    assert repair.startswith("That plan cannot run:")
    assert named in repair


@pytest.mark.parametrize("pattern", sorted(BAD_PATTERNS))
def test_no_degenerate_plan_is_accepted_when_no_repair_comes(pattern: str, tmp_path: Path) -> None:
    steps, _ = BAD_PATTERNS[pattern]
    backend = ScriptedBackend([json.dumps({"steps": steps})] * 2)
    planner, _ = make_planner(backend, tmp_path, mode="llm", repairs=1)
    outcome = plan(planner)
    assert outcome.source == "fallback"
    assert outcome.organized.plan.steps[0].input == "Write a poem about the sea."


def test_repairs_send_back_only_the_last_rejected_reply(tmp_path: Path) -> None:
    backend = ScriptedBackend(["no plan", "still none", "nothing"])
    planner, _ = make_planner(backend, tmp_path, mode="llm", repairs=2)
    plan(planner)
    assert [len(r.messages) for r in backend.requests] == [2, 4, 4]
    assert backend.requests[2].messages[2]["content"] == "still none"


def test_progress_counts_tokens_and_steps(tmp_path: Path) -> None:
    backend = ScriptedBackend([GOOD], chunk_size=10)
    planner, seen = make_planner(backend, tmp_path, mode="llm")
    plan(planner)
    assert seen[0].stage == "planning with scripted:scripted"  # the model, as every line names it
    assert seen[-1].tokens > 5
    assert seen[-1].steps == 2
    assert [p.elapsed_s for p in seen] == sorted(p.elapsed_s for p in seen)


def test_progress_is_told_while_no_token_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planner_module, "HEARTBEAT_S", 0.05)
    backend = ScriptedBackend([GOOD], delay_s=0.4)  # a long prompt read before the first token
    planner, seen = make_planner(backend, tmp_path, mode="llm")
    plan(planner)
    waiting = [p for p in seen if p.tokens == 0]
    assert len(waiting) >= 4  # the first line, then one a heartbeat
    assert {p.stage for p in waiting} == {"planning with scripted:scripted"}
    assert [p.elapsed_s for p in seen] == sorted(p.elapsed_s for p in seen)


def test_the_embedded_model_only_chooses_where_the_rules_are_unsure(tmp_path: Path) -> None:
    def choose(request: Request) -> str:
        assert request.schema is not None
        assert request.schema["properties"]["tool"]["enum"][0] == "content_generator"
        assert request.max_tokens is not None
        assert request.max_tokens <= 32
        return json.dumps({"tool": "upper"})

    backend = EmbeddedScript(choose)
    planner, seen = make_planner(backend, tmp_path)
    outcome = plan(planner, "reverse the order of: a b c")
    assert [p.stage for p in seen] == ["choosing tools with embedded:scripted"]
    assert outcome.source == "clauses"
    assert [(s.tool, s.input) for s in outcome.organized.plan.steps] == [("upper", "a b c")]
    assert len(backend.requests) == 1
    again = plan(planner, "reverse the order of: a b c")
    assert again.source == "cache"


def test_the_embedded_model_is_not_asked_to_write_a_plan(tmp_path: Path) -> None:
    backend = EmbeddedScript([])
    planner, seen = make_planner(backend, tmp_path)
    outcome = plan(planner, "what is the weather like on mars?")
    assert outcome.source == "rules"
    assert backend.requests == []
    assert seen == []  # no "choosing tools with ..." when no model is asked


@pytest.mark.parametrize("backend", [EmbeddedScript([]), ScriptedBackend([])])
def test_text_the_request_does_not_give_is_a_user_error(
    backend: ScriptedBackend, tmp_path: Path
) -> None:
    planner, _ = make_planner(backend, tmp_path)
    with pytest.raises(PlanError, match="what text should 'translate to french and spanish'"):
        plan(planner, "translate to french and spanish")
    assert backend.requests == []


def test_a_request_the_rules_cannot_read_runs_as_one_step_with_the_reason(
    tmp_path: Path,
) -> None:
    backend = EmbeddedScript([])
    planner, _ = make_planner(backend, tmp_path)
    outcome = plan(planner, "write a joke and translate it to klingon")
    assert outcome.source == "fallback"
    (warning,) = outcome.warnings
    assert "which language? 'translate it to klingon' names none" in warning
    (only,) = outcome.organized.plan.steps
    assert only.description.startswith("Answer the whole request with content_generator")


def test_a_degenerate_prefix_is_not_streamed(tmp_path: Path) -> None:
    copies = [step(n, "content_generator", "Write a poem about the sea.") for n in (1, 2, 3)]
    backend = ScriptedBackend([json.dumps({"steps": copies}), GOOD], chunk_size=20)
    planner, _ = make_planner(backend, tmp_path, mode="llm", repairs=1)
    handed: list[OrganizedPlan] = []
    outcome = plan(planner, on_partial=handed.append)
    assert outcome.source == "llm"
    assert [len(h.plan.steps) for h in handed] == [1]  # the first copy, never the second


def test_a_request_too_long_for_the_model_is_a_user_error_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    backend = ScriptedBackend([GOOD], context_tokens=2048)
    planner, _ = make_planner(backend, tmp_path, mode="llm")
    with pytest.raises(PromptTooLong, match="planner's prompt") as raised:
        plan(planner, "why is the sky blue? " + "Tell me everything. " * 800)
    assert raised.value.exit_code == 2
    assert backend.requests == []


def test_a_repair_turn_that_does_not_fit_falls_back(tmp_path: Path) -> None:
    backend = ScriptedBackend(["x" * 2400, GOOD], context_tokens=2048)
    planner, _ = make_planner(backend, tmp_path, mode="llm", repairs=1)
    outcome = plan(planner)
    assert outcome.source == "fallback"
    assert len(backend.requests) == 1  # the repair was never sent


def test_a_long_instruction_is_cut_for_the_tool_choice(tmp_path: Path) -> None:
    seen: list[Request] = []

    def choose(request: Request) -> str:
        seen.append(request)
        return json.dumps({"tool": "summarizer"})

    backend = EmbeddedScript(choose, context_tokens=512)
    planner, _ = make_planner(backend, tmp_path)
    chooser = ToolChooser(planner.llm, planner.registry)
    clause = Clause("reverse " + "very " * 600 + "much", "a b c")
    chosen = asyncio.run(chooser(clause, ["content_generator", "summarizer"]))
    assert chosen == "summarizer"
    assert len(seen[0].messages[-1]["content"]) < 2000
