from __future__ import annotations

import pytest
from support import Recorder, plan, step

from code_evolver.errors import PlanError
from code_evolver.organizer import describe, organize
from code_evolver.tools.base import Tool
from code_evolver.tools.command import CommandTool

TOOLS = {"work", "translator", "content_generator", "combine"}


def problems_of(the_plan: object, tools: object = TOOLS) -> tuple[str, ...]:
    with pytest.raises(PlanError) as info:
        organize(the_plan, tools)  # type: ignore[arg-type]
    return info.value.problems


def test_waves_follow_dependencies_in_plan_order() -> None:
    organized = organize(
        plan(step("a"), step("c", "a"), step("b", "a"), step("d", "b", "c"), step("e")), TOOLS
    )
    assert organized.waves == (("a", "e"), ("c", "b"), ("d",))
    assert organized.wave_of == {"a": 0, "e": 0, "c": 1, "b": 1, "d": 2}
    assert organized.dependencies("d") == ["b", "c"]
    assert sorted(organized.dependents("a")) == ["b", "c"]
    assert organized.warnings == ()


def test_duplicate_ids() -> None:
    (problem,) = problems_of(plan(step("a"), step("b"), step("a")))
    assert problem == "duplicate step_id 'a' (steps 1 and 3); give every step its own id"


def test_unknown_dependency_with_suggestion() -> None:
    (problem,) = problems_of(plan(step("fetch"), step("b", "fetsh")))
    assert problem == "step 'b' depends on unknown step 'fetsh' (did you mean 'fetch'?)"


def test_self_dependency() -> None:
    (problem,) = problems_of(plan(step("a", "a", input="x")))
    assert problem == "step 'a' depends on itself; remove 'a' from its depends_on"


def test_reference_to_own_output() -> None:
    (problem,) = problems_of(plan(step("a", input="again {a}")))
    assert problem == "step 'a' refers to its own output {a}"


@pytest.mark.parametrize(
    ("steps", "cycle"),
    [
        (
            [step("step1"), step("step2", "step3"), step("step3", "step2")],
            "step2 -> step3 -> step2",
        ),
        ([step("a", "c"), step("b", "a"), step("c", "b")], "a -> c -> b -> a"),
    ],
)
def test_cycle_is_printed(steps: list[dict[str, object]], cycle: str) -> None:
    (problem,) = problems_of(plan(*steps))
    assert problem.startswith(f"dependency cycle: {cycle} ")
    assert "'->' means 'depends on'" in problem


def test_every_problem_is_reported_together_with_a_cycle() -> None:
    problems = problems_of(
        plan(
            step("a", "c", tool="translater"),
            step("b", "a", "ghost"),
            step("c", "b"),
            step("d", "d", input="x"),
        )
    )
    assert len(problems) == 4
    assert "unknown tool 'translater'" in problems[0]
    assert "unknown step 'ghost'" in problems[1]
    assert "'d' depends on itself" in problems[2]
    assert problems[3].startswith("dependency cycle: a -> c -> b -> a ")


def test_unknown_tool_suggests_closest_names() -> None:
    (problem,) = problems_of(plan(step("a", tool="translater")))
    assert problem == (
        "step 'a' uses unknown tool 'translater' (did you mean 'translator'?); see `evolve tools`"
    )
    (problem,) = problems_of(plan(step("a", tool="zzz")))
    assert "did you mean" not in problem


def test_unknown_reference_is_an_error_with_escape_hint() -> None:
    (problem,) = problems_of(plan(step("fetch"), step("b", input="use {fecth} here")))
    assert "refers to {fecth}, but there is no step 'fecth' (did you mean 'fetch'?)" in problem
    assert "write {{fecth}} for literal braces" in problem


def test_reference_adds_dependency_with_warning() -> None:
    organized = organize(plan(step("a"), step("b", input="{a.title} and {a}")), TOOLS)
    assert organized.plan.steps[1].depends_on == ["a"]
    assert organized.waves == (("a",), ("b",))
    assert organized.warnings == (
        "step 'b' uses {a.title} but did not list 'a' in depends_on; added it",
    )


def test_reference_in_params_adds_dependency() -> None:
    organized = organize(
        plan(step("lang"), step("t", input="hi", params={"target_lang": "{lang}"})), TOOLS
    )
    assert organized.dependencies("t") == ["lang"]


def test_escaped_braces_are_not_references() -> None:
    organized = organize(plan(step("a", input='{{a}} {"json": true}')), TOOLS)
    assert organized.warnings == ()


def test_all_problems_reported_at_once() -> None:
    problems = problems_of(plan(step("a", "nope", tool="bad"), step("a"), step("c", "c")))
    assert len(problems) == 4


def test_duplicate_depends_on_entries_are_merged() -> None:
    organized = organize(plan(step("a"), step("b", "a", "a")), TOOLS)
    assert organized.plan.steps[1].depends_on == ["a"]


def test_unchanged_plan_is_kept_as_is() -> None:
    the_plan = plan(step("a"), step("b", "a"))
    assert organize(the_plan, TOOLS).plan is the_plan


def test_without_tools_the_tool_check_is_skipped() -> None:
    assert organize(plan(step("a", tool="anything"))).waves == (("a",),)


def test_required_params_are_checked_against_tool_templates() -> None:
    tools: dict[str, Tool] = {
        "shout": CommandTool(
            "shout", ["echo", "{params.style}", "{params.level}"], params={"level": "1"}
        ),
    }
    (problem,) = problems_of(plan(step("a", tool="shout")), tools)
    assert problem == (
        "step 'a': tool 'shout' needs params.style; add \"params\": {\"style\": ...} to the step"
    )
    organize(plan(step("a", tool="shout", params={"style": "loud"})), tools)


def test_parallel_group_consistent_is_kept() -> None:
    organized = organize(
        plan(step("a"), step("b", "a", parallel_group=1), step("c", "a", parallel_group=1)), TOOLS
    )
    assert organized.group_conflicts == ()
    assert organized.groups == {"a": None, "b": 1, "c": 1}


def test_parallel_group_conflict_is_reported_and_groups_recomputed() -> None:
    organized = organize(
        plan(
            step("a", parallel_group=1),
            step("b", "a", parallel_group=1),
            step("c", "a", parallel_group=2),
            step("d", "b", parallel_group=2),
        ),
        TOOLS,
    )
    assert organized.group_conflicts == (
        "parallel_group 1: 'b' depends on 'a', so they cannot run at the same time; "
        "groups recomputed from waves",
    )
    assert organized.warnings == organized.group_conflicts
    # Group k is wave k (numbered from 1), for waves of more than one step.
    assert organized.groups == {"a": None, "b": 2, "c": 2, "d": None}


def test_group_spanning_waves_without_dependency_is_fine() -> None:
    organized = organize(
        plan(step("x"), step("a", parallel_group=1), step("b", "x", parallel_group=1)), TOOLS
    )
    assert organized.group_conflicts == ()


def test_transitive_dependency_inside_a_group_is_a_conflict() -> None:
    organized = organize(
        plan(step("a", parallel_group=3), step("m", "a"), step("z", "m", parallel_group=3)), TOOLS
    )
    assert organized.group_conflicts[0].startswith("parallel_group 3: 'z' depends on 'a'")


def test_critical_path_over_given_durations() -> None:
    organized = organize(
        plan(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"), step("e")), TOOLS
    )
    length, path = organized.critical_path({"a": 1, "b": 5, "c": 2, "d": 1, "e": 6.5})
    assert (length, path) == (7.0, ["a", "b", "d"])
    length, path = organized.critical_path({"e": 9})
    assert (length, path) == (9.0, ["e"])


def test_remaining_depth_counts_the_longest_chain_below() -> None:
    organized = organize(plan(step("a"), step("b", "a"), step("c", "b"), step("x")), TOOLS)
    assert organized.remaining_depth() == {"a": 3, "b": 2, "c": 1, "x": 1}


def test_describe_is_json_friendly() -> None:
    organized = organize(plan(step("a"), step("b", input="{a}"), request="r"), TOOLS)
    described = describe(organized)
    assert described["waves"] == [["a"], ["b"]]
    assert described["plan"]["steps"][1]["depends_on"] == ["a"]
    assert described["request"] == "r"


def test_registry_objects_are_accepted_as_tools() -> None:
    tools = {"work": Recorder().tool()}
    assert organize(plan(step("a")), tools).waves == (("a",),)


def test_a_fan_out_that_did_not_list_its_root_is_one_warning() -> None:
    leaves = [step(f"s{i}", input="{root}") for i in range(30)]
    organized = organize(plan(step("root"), *leaves))
    assert organized.warnings == (
        "steps 's0', 's1', 's2' and 27 more use {root} but did not list 'root' in depends_on; "
        "added it to each",
    )
    assert all(organized.plan.steps[i + 1].depends_on == ["root"] for i in range(30))
