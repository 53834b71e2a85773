from __future__ import annotations

import re

import pytest

from code_evolver.templating import (
    MissingKey,
    Ref,
    lookup_path,
    parse,
    render_value,
    to_text,
)


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
