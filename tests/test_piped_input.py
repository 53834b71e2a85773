"""The run's input (``{input}``): piped text read by the CLI, planned for, validated and run."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from test_planner import GOOD, UNREADABLE, make_planner, plan_with

from code_evolver.api import run
from code_evolver.cli import piped
from code_evolver.config import load_config
from code_evolver.errors import MissingInput, PlanError, UserError
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.organizer import organize
from code_evolver.plan import Plan
from code_evolver.planner.cache import PlanCache
from code_evolver.planner.decompose import decompose
from code_evolver.planner.overseer import PIPED
from code_evolver.session import Session

REPO = Path(__file__).resolve().parent.parent
TOOLS = ("content_generator", "translator", "summarizer", "combine", "word_count", "upper")


def shape(request: str) -> list[tuple[str, str, list[str]]]:
    steps = decompose(request, TOOLS, has_input=True).plan.steps
    return [(s.tool, s.input, s.depends_on) for s in steps]


# ------------------------------------------------------------------ rules


def test_a_transform_without_text_reads_the_input() -> None:
    assert shape("translate to french and spanish") == [
        ("translator", "{input}", []),
        ("translator", "{input}", []),
    ]


def test_later_clauses_read_earlier_steps_not_the_input() -> None:
    assert shape("summarize this and translate the summary to German") == [
        ("summarizer", "{input}", []),
        ("translator", "{step1}", ["step1"]),
    ]


def test_the_original_is_the_input() -> None:
    steps = shape("summarize this and count the words of the original")
    assert steps[-1] == ("word_count", "{input}", [])


def test_a_writer_pointing_at_this_reads_the_input() -> None:
    ((tool, text, depends),) = shape("write a polite reply to this")
    assert (tool, depends) == ("content_generator", [])
    assert text.endswith("{input}")


def test_a_writer_with_its_own_topic_does_not() -> None:
    assert "{input}" not in shape("write a haiku about rain")[0][1]


def test_text_in_the_request_wins_over_the_input() -> None:
    assert shape("translate 'hello' to German") == [("translator", "hello", [])]


# ------------------------------------------------------------------ plans


def test_input_is_no_step_and_the_plan_says_it_reads_it() -> None:
    plan = Plan.from_data({"steps": [{"step_id": "a", "tool": "combine", "input": "{input}!"}]})
    organized = organize(plan, ["combine"])
    assert organized.reads_input
    assert organized.plan.steps[0].depends_on == []
    assert organized.warnings == ()
    plain = Plan.from_data({"steps": [{"step_id": "a", "tool": "combine", "input": "x"}]})
    assert not organize(plain, ["combine"]).reads_input


def test_input_is_a_reserved_step_id() -> None:
    plan = Plan.from_data({"steps": [{"step_id": "input", "tool": "combine", "input": "x"}]})
    with pytest.raises(PlanError, match="step_id 'input' is reserved"):
        organize(plan, ["combine"])


def test_a_run_feeds_the_input_and_its_keys() -> None:
    plan = {
        "steps": [
            {"step_id": "a", "tool": "combine", "input": "<{input}>"},
            {"step_id": "b", "tool": "combine", "input": "{input.name} {a}"},
        ]
    }
    result = run(plan, config=REPO / "config.yaml", input_text='{"name": "Ada"}')
    assert result.steps["a"].output == '<{"name": "Ada"}>'
    assert result.steps["b"].output == 'Ada <{"name": "Ada"}>'


def test_a_plan_that_reads_the_input_does_not_run_without_it() -> None:
    plan = {"steps": [{"step_id": "a", "tool": "combine", "input": "{input}"}]}
    with pytest.raises(MissingInput, match="none was given"):
        run(plan, config=REPO / "config.yaml")


# ------------------------------------------------------------------ planner


def test_the_planner_plans_for_the_input(tmp_path: Path) -> None:
    planner = make_planner(ScriptedBackend([]), tmp_path)
    outcome = plan_with(planner, request="tl;dr this", has_input=True)
    assert outcome.source == "rules"
    assert outcome.organized.reads_input
    with pytest.raises(MissingInput, match="what text should 'summarize this' work on"):
        plan_with(planner, request="summarize this")


def test_the_overseer_is_told_about_the_input(tmp_path: Path) -> None:
    reads = {"steps": [{**GOOD["steps"][0], "tool": "summarizer", "input": "{input}"}]}
    backend = ScriptedBackend([json.dumps(reads)])
    planner = make_planner(backend, tmp_path, mode="llm")
    outcome = plan_with(planner, request="squash it", has_input=True)
    assert outcome.source == "llm"
    assert backend.requests[0].messages[-1]["content"] == f"squash it\n\n{PIPED}"


def test_the_fallback_step_reads_the_input(tmp_path: Path) -> None:
    planner = make_planner(ScriptedBackend(["x"]), tmp_path, mode="llm", repairs=0)
    outcome = plan_with(planner, request=UNREADABLE, has_input=True)
    assert outcome.source == "fallback"
    assert outcome.organized.plan.steps[0].input == f"{UNREADABLE}\n\n{{input}}"


def test_plans_for_piped_text_are_cached_apart(tmp_path: Path) -> None:
    tools = Session(load_config(REPO / "config.yaml"), backend=ScriptedBackend([])).registry
    assert PlanCache.key("r", "m", tools, has_input=True) != PlanCache.key("r", "m", tools)


# ------------------------------------------------------------------ reading stdin


def test_a_pipe_is_read_and_a_character_device_is_not() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, "héllo\n".encode())
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        assert piped.read_input(None, stdin=pipe) == "héllo\n"
    with open(os.devnull, "rb") as null:
        assert piped.read_input(None, stdin=null) is None


def test_a_dash_reads_stdin_whatever_it_is(tmp_path: Path) -> None:
    with open(os.devnull, "rb") as null:
        assert piped.read_input(Path("-"), stdin=null) is None  # empty: no input
    assert piped.read_input(Path("-"), stdin=io.BytesIO(b"text")) == "text"


@pytest.mark.parametrize(
    ("data", "problem"),
    [(b"\xff\xfe\x00", "is not UTF-8 text"), (b"x" * 40, "is over 0 MiB")],
)
def test_unusable_input_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch, data: bytes, problem: str
) -> None:
    monkeypatch.setattr(piped, "MAX_BYTES", 32)
    with pytest.raises(UserError, match=problem):
        piped.read_input(None, stdin=io.BytesIO(data))


def test_a_byte_order_mark_is_dropped() -> None:
    assert piped.read_input(None, stdin=io.BytesIO("\ufeffhi".encode())) == "hi"


def test_a_plan_for_piped_text_is_planned_once(tmp_path: Path) -> None:
    reads = {"steps": [{**GOOD["steps"][0], "tool": "summarizer", "input": "{input}"}]}
    backend = ScriptedBackend([json.dumps(reads)])
    planner = make_planner(backend, tmp_path, mode="llm")
    first = plan_with(planner, request="squash it", has_input=True)
    again = plan_with(planner, request="squash it", has_input=True)
    assert (first.source, again.source) == ("llm", "cache")
    assert len(backend.requests) == 1
