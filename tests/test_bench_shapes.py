"""The held-out planner set (bench/requests/heldout.yaml) and the shape matcher beside it."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import shapes  # noqa: E402
from shapes import Case, ShapeStep  # noqa: E402


def step(step_id: str, tool: str, *deps: str, **params: object) -> dict[str, object]:
    return {"step_id": step_id, "tool": tool, "params": params, "depends_on": list(deps)}


def case(*shape_list: tuple[ShapeStep, ...], optional_combine: bool = False) -> Case:
    return Case(request="r", kind="mixed", shapes=shape_list, optional_combine=optional_combine)


# write a story, summarize it, translate the summary to French and Spanish
STORY = (
    ShapeStep("content_generator"),
    ShapeStep("summarizer", after=(0,)),
    ShapeStep("translator", after=(1,), params={"target_lang": "French"}),
    ShapeStep("translator", after=(1,), params={"target_lang": "Spanish"}),
)


def story_plan() -> list[dict[str, object]]:
    return [
        step("write", "content_generator"),
        step("sum", "summarizer", "write"),
        step("fr", "translator", "sum", target_lang="French"),
        step("es", "translator", "sum", target_lang="Spanish"),
    ]


def test_a_plan_in_another_order_with_other_ids_matches() -> None:
    plan = [
        step("c", "translator", "b", target_lang="spanish"),
        step("a", "content_generator"),
        step("d", "translator", "b", target_lang="FRENCH"),
        step("b", "summarizer", "a"),
    ]
    assert shapes.matches(plan, case(STORY)) is True


def test_unlisted_params_and_inputs_are_free() -> None:
    plan = story_plan()
    plan[0]["params"] = {"style": "noir"}
    plan[0]["input"] = "Write a story."
    assert shapes.matches(plan, case(STORY)) is True


def test_a_wrong_tool_is_named() -> None:
    plan = story_plan()
    plan[1]["tool"] = "content_generator"
    reason = shapes.matches(plan, case(STORY))
    assert isinstance(reason, str)
    assert reason.startswith("tools differ")
    assert "content_generator x2" in reason


def test_a_missing_dependency_fails() -> None:
    plan = story_plan()
    plan[3]["depends_on"] = []
    reason = shapes.matches(plan, case(STORY))
    assert isinstance(reason, str)
    assert reason.startswith("dependencies differ")


def test_an_extra_dependency_fails_even_a_transitive_one() -> None:
    plan = story_plan()
    plan[2]["depends_on"] = ["sum", "write"]
    reason = shapes.matches(plan, case(STORY))
    assert isinstance(reason, str)
    assert reason.startswith("dependencies differ")


def test_reversed_dependencies_fail() -> None:
    shape = (ShapeStep("content_generator"), ShapeStep("summarizer", after=(0,)))
    plan = [step("a", "content_generator", "b"), step("b", "summarizer")]
    assert isinstance(shapes.matches(plan, case(shape)), str)


def test_a_wrong_target_lang_is_named() -> None:
    plan = story_plan()
    plan[3]["params"] = {"target_lang": "German"}
    reason = shapes.matches(plan, case(STORY))
    assert reason == "no step translator(target_lang=Spanish) after summarizer"


def test_a_missing_listed_param_fails() -> None:
    plan = story_plan()
    plan[2]["params"] = {}
    assert isinstance(shapes.matches(plan, case(STORY)), str)


def test_a_different_step_count_is_named() -> None:
    reason = shapes.matches(story_plan()[:3], case(STORY))
    assert reason == "3 steps, expected 4"


def test_an_optional_combine_of_every_result_is_ignored() -> None:
    joined = [*story_plan(), step("join", "combine", "fr", "es")]
    assert shapes.matches(joined, case(STORY, optional_combine=True)) is True
    everything = [*story_plan(), step("join", "combine", "write", "sum", "fr", "es")]
    assert shapes.matches(everything, case(STORY, optional_combine=True)) is True
    assert isinstance(shapes.matches(joined, case(STORY)), str)


def test_an_optional_combine_must_join_every_final_result() -> None:
    partial = [*story_plan(), step("join", "combine", "fr")]
    assert isinstance(shapes.matches(partial, case(STORY, optional_combine=True)), str)
    not_combine = [*story_plan(), step("join", "content_generator", "fr", "es")]
    assert isinstance(shapes.matches(not_combine, case(STORY, optional_combine=True)), str)


def test_an_optional_combine_that_another_step_reads_is_not_ignored() -> None:
    shape = (ShapeStep("content_generator"), ShapeStep("content_generator"))
    plan = [
        step("a", "content_generator"),
        step("b", "content_generator"),
        step("join", "combine", "a", "b"),
        step("after", "upper", "join"),
    ]
    assert isinstance(shapes.matches(plan, case(shape, optional_combine=True)), str)


def test_any_of_several_shapes_matches() -> None:
    many = (
        ShapeStep("content_generator"),
        ShapeStep("summarizer", after=(0,)),
        ShapeStep("translate_many", after=(1,), params={"languages": ("French", "Spanish")}),
    )
    both = case(STORY, many)
    as_text = [*story_plan()[:2], step("t", "translate_many", "sum", languages="spanish, French")]
    as_list = [
        *story_plan()[:2],
        step("t", "translate_many", "sum", languages=["French", "Spanish"]),
    ]
    assert shapes.matches(story_plan(), both) is True
    assert shapes.matches(as_text, both) is True
    assert shapes.matches(as_list, both) is True
    wrong = [*story_plan()[:2], step("t", "translate_many", "sum", languages="French, German")]
    reason = shapes.matches(wrong, both)
    assert isinstance(reason, str)
    assert reason.startswith("matches none of 2 shapes: (1) ")
    assert "\n" not in reason


def test_numbers_in_params_compare_as_text() -> None:
    shape = (ShapeStep("delay", params={"seconds": "2"}),)
    assert shapes.matches([step("w", "delay", seconds=2)], case(shape)) is True
    assert shapes.matches([step("w", "delay", seconds=2.0)], case(shape)) is True
    assert isinstance(shapes.matches([step("w", "delay", seconds=3)], case(shape)), str)


def test_a_malformed_plan_gets_a_reason_not_an_error() -> None:
    shape = (ShapeStep("content_generator"),)
    assert "unknown step" in str(
        shapes.matches([step("a", "content_generator", "zz")], case(shape))
    )
    assert "step_id" in str(shapes.matches([{"tool": "upper"}], case(shape)))


def test_identical_parallel_steps_do_not_blow_up_the_search() -> None:
    shape = (
        *(ShapeStep("content_generator") for _ in range(9)),
        ShapeStep("combine", after=tuple(range(9))),
    )
    plan = [step(f"s{i}", "content_generator") for i in range(9)]
    plan.append(step("join", "combine", *(f"s{i}" for i in range(8))))
    started = time.perf_counter()
    assert isinstance(shapes.matches(plan, case(shape)), str)
    assert time.perf_counter() - started < 1.0


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "set.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("- {request: r, kind: chain, shape: [{tool: a, after: [1]}, {tool: b}]}", "earlier"),
        ("- {request: r, kind: chain, shape: [{tool: a, after: [0]}]}", "earlier"),
        ("- {request: r, kind: chains, shape: [{tool: a}]}", "kind"),
        ("- {request: r, kind: chain, shape: [{tool: a}], shapes: [[{tool: a}]]}", "exactly one"),
        ("- {request: r, kind: chain, shape: []}", "non-empty"),
        ("- {request: r, kind: chain, shape: [{tool: a, input: x}]}", "unknown keys"),
    ],
)
def test_a_malformed_entry_is_rejected_by_number(tmp_path: Path, entry: str, problem: str) -> None:
    good = "- {request: ok, kind: single, shape: [{tool: upper}]}\n"
    with pytest.raises(ValueError, match=f"entry 2: .*{problem}"):
        shapes.load_heldout(write(tmp_path, good + entry))


def test_invalid_yaml_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not valid YAML"):
        shapes.load_heldout(write(tmp_path, "- {request: [unclosed\n"))


def test_the_loader_reads_every_field(tmp_path: Path) -> None:
    text = """
- request: "translate to french and spanish"
  kind: fan-out
  stdin: "Good morning."
  note: acts on piped text.
  optional_combine: true
  shapes:
    - - {tool: translator, params: {target_lang: French}}
      - {tool: translator, params: {target_lang: Spanish}}
    - - {tool: translate_many, params: {languages: [French, Spanish]}}
"""
    [loaded] = shapes.load_heldout(write(tmp_path, text))
    assert loaded.stdin == "Good morning."
    assert loaded.optional_combine
    assert loaded.shapes[1][0].params == {"languages": ("French", "Spanish")}


# The held-out set itself.

HELDOUT = shapes.load_heldout()
TOOLS = set(yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))["tools"])


def test_the_heldout_set_is_large_and_covers_every_kind() -> None:
    assert len(HELDOUT) >= 72
    kinds = Counter(c.kind for c in HELDOUT)
    assert set(kinds) == set(shapes.KINDS)
    assert min(kinds.values()) >= 10, kinds
    assert len({c.request for c in HELDOUT}) == len(HELDOUT), "a request is repeated"
    assert sum(c.stdin is not None for c in HELDOUT) >= 3
    languages = Counter((c.note or "").split(" ")[0].rstrip(",") for c in HELDOUT)
    assert languages["French"] + languages["Spanish"] + languages["German"] >= 8


@pytest.mark.parametrize("held", HELDOUT, ids=lambda c: c.request[:40])
def test_every_heldout_shape_is_valid(held: Case) -> None:
    for shape in held.shapes:
        assert 1 <= len(shape) <= 10
        for index, wanted in enumerate(shape):
            assert wanted.tool in TOOLS, f"unknown tool {wanted.tool}"
            assert all(0 <= j < index for j in wanted.after)
            language = wanted.params.get("target_lang")
            if language is not None:
                assert isinstance(language, str)
                assert language[:1].isupper(), "target_lang is a capitalised English name"


@pytest.mark.parametrize("held", HELDOUT, ids=lambda c: c.request[:40])
def test_every_heldout_shape_matches_a_plan_written_from_it(held: Case) -> None:
    for shape in held.shapes:
        plan = [
            step(
                f"s{len(shape) - index}",
                wanted.tool,
                *(f"s{len(shape) - j}" for j in wanted.after),
                **{k: list(v) if isinstance(v, tuple) else v for k, v in wanted.params.items()},
            )
            for index, wanted in enumerate(shape)
        ]
        assert shapes.matches(list(reversed(plan)), held) is True
