"""Step input templates: {step} references, doubled braces as literal text (so JSON and Go
templates pass through), key paths into outputs, and escape() as the inverse of parse()."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import execute, plan, step

from code_evolver.organizer import organize
from code_evolver.templating import (
    MissingKey,
    Ref,
    escape,
    lookup_path,
    parse,
    render_value,
    to_text,
)
from code_evolver.tools.template import TemplateTool


def resolve(ref: Ref) -> str:
    return f"<{'.'.join((ref.name, *ref.path))}>"


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ("plain text", "plain text"),
        ("{step1}", "<step1>"),
        ("a {step1} b {step-2} c", "a <step1> b <step-2> c"),
        ("{step1.title}", "<step1.title>"),
        ("{s.a.b.0}", "<s.a.b.0>"),
        ("{{step1}}", "{step1}"),
        ("{{{step1}}}", "{{step1}}"),
        ('{"user": {"tags": [{"k": 1}]}}', '{"user": {"tags": [{"k": 1}]}}'),
        ("{{ .Values.x }}", "{{ .Values.x }}"),
        ("{{a.b}} {a.b}", "{a.b} <a.b>"),
        ('{"a": 1}', '{"a": 1}'),
        ("{ spaced }", "{ spaced }"),
        ("def f(): return {}", "def f(): return {}"),
        ("}} and {{", "}} and {{"),
        ("", ""),
        ("{a}{b}", "<a><b>"),
    ],
)
def test_render(source: str, rendered: str) -> None:
    assert parse(source).render(resolve) == rendered


def test_refs_and_literal_flag() -> None:
    template = parse("x {a} {b.key} {{c}}")
    assert template.refs == (Ref("a"), Ref("b", ("key",)))
    assert not template.is_literal
    assert parse("{{a}}").is_literal
    assert str(Ref("b", ("k", "0"))) == "{b.k.0}"


def test_render_value_keeps_shape() -> None:
    value = {"lang": "{a}", "list": ["{b}", 3], "n": 1, "nested": {"x": "{{lit}}"}}
    assert render_value(value, resolve) == {
        "lang": "<a>",
        "list": ["<b>", 3],
        "n": 1,
        "nested": {"x": "{lit}"},
    }


def test_lookup_path_reads_objects_lists_and_json_text() -> None:
    assert lookup_path({"a": {"b": [10, 20]}}, ("a", "b", "1")) == 20
    assert lookup_path('{"title": "Hi"}', ("title",)) == "Hi"
    assert lookup_path("plain", ()) == "plain"


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ({"a": 1}, ("b",), "no key 'b' (keys: a)"),
        ("not json", ("k",), "is text, not a JSON object"),
        ([1, 2], ("5",), "cannot read '5' from a list"),
        ({"a": 3}, ("a", "b"), "cannot read 'b' from a int"),
    ],
)
def test_lookup_path_errors(value: object, path: tuple[str, ...], message: str) -> None:
    with pytest.raises(MissingKey, match=re.escape(message)):
        lookup_path(value, path)


def test_to_text() -> None:
    assert to_text("x") == "x"
    assert to_text({"é": 1}) == '{"é": 1}'
    assert to_text(3) == "3"


def test_json_and_go_templates_pass_through_step_inputs() -> None:
    json_text = '{"user": {"tags": [{"k": 1}]}}'
    go_text = "{{ .Values.x }} and {{.Values.y}}"
    tools = {"combine": TemplateTool("combine")}
    the_plan = plan(
        step("json", tool="combine", input=json_text),
        step("go", tool="combine", input=go_text),
    )
    result = execute(the_plan, tools)
    assert result.outputs == {"json": json_text, "go": go_text}
    assert result.organized.warnings == ()


def test_doubled_braces_render_literally_and_add_no_dependency() -> None:
    tools = {"combine": TemplateTool("combine")}
    the_plan = plan(
        step("step1", tool="combine", input="one"),
        step("literal", tool="combine", input="{{step1}}"),
        step("both", tool="combine", input="{{step1}} is {step1}"),
    )
    organized = organize(the_plan, tools)
    assert organized.dependencies("literal") == []
    assert organized.dependencies("both") == ["step1"]
    result = execute(the_plan, tools)
    assert result.steps["literal"].output == "{step1}"
    assert result.steps["both"].output == "{step1} is one"


def _no_refs(ref: Ref) -> str:
    raise AssertionError(f"escaped text has a placeholder: {ref}")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet="{}ab1._- \n"),
        st.lists(st.sampled_from(["{", "}", "{{", "}}", "a", "b.c", ".", "-", " "])).map("".join),
    )
)
def test_escape_then_parse_renders_the_text_back(text: str) -> None:
    assert parse(escape(text)).render(_no_refs) == text
