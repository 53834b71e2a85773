"""The timeline picture of a stored run: critical path, the shared row model, the terminal
Gantt chart and the SVG. Runs are built from records by hand; nothing runs."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from typing import cast

import pytest
from rich.cells import cell_len
from rich.console import Console

from code_evolver.display.timeline import (
    CRITICAL,
    axis_end,
    cells,
    critical_path,
    gantt,
    status_look,
    ticks,
    timeline_rows,
)
from code_evolver.display.timeline_svg import SVG_COLOURS, timeline_svg
from code_evolver.history.records import RunRecord, StepRecord

SVG = "{http://www.w3.org/2000/svg}"


def rec(
    step_id: str,
    start: float | None,
    end: float | None,
    status: str = "succeeded",
    *,
    attempt: int = 1,
    tool: str = "shell",
    call_id: str | None = None,
    parent: str | None = None,
) -> StepRecord:
    return StepRecord(
        step_id, attempt, tool, status, start, end, call_id=call_id, parent_call=parent
    )


def run_of(
    *records: StepRecord,
    deps: dict[str, list[str]] | None = None,
    wall: float | None = None,
    request: str = "do things",
) -> RunRecord:
    plan = None
    if deps is not None:
        steps = [
            {"step_id": s, "tool": "shell", "input": "", "depends_on": d} for s, d in deps.items()
        ]
        plan = {"request": request, "steps": steps}
    return RunRecord(
        "run-1", request, "succeeded", "2024-01-01T00:00:00Z", wall_s=wall, plan=plan, steps=records
    )


def diamond(b_took: float = 2.0, c_took: float = 1.0) -> RunRecord:
    """a, then b and c in parallel, then d."""
    return run_of(
        rec("a", 0.0, 1.0),
        rec("b", 1.0, 1.0 + b_took),
        rec("c", 1.0, 1.0 + c_took),
        rec("d", 1.0 + max(b_took, c_took), 4.0 + max(b_took, c_took)),
        deps={"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]},
    )


def render(run: RunRecord, width: int = 100, *, colour: bool = False, max_rows: int = 40) -> str:
    console = Console(
        file=io.StringIO(),
        width=width,
        force_terminal=colour,
        color_system="truecolor" if colour else None,
    )
    console.print(gantt(run, width, max_rows=max_rows))
    return cast(io.StringIO, console.file).getvalue()


def line_of(text: str, label: str) -> str:
    found = [line for line in text.splitlines() if re.search(rf"[✓✗⏱↷⊘▶·?] {label}\b", line)]
    assert len(found) == 1, text
    return found[0]


def bar_cells(line: str) -> set[int]:
    return {i for i, char in enumerate(line) if char in "█▄"}


# critical path


def test_critical_path_follows_the_slower_branch_of_a_diamond() -> None:
    assert critical_path(diamond(b_took=2.0, c_took=1.0)) == ("a", "b", "d")
    assert critical_path(diamond(b_took=1.0, c_took=3.0)) == ("a", "c", "d")


def test_critical_path_breaks_ties_by_plan_order() -> None:
    assert critical_path(diamond(b_took=2.0, c_took=2.0)) == ("a", "b", "d")


def test_critical_path_times_the_latest_attempt() -> None:
    run = run_of(
        rec("a", 0.0, 1.0),
        rec("b", 1.0, 9.0, "failed"),
        rec("c", 1.0, 3.0),
        rec("b", 9.0, 9.5, attempt=2),
        deps={"a": [], "b": ["a"], "c": ["a"]},
    )
    assert critical_path(run) == ("a", "c")


def test_critical_path_without_a_plan_or_times() -> None:
    assert critical_path(run_of(rec("a", 0.0, 1.0), rec("b", 0.0, 2.0))) == ("b",)
    assert critical_path(run_of(rec("a", None, None, "skipped"), deps={"a": []})) == ()
    assert critical_path(run_of()) == ()


def test_critical_path_survives_damaged_plans() -> None:
    looped = run_of(rec("a", 0.0, 1.0), rec("b", 1.0, 3.0), deps={"a": ["b"], "b": ["a"]})
    assert set(critical_path(looped)) <= {"a", "b"}
    odd = RunRecord("r", "", "failed", "", plan={"steps": [1, {"step_id": 2}, {"step_id": "a"}]})
    assert critical_path(odd) == ()


# rows


def test_rows_follow_start_times_with_never_started_steps_last() -> None:
    run = run_of(
        rec("late", 2.0, 3.0),
        rec("early", 0.0, 1.0),
        rec("skipped", None, None, "skipped"),
        deps={"skipped": [], "late": [], "early": [], "planned": []},
    )
    assert [row.label for row in timeline_rows(run)] == ["early", "late", "skipped", "planned"]
    assert timeline_rows(run)[-1].status == "pending"


def test_retries_are_rows_of_their_own() -> None:
    run = run_of(rec("a", 0.0, 1.0, "failed"), rec("a", 1.5, 2.0, attempt=2), deps={"a": []})
    rows = timeline_rows(run)
    assert [(row.label, row.attempt, row.on_critical_path) for row in rows] == [
        ("a", 1, False),
        ("a (attempt 2)", 2, True),
    ]


def test_nested_calls_sit_under_the_attempt_they_ran_in() -> None:
    run = run_of(
        rec("s", 0.0, 1.0, "failed"),
        rec("s", 0.2, 0.4, tool="first", call_id="s.1"),
        rec("s", 2.0, 5.0, attempt=2),
        rec("s", 2.5, 4.0, tool="outer", call_id="s.2", attempt=2),
        rec("s", 3.0, 3.5, tool="inner", call_id="s.3", parent="s.2", attempt=2),
        rec("t", 0.1, 0.9),
    )
    assert [(row.label, row.indent, row.is_call) for row in timeline_rows(run)] == [
        ("s", 0, False),
        ("first", 1, True),
        ("s (attempt 2)", 0, False),
        ("outer", 1, True),
        ("inner", 2, True),
        ("t", 0, False),
    ]


def test_calls_whose_parents_loop_are_still_shown() -> None:
    run = run_of(
        rec("s", 0.0, 1.0),
        rec("s", 0.1, 0.2, tool="x", call_id="s.1", parent="s.2"),
        rec("s", 0.2, 0.3, tool="y", call_id="s.2", parent="s.1"),
    )
    assert sorted(row.label for row in timeline_rows(run)) == ["s", "x", "y"]


def test_axis_and_ticks() -> None:
    assert axis_end(run_of(rec("a", 0.0, 3.0), wall=2.0), timeline_rows(run_of())) == 2.0
    rows = timeline_rows(run_of(rec("a", 0.0, 3.0)))
    assert axis_end(run_of(wall=2.0), rows) == 3.0
    assert ticks(2.4) == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert ticks(0.0) == [0.0]
    assert cells(0.0, 0.0, 10.0, 50) == (0, 1)
    assert cells(5.0, None, 10.0, 50) == (25, 50)


# terminal


def test_parallel_steps_have_overlapping_bars() -> None:
    text = render(diamond())
    b, c, d = (bar_cells(line_of(text, name)) for name in "bcd")
    assert b & c
    assert not b & d
    assert not bar_cells(line_of(text, "a")) & b


def test_calls_are_indented_under_their_step() -> None:
    run = run_of(
        rec("s", 0.0, 1.0),
        rec("s", 0.2, 0.8, tool="outer", call_id="s.1"),
        rec("s", 0.3, 0.5, tool="inner", call_id="s.2", parent="s.1"),
        rec("t", 0.0, 0.5),
    )
    lines = render(run).splitlines()
    where = {name: next(i for i, line in enumerate(lines) if f" {name} " in line) for name in "st"}
    outer, inner = lines[where["s"] + 1], lines[where["s"] + 2]
    assert outer.index("outer") > lines[where["s"]].index(" s ") + 1
    assert inner.index("inner") > outer.index("outer")
    assert "↳ outer" in outer
    assert "↳ inner" in inner
    assert where["t"] == where["s"] + 3


def test_bars_are_coloured_by_status() -> None:
    assert status_look("succeeded")[1] == "green"
    assert status_look("failed")[1] == "red"
    assert status_look("from-the-future") == ("?", "dim")
    text = render(run_of(rec("good", 0.0, 1.0), rec("bad", 0.0, 1.0, "failed")), colour=True)
    good = next(line for line in text.splitlines() if "good" in line)
    bad = next(line for line in text.splitlines() if "bad" in line)
    assert "\x1b[32m█" in good
    assert "\x1b[31m█" in bad


def test_critical_path_is_marked_and_explained() -> None:
    text = render(diamond())
    assert line_of(text, "b").startswith(CRITICAL)
    assert not line_of(text, "c").startswith(CRITICAL)
    assert f"{CRITICAL} critical path (3 steps, 6.00s)" in text


@pytest.mark.parametrize("width", [20, 40, 80, 100, 200])
def test_every_line_fits_the_width(width: int) -> None:
    run = run_of(
        rec("a-step-with-a-rather-long-name-indeed", 0.0, 1.0),
        rec("b", 0.5, None, "running"),
        rec("\x1b]0;owned\x07", 0.0, 2.0, "timed_out"),
    )
    text = render(run, width)
    assert all(cell_len(line) <= width for line in text.splitlines())
    assert "\x1b" not in text
    assert "\\x1" in text  # the escape, made visible (cut short at narrow widths)


def test_runs_without_steps_or_times_draw() -> None:
    assert "no steps recorded" in render(run_of())
    zero = render(run_of(rec("a", 0.0, 0.0), rec("b", 0.0, 0.0), wall=0.0))
    assert bar_cells(line_of(zero, "a")) == bar_cells(line_of(zero, "b"))
    untimed = render(run_of(rec("a", None, None, "skipped"), rec("b", 1.0, None, "cancelled")))
    assert not bar_cells(line_of(untimed, "a"))
    assert "skipped" in line_of(untimed, "a")


def test_long_runs_are_capped() -> None:
    run = run_of(*(rec(f"s{i}", i * 0.01, i * 0.01 + 0.5) for i in range(2_000)))
    text = render(run, max_rows=30)
    assert len(text.splitlines()) < 40
    assert "… 1970 more rows not shown" in text


# svg


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg.encode("utf-8"))


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if "bar" in r.get("class", "").split()]


def test_svg_has_one_bar_per_row() -> None:
    run = run_of(
        rec("a", 0.0, 1.0),
        rec("b", 1.0, 3.0, "failed"),
        rec("b", 1.5, 2.0, tool="llm", call_id="b.1"),
        rec("c", None, None, "skipped"),
        deps={"a": [], "b": ["a"], "c": ["b"]},
    )
    root = parse(timeline_svg(run))
    drawn = bars(root)
    assert len(drawn) == len(timeline_rows(run)) == 4
    assert [r.get("fill") for r in drawn] == [
        SVG_COLOURS[s] for s in ("succeeded", "failed", "succeeded", "skipped")
    ]
    critical = [r for r in drawn if "critical" in r.get("class", "")]
    assert len(critical) == 2
    assert all(r.get("stroke-width") == "2.5" for r in critical)
    assert [float(r.get("width", "")) for r in drawn][-1] == 0.0
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert {"0s", "1s", "2s", "3s"} <= set(texts)
    assert {"succeeded", "failed", "skipped", "critical path"} <= set(texts)


def test_svg_escapes_hostile_text() -> None:
    hostile = '<script>alert(1)</script>&"\x1b\ud800'
    run = run_of(rec("a", 0.0, 1.0, tool="x"), deps={"a": []}, request=hostile)
    svg = timeline_svg(run)
    root = parse(svg)
    assert "<script" not in svg
    assert not list(root.iter(f"{SVG}script"))
    title = root.find(f"{SVG}title")
    assert title is not None
    assert title.text is not None
    assert '<script>alert(1)</script>&"' in title.text


def test_svg_of_empty_and_long_runs() -> None:
    assert bars(parse(timeline_svg(run_of()))) == []
    assert len(bars(parse(timeline_svg(run_of(rec("a", None, None), wall=0.0))))) == 1
    long = run_of(*(rec(f"s{i}", i * 0.01, i * 0.01 + 0.5) for i in range(2_000)))
    root = parse(timeline_svg(long, max_rows=100))
    assert len(bars(root)) == 100
    assert any("1900 more rows" in (t.text or "") for t in root.iter(f"{SVG}text"))


# snapshot

SNAPSHOT = """\
   step              0s        0.5s      1s         1.5s      2s            took
                     ┬─────────┬─────────┬──────────┬─────────┬───────     2.40s
◆✓ fetch             ██████                                               0.300s
 ✗ parse                   ████                                           0.200s
◆✓ parse (attempt 2)             ███████████████████                      0.900s
 ✓ ↳ llm                           ▄▄▄▄▄▄▄▄                               0.400s
 ✓ lint                    ████████████                                   0.600s
◆⏱ report                                           ████████████████      0.800s
 ↷ notify                                                                skipped
◆ critical path (3 steps, 2.00s)  ✓ succeeded  ✗ failed  ⏱ timed out  ↷ skipped
▄ nested call
"""


def test_the_gantt_of_a_run_with_a_retry_a_call_a_timeout_and_a_skip() -> None:
    run = run_of(
        rec("fetch", 0.0, 0.3),
        rec("parse", 0.3, 0.5, "failed"),
        rec("parse", 0.6, 1.5, attempt=2),
        rec("parse", 0.7, 1.1, tool="llm", call_id="parse.1", attempt=2),
        rec("lint", 0.3, 0.9),
        rec("report", 1.5, 2.3, "timed_out"),
        rec("notify", None, None, "skipped"),
        deps={
            "fetch": [],
            "parse": ["fetch"],
            "lint": ["fetch"],
            "report": ["parse", "lint"],
            "notify": ["report"],
        },
        wall=2.4,
    )
    drawn = "\n".join(line.rstrip() for line in render(run, 80).splitlines()) + "\n"
    assert drawn == SNAPSHOT
