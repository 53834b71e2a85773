from __future__ import annotations

import json
from pathlib import Path

import pytest

from code_evolver.errors import PlanError
from code_evolver.plan import Plan, coerce_plan, load_plan, plan_json_schema

SEED_PLAN = {
    "request": "write a joke and translate to french and spanish",
    "steps": [
        {
            "step_id": "step1",
            "description": "Write a joke",
            "tool": "content_generator",
            "input": "Write a short, clean joke.",
            "depends_on": [],
            "parallel_group": None,
        },
        {
            "step_id": "step2",
            "description": "Translate to French",
            "tool": "translator",
            "input": "{step1}",
            "params": {"target_lang": "French"},
            "depends_on": ["step1"],
            "parallel_group": 1,
        },
        {
            "step_id": "step3",
            "description": "Translate to Spanish",
            "tool": "translator",
            "input": "{step1}",
            "params": {"target_lang": "Spanish"},
            "depends_on": ["step1"],
            "parallel_group": 1,
        },
    ],
}


def test_design_example_validates_and_round_trips() -> None:
    plan = Plan.from_data(SEED_PLAN)
    assert plan.step_ids == ["step1", "step2", "step3"]
    assert plan.steps[1].params == {"target_lang": "French"}
    again = Plan.from_json(plan.to_json())
    assert again == plan


def test_optional_fields_default() -> None:
    plan = Plan.from_data({"steps": [{"step_id": "a", "tool": "t", "input": "x"}]})
    s = plan.steps[0]
    assert (s.description, s.params, s.depends_on, s.parallel_group) == ("", {}, [], None)
    assert (s.timeout_s, s.retries) == (None, None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": []}, 'the plan has no steps; give at least one, like {"step_id": "s1"'),
        (
            [{"step_id": "a"}],
            'a plan is a JSON object, {"request": ..., "steps": [...]}; this holds a list',
        ),
        ({}, "missing required field 'steps'"),
        (
            {"steps": [{"step_id": "a", "tool": "t"}]},
            "step 1 ('a'): missing required field 'input'",
        ),
        (
            {"steps": [{"step_id": "a b", "tool": "t", "input": ""}]},
            "step_id may use only ASCII letters, digits",
        ),
        (
            {"steps": [{"step_id": "a", "tool": "t", "input": "", "dependson": []}]},
            "unknown field 'dependson' (did you mean 'depends_on'?)",
        ),
        (
            {"steps": [{"step_id": "a", "tool": "t", "input": "", "timeout_s": -1}]},
            "timeout_s: Input should be greater than 0",
        ),
        (
            {"steps": [{"step_id": "a", "tool": "t", "input": "", "retries": -1}]},
            "retries: Input should be greater than or equal to 0",
        ),
        ({"steps": "nope"}, "steps: Input should be a valid list"),
        (
            {"steps": [{"step_id": "a", "tool": "t", "input": ""}], "extra": 1},
            "unknown field 'extra'",
        ),
    ],
)
def test_shape_errors_are_one_readable_line_each(data: object, message: str) -> None:
    with pytest.raises(PlanError) as info:
        Plan.from_data(data)
    assert any(message in p for p in info.value.problems), info.value.problems
    assert all("\n" not in p for p in info.value.problems)


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(PlanError) as info:
        Plan.from_data({"steps": [{"step_id": "a"}, {"tool": "t", "input": ""}]})
    assert len(info.value.problems) == 3
    assert "(and 2 more)" in str(info.value)


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text('{"steps": [\n  {"step_id": "a",, }\n]}')
    with pytest.raises(PlanError, match=r"plan\.json:2:19: invalid JSON: Expecting"):
        load_plan(path)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read plan: No such file"):
        load_plan(tmp_path / "nope.json")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PlanError, match="not a UTF-8 text file"):
        load_plan(binary)


def test_coerce_plan_accepts_plan_dict_and_path(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(SEED_PLAN))
    plan = Plan.from_data(SEED_PLAN)
    assert coerce_plan(plan) is plan
    assert coerce_plan(SEED_PLAN) == plan
    assert coerce_plan(path) == plan
    assert coerce_plan(str(path)) == plan


def test_schema_plain_and_bounded() -> None:
    plain = plan_json_schema()
    assert plain["properties"]["steps"]["type"] == "array"
    assert set(plain["$defs"]["Step"]["required"]) == {"step_id", "tool", "input"}
    bounded = plan_json_schema(["translator", "combine", "translator"], max_steps=5)
    step = bounded["$defs"]["Step"]["properties"]
    assert step["tool"] == {"type": "string", "enum": ["combine", "translator"]}
    assert step["input"]["maxLength"] > 0
    assert bounded["properties"]["steps"]["maxItems"] == 5
    assert step["depends_on"]["items"]["maxLength"] > 0
    # Bounding the schema for decoding must not change the plain schema.
    assert "enum" not in plan_json_schema()["$defs"]["Step"]["properties"]["tool"]


def test_numbers_too_long_for_text_are_rejected_where_the_plan_is_read() -> None:
    huge = "9" * 5000
    with pytest.raises(PlanError, match="a number with 5000 digits"):
        Plan.from_json(
            f'{{"steps":[{{"step_id":"a","tool":"t","input":"x","params":{{"n":{huge}}}}}]}}'
        )
    with pytest.raises(PlanError, match="numbers may have at most 64 digits"):
        Plan.from_data(
            {"steps": [{"step_id": "a", "tool": "t", "input": "x", "params": {"n": [10**5000]}}]}
        )
    with pytest.raises(PlanError, match="numbers may have at most 64 digits"):
        Plan.from_data(
            {"steps": [{"step_id": "a", "tool": "t", "input": "x", "parallel_group": 10**70}]}
        )
    ok = Plan.from_data(
        {"steps": [{"step_id": "a", "tool": "t", "input": "x", "params": {"n": 10**63}}]}
    )
    assert ok.steps[0].params == {"n": 10**63}


# ------------------------------------------------------------------- strict JSON parsing


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_plan_json_constants_are_rejected(constant: str) -> None:
    text = (
        '{"steps": [{"step_id": "a", "tool": "t", "input": "x", '
        f'"params": {{"n": {constant}}}}}]}}'
    )
    with pytest.raises(PlanError, match="not a JSON number"):
        Plan.from_json(text)


def test_huge_numbers_in_plans_are_rejected() -> None:
    with pytest.raises(PlanError, match="too large for a number"):
        Plan.from_json('{"steps":[{"step_id":"a","tool":"t","input":"x","params":{"n":1e999}}]}')


def test_deeply_nested_plan_json_is_a_plan_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="nested too deeply"):
        Plan.from_json("[" * 100_000)
    path = tmp_path / "deep.json"
    path.write_text('{"steps": ' + "[" * 100_000, encoding="utf-8")
    with pytest.raises(PlanError):
        load_plan(path)


def test_plan_file_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    data = {"steps": [{"step_id": "a", "tool": "t", "input": "x"}]}
    path.write_text("\ufeff" + json.dumps(data), encoding="utf-8")
    assert load_plan(path).step_ids == ["a"]
