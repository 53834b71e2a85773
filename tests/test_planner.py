"""The planner with a scripted model: repairs, fallback, streaming dispatch, cache, modes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from code_evolver.config import Config, load_config
from code_evolver.errors import PlanError
from code_evolver.llm.base import Request
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.organizer import OrganizedPlan
from code_evolver.planner.cache import PlanCache
from code_evolver.planner.overseer import extract_json, overseer_schema, parse_reply
from code_evolver.planner.planner import Planner, PlanOutcome
from code_evolver.session import Session

REPO = Path(__file__).resolve().parent.parent

GOOD: dict[str, list[dict[str, Any]]] = {
    "steps": [
        {
            "step_id": "step1",
            "description": "Write",
            "tool": "content_generator",
            "input": "Write a limerick.",
            "depends_on": [],
        },
        {
            "step_id": "step2",
            "description": "Shorten",
            "tool": "summarizer",
            "input": "{step1}",
            "depends_on": ["step1"],
        },
        {
            "step_id": "step3",
            "description": "French",
            "tool": "translator",
            "input": "{step2}",
            "params": {"target_lang": "French"},
            "depends_on": ["step2"],
        },
        {
            "step_id": "step4",
            "description": "Join",
            "tool": "combine",
            "input": "{step1}\n{step3}",
            "depends_on": ["step1", "step3"],
        },
    ]
}
REQUEST = "ponder a limerick, squash it; then french it, and stitch them"
UNREADABLE = "write a joke and translate it to klingon"  # the rules know no such language


def config(**planner: Any) -> Config:
    return load_config(REPO / "config.yaml").with_planner(**planner)


def make_planner(backend: ScriptedBackend, tmp_path: Path, **planner: Any) -> Planner:
    session = Session(config(**planner), backend=backend)
    return Planner(session.config, session.registry, cache=PlanCache(tmp_path / "cache"))


def plan_with(planner: Planner, request: str = REQUEST, **kwargs: Any) -> PlanOutcome:
    return asyncio.run(planner.plan(request, **kwargs))


def test_valid_plan_first_time(tmp_path: Path) -> None:
    backend = ScriptedBackend([json.dumps(GOOD)])
    outcome = plan_with(make_planner(backend, tmp_path))
    assert outcome.source == "llm"
    assert outcome.llm_calls == 1
    assert outcome.organized.waves == (("step1",), ("step2",), ("step3",), ("step4",))
    request = backend.requests[0]
    system = request.messages[0]["content"]
    assert "- translator: Translates its input" in system
    assert "Needs params: target_lang" in system
    assert '"input":"{step1}"' in system  # {{step1}} in the prompt file renders as {step1}
    assert request.messages[-1]["content"] == REQUEST
    assert request.schema is not None
    first_step = request.schema["properties"]["steps"]["prefixItems"][0]
    tool_enum = first_step["properties"]["tool"]["enum"]
    assert "translator" in tool_enum


def test_invalid_plan_is_repaired_with_the_problems(tmp_path: Path) -> None:
    bad = {
        "steps": [
            {
                "step_id": "step1",
                "description": "x",
                "tool": "content_generator",
                "input": "{step1}",
                "depends_on": ["step1"],
            }
        ]
    }
    backend = ScriptedBackend([json.dumps(bad), json.dumps(GOOD)])
    outcome = plan_with(make_planner(backend, tmp_path))
    assert outcome.source == "llm"
    assert outcome.llm_calls == 2
    repair = backend.requests[1].messages
    assert repair[-2] == {"role": "assistant", "content": json.dumps(bad)}
    assert "step 'step1' depends on itself" in repair[-1]["content"]
    assert repair[-1]["content"].endswith("Reply with the corrected JSON plan only.")


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ('{"steps": [{"step_id": "step1", "tool": "content_', "cut off"),
        ("I cannot do that.", "contains no JSON"),
        ('{"plan": []}', 'no "steps" list'),
        (
            '{"steps": [{"step_id": "step1", "description": "x", "tool": "nope", "input": "a", '
            '"depends_on": []}]}',
            "unknown tool 'nope'",
        ),
        (
            '{"steps": [{"step_id": "step1", "description": "x", "tool": "translator", '
            '"input": "a", "depends_on": []}]}',
            "needs params.target_lang",
        ),
    ],
)
def test_every_kind_of_bad_reply_goes_back_to_the_model(
    tmp_path: Path, reply: str, problem: str
) -> None:
    backend = ScriptedBackend([reply, json.dumps(GOOD)])
    outcome = plan_with(make_planner(backend, tmp_path))
    assert outcome.llm_calls == 2
    assert problem in backend.requests[1].messages[-1]["content"]


def test_fallback_after_the_repairs_runs_the_rules_plan(tmp_path: Path) -> None:
    backend = ScriptedBackend(["nonsense"] * 3)
    outcome = plan_with(make_planner(backend, tmp_path, repairs=2), request="what about {x}?")
    assert outcome.source == "fallback"
    assert outcome.llm_calls == 3
    (step,) = outcome.organized.plan.steps
    assert step.tool == "content_generator"
    assert step.input == "What about {{x}}?"  # the request, escaped
    assert outcome.warnings[0].startswith("the model could not make a valid plan after 3 tries")
    assert "the reply contains no JSON" in outcome.warnings[0]
    assert outcome.warnings[0].endswith("running the rules' plan instead")


def test_fallback_runs_the_request_as_one_step_when_the_rules_cannot(tmp_path: Path) -> None:
    backend = ScriptedBackend(["nonsense"] * 2)
    outcome = plan_with(make_planner(backend, tmp_path, repairs=1), request=UNREADABLE)
    assert outcome.source == "fallback"
    (step,) = outcome.organized.plan.steps
    assert (step.tool, step.input) == ("content_generator", UNREADABLE)
    assert step.description.startswith("Answer the whole request with content_generator (no plan:")
    (warning,) = outcome.warnings
    assert warning.startswith("no valid plan could be made after 2 tries (the reply contains")
    assert warning.endswith("running the whole request as one content_generator step")


def test_missing_fallback_tool_is_a_clear_error(tmp_path: Path) -> None:
    backend = ScriptedBackend(["nonsense"])
    planner = make_planner(backend, tmp_path, repairs=0, fallback_tool="absent")
    with pytest.raises(PlanError, match="fallback tool 'absent' is not configured"):
        plan_with(planner, request=UNREADABLE)


def test_lenient_parsing_of_common_slips() -> None:
    data = extract_json('Sure! ```json\n{"steps": []}\n``` Enjoy.')
    assert data == {"steps": []}


def test_slips_are_coerced(tmp_path: Path) -> None:
    sloppy = {
        "steps": [
            {
                "step_id": 1,
                "description": "a",
                "tool": "content_generator",
                "input": "x",
                "depends_on": None,
                "expected_output": "ignored",
            },
            {
                "step_id": "step2",
                "description": "b",
                "tool": "summarizer",
                "input": "{step1}",
                "depends_on": "step1",
                "parallel_group": "one",
            },
        ]
    }
    outcome = plan_with(make_planner(ScriptedBackend([json.dumps(sloppy)]), tmp_path))
    assert outcome.source == "llm"
    assert outcome.organized.plan.steps[1].depends_on == ["step1"]


def test_rules_need_no_model_in_auto_mode(tmp_path: Path) -> None:
    backend = ScriptedBackend([])
    outcome = plan_with(
        make_planner(backend, tmp_path), request="write a joke and translate it to french"
    )
    assert outcome.source == "rules"
    assert backend.requests == []


def test_rules_mode_declines_with_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"the rules cannot plan this request \(which language"):
        plan_with(make_planner(ScriptedBackend([]), tmp_path, mode="rules"), request=UNREADABLE)


def test_llm_mode_skips_the_rules(tmp_path: Path) -> None:
    one = {"steps": [{**GOOD["steps"][0], "input": "Write a joke."}]}
    backend = ScriptedBackend([json.dumps(one)])
    outcome = plan_with(make_planner(backend, tmp_path, mode="llm"), request="write a joke")
    assert outcome.source == "llm"


def test_empty_request(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="the request is empty"):
        plan_with(make_planner(ScriptedBackend([]), tmp_path), request="  ")


def test_cache_reuses_the_last_good_plan(tmp_path: Path) -> None:
    backend = ScriptedBackend([json.dumps(GOOD), json.dumps(GOOD)])
    planner = make_planner(backend, tmp_path)
    first = plan_with(planner)
    again = plan_with(planner, request=f"  {REQUEST.upper()} ")
    assert (first.source, again.source) == ("llm", "cache")
    assert again.organized.plan.steps == first.organized.plan.steps
    assert len(backend.requests) == 1
    fresh = plan_with(planner, use_cache=False)
    assert fresh.source == "llm"
    assert len(backend.requests) == 2


def test_cache_key_depends_on_model_and_tools(tmp_path: Path) -> None:
    session = Session(config(), backend=ScriptedBackend([]))
    tools = session.registry
    key = PlanCache.key("r", "m", tools)
    assert PlanCache.key("R ", "m", tools) == key
    assert PlanCache.key("r", "other", tools) != key
    fewer = {k: v for k, v in tools.items() if k != "translator"}
    assert PlanCache.key("r", "m", fewer) != key


def test_fallback_plans_are_not_cached(tmp_path: Path) -> None:
    backend = ScriptedBackend(["x", "x", "x", "x"])
    planner = make_planner(backend, tmp_path, repairs=0)
    assert plan_with(planner).source == "fallback"
    assert plan_with(planner).source == "fallback"
    assert len(backend.requests) == 2


def test_streaming_hands_out_each_step_as_soon_as_it_is_complete(tmp_path: Path) -> None:
    text = json.dumps(GOOD, separators=(",", ":"))
    backend = ScriptedBackend([text], chunk_size=10, chunk_delay_s=0.001)
    seen: list[tuple[list[str], int]] = []

    def on_partial(prefix: OrganizedPlan) -> None:
        seen.append((prefix.plan.step_ids, len(backend.requests)))

    outcome = plan_with(make_planner(backend, tmp_path), on_partial=on_partial)
    assert [ids for ids, _ in seen] == [
        ["step1"],
        ["step1", "step2"],
        ["step1", "step2", "step3"],
        ["step1", "step2", "step3", "step4"],
    ]
    assert outcome.first_step_s is not None
    assert outcome.first_step_s < outcome.seconds
    assert outcome.llm_calls == 1


def test_streaming_holds_back_from_the_first_invalid_step(tmp_path: Path) -> None:
    steps = [
        {
            "step_id": "step1",
            "description": "a",
            "tool": "content_generator",
            "input": "x",
            "depends_on": [],
        },
        {
            "step_id": "step2",
            "description": "forward",
            "tool": "summarizer",
            "input": "{step3}",
            "depends_on": ["step3"],
        },
        {
            "step_id": "step3",
            "description": "c",
            "tool": "summarizer",
            "input": "{step1}",
            "depends_on": ["step1"],
        },
    ]
    text = json.dumps({"steps": steps})
    backend = ScriptedBackend([text], chunk_size=7)
    seen: list[list[str]] = []
    outcome = plan_with(
        make_planner(backend, tmp_path), on_partial=lambda p: seen.append(p.plan.step_ids)
    )
    assert seen == [["step1"]]
    assert outcome.source == "llm"  # the whole plan is valid: step3 exists after all


def test_overseer_schema_is_bounded() -> None:
    session = Session(config(), backend=ScriptedBackend([]))
    schema = overseer_schema(session.registry, 5)
    steps = schema["properties"]["steps"]
    assert steps["maxItems"] == 5
    assert steps["items"] is False  # nothing past the fifth step
    first, third = steps["prefixItems"][0], steps["prefixItems"][2]
    assert first["properties"]["step_id"] == {"type": "string", "const": "step1"}
    assert first["properties"]["depends_on"] == {"type": "array", "maxItems": 0}
    # step3 may depend on step1 and step2 only: never on itself or a later step.
    assert third["properties"]["depends_on"]["items"]["enum"] == ["step1", "step2"]
    assert first["properties"]["input"]["maxLength"] > 0
    assert first["additionalProperties"] is False


def test_requests_are_recorded() -> None:
    backend = ScriptedBackend(lambda r: r.messages[-1]["content"].upper())
    reply = asyncio.run(backend.complete([{"role": "user", "content": "hi"}]))
    assert reply == "HI"
    assert isinstance(backend.requests[0], Request)


HUGE = "9" * 5000
BROKEN_REPLIES = [
    '{"steps":' + "[" * 1500,  # deeply nested and cut off
    '{"steps": ' + "[" * 1500 + "]" * 1500 + "}",  # deeply nested and complete
    '{"steps": [{"step_id": "step1", "tool": "combine", "input": "x", "params": {"n": '
    + HUGE
    + "}}]}",
    '{"steps": [{"step_id": "step1", "tool": "combine", "input": '
    + "[" * 1200
    + "]" * 1200
    + "}]}",
    '{"steps": [{"step_id": "step1", "tool": "combine", "input": {"n": ' + HUGE + "}}]}",
    "\x00\x1b]52;c;x\x07",
    "",
]


@pytest.mark.parametrize("reply", BROKEN_REPLIES, ids=range(len(BROKEN_REPLIES)))
def test_any_broken_reply_is_a_rejected_plan_then_the_fallback(tmp_path: Path, reply: str) -> None:
    backend = ScriptedBackend([reply] * 3)
    outcome = plan_with(make_planner(backend, tmp_path, repairs=2))
    assert outcome.source == "fallback"
    assert outcome.llm_calls == 3


@pytest.mark.parametrize("reply", BROKEN_REPLIES, ids=range(len(BROKEN_REPLIES)))
def test_a_broken_streamed_reply_falls_back_too(tmp_path: Path, reply: str) -> None:
    backend = ScriptedBackend([reply] * 3, chunk_size=64)
    handed_out: list[OrganizedPlan] = []
    outcome = plan_with(make_planner(backend, tmp_path, repairs=2), on_partial=handed_out.append)
    assert outcome.source == "fallback"


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(["steps", "step_id", "tool", "input", "depends_on", "params"])
                    | st.text(max_size=4),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=20,
        ).map(json.dumps),
    )
)
def test_parse_reply_raises_nothing_but_plan_error(reply: str) -> None:
    with contextlib.suppress(PlanError):
        parse_reply(reply, REQUEST, 8)


def test_cache_hits_across_sessions_on_the_embedded_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache is read before the backend exists and written after: one identity for both."""
    from code_evolver.llm import service

    backend = ScriptedBackend([json.dumps(GOOD)], model="SmolLM2-135M-Instruct.Q4_1.gguf")
    monkeypatch.setattr(service, "create_backend", lambda name, settings: backend)
    settings = config().llm.model_copy(update={"backend": "embedded"})
    outcomes = []
    for _ in range(2):  # two sessions, as two `evolve` commands would be
        llm = service.LLMService(settings)
        session = Session(config(mode="llm"), backend=backend)
        planner = Planner(
            session.config, session.registry, llm=llm, cache=PlanCache(tmp_path / "cache")
        )
        outcomes.append(plan_with(planner))
        assert llm.identity == "embedded:SmolLM2-135M-Instruct.Q4_1.gguf"
    assert [o.source for o in outcomes] == ["llm", "cache"]
    assert len(backend.requests) == 1
