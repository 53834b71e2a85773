"""Code from a model's reply, and the checks it passes before anything runs."""

from __future__ import annotations

import pytest

from code_evolver.evolve.code import DEFAULT_ALLOWED, extract_code, problems, with_entry_point

NODE = """from node_runtime import run_node


def main(text: str, **params: object) -> str:
    return text.upper()


if __name__ == "__main__":
    run_node(main)
"""


@pytest.mark.parametrize(
    "reply",
    [
        NODE,
        f"Here is the node:\n\n```python\n{NODE}```\n\nIt upper-cases its input.",
        f"```\n{NODE}\n```",
        f"```py\n{NODE}",  # the fence never closed (the reply was cut off)
        f"Sure! This should work:\n{NODE}\nLet me know if you need anything else.",
        f"```python\nprint('a first try'\n```\nFixed:\n```python\n{NODE}```",
    ],
)
def test_the_code_is_found_in_any_reply(reply: str) -> None:
    assert extract_code(reply).strip() == NODE.strip()


def test_a_reply_without_code_is_returned_for_the_checks_to_refuse() -> None:
    code = extract_code("I cannot help with that.")
    assert problems(code, DEFAULT_ALLOWED, node=True)


def test_a_good_node_passes() -> None:
    assert problems(NODE, DEFAULT_ALLOWED, node=True) == []


def test_a_syntax_error_names_its_line() -> None:
    assert problems("def main(:\n    pass\n", DEFAULT_ALLOWED, node=True) == [
        "syntax error on line 1: invalid syntax"
    ]


@pytest.mark.parametrize(
    ("line", "refused"),
    [
        ("import os", "'os'"),
        ("import subprocess as sp", "'subprocess'"),
        ("from socket import socket", "'socket'"),
        ("import urllib.request", "'urllib.request'"),
        ("from . import sibling", "'.'"),
    ],
)
def test_a_forbidden_import_is_refused_before_running(line: str, refused: str) -> None:
    found = problems(f"{line}\n{NODE}", DEFAULT_ALLOWED, node=True)
    assert found == [f"line 1: import of {refused} is not allowed (evolve.allowed_imports)"]


@pytest.mark.parametrize("call", ["exec('1')", "eval('1')", "open('x')", "__import__('os')"])
def test_dynamic_code_and_files_are_refused(call: str) -> None:
    found = problems(f"{NODE}\nx = {call}\n", DEFAULT_ALLOWED, node=True)
    assert len(found) == 1
    assert "is not allowed" in found[0]


def test_a_node_must_define_main_and_guard_run_node() -> None:
    unguarded = (
        "from node_runtime import run_node\n\ndef work(t):\n    return t\n\nrun_node(work)\n"
    )
    # without a main, that is the one thing to fix: the guard is added for it afterwards
    assert problems(unguarded, DEFAULT_ALLOWED, node=True) == [
        "a node must define main(text, **params)"
    ]
    misplaced = unguarded.replace("def work", "def main").replace(
        "run_node(work)", "run_node(main)"
    )
    assert problems(misplaced, DEFAULT_ALLOWED, node=True) == [
        'a node must end with: if __name__ == "__main__": run_node(main)',
        "line 6: run_node() must be under if __name__ == ...",
    ]


def test_tests_need_no_node_shape_and_an_allow_list_of_their_own() -> None:
    tests = "from main import main\nimport pytest\n\ndef test_it():\n    assert main('a') == 'A'\n"
    assert problems(tests, DEFAULT_ALLOWED, node=False) == []
    assert problems(tests, {"main"}, node=False) == [
        "line 2: import of 'pytest' is not allowed (evolve.allowed_imports)"
    ]


@pytest.mark.parametrize(
    "code",
    [
        "def main(text, **params):\n    return text\n",
        "from node_runtime import run_node\n\ndef main(text, **params):\n    return text\n\n"
        "run_node(main)\n",
    ],
)
def test_a_missing_or_unguarded_entry_point_is_put_right_without_a_model(code: str) -> None:
    fixed = with_entry_point(code)
    assert problems(fixed, DEFAULT_ALLOWED, node=True) == []
    assert fixed.count("run_node(main)") == 1
    assert with_entry_point(fixed) == fixed  # already right: unchanged
