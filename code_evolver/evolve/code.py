"""Code from a reply, and the checks it passes before anything runs.

A model wraps code in prose and fences, or forgets the fences; a person's file is just code.
:func:`extract_code` finds the Python in any of them. :func:`problems` then reads it without
running it: it must parse, import only modules of the allow-list (``evolve.allowed_imports``),
and, for a node, define ``main`` and call ``run_node`` only under ``if __name__ ==
"__main__":`` so that its tests can import it. Anything refused here never reaches the sandbox.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)

DEFAULT_ALLOWED = frozenset(
    {
        "node_runtime", "main", "json", "re", "math", "statistics", "string", "textwrap",
        "collections", "itertools", "functools", "operator", "dataclasses", "typing",
        "datetime", "decimal", "fractions", "random", "unicodedata", "difflib", "html",
        "csv", "io", "base64", "hashlib", "enum", "heapq", "bisect", "copy", "pprint",
        "pytest", "__future__",
    }
)  # fmt: skip
"""Modules generated code may import when config.yaml names none: computation and text,
nothing that reaches files, processes or the network (the sandbox stops those anyway)."""


def allowed_imports(configured: Collection[str] | None) -> frozenset[str]:
    """``evolve.allowed_imports`` (with the node's own ``main`` and ``node_runtime``), else
    the default allow-list."""
    return frozenset(configured) | {"node_runtime", "main"} if configured else DEFAULT_ALLOWED


def fenced_blocks(reply: str) -> list[str]:
    """The contents of the fenced code blocks of ``reply``, in order (a last fence left open
    by a cut-off reply counts)."""
    return [str(b).strip("\n") for b in _FENCE.findall(reply)]


def extract_code(reply: str) -> str:
    """The Python in ``reply``: the longest fenced block that parses, else the reply itself
    (or its longest run of lines that parses, prose cut off around it)."""
    blocks = fenced_blocks(reply)
    parsing = [b for b in blocks if _parses(b)]
    if parsing:
        return max(parsing, key=len)
    if blocks:
        return max(blocks, key=len)
    text = reply.strip("\n")
    if _parses(text):
        return text
    return _longest_parsing_run(text.splitlines()) or text


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return bool(code.strip())


def _longest_parsing_run(lines: list[str]) -> str:
    """Prose before and after the code: drop lines from both ends until what is left parses."""
    best = ""
    for start in range(len(lines)):
        if not lines[start].strip() or lines[start][0].isspace():
            continue  # code starts at column 0
        for end in range(len(lines), start, -1):
            candidate = "\n".join(lines[start:end])
            if len(candidate) <= len(best):
                break
            if _parses(candidate):
                best = candidate
                break
    return best


GUARD = 'if __name__ == "__main__":\n    from node_runtime import run_node\n\n    run_node(main)\n'


def with_entry_point(code: str) -> str:
    """A node's ``run_node(main)`` where it belongs: a call at module level (which would
    run when the tests import the node) is moved under the ``__main__`` guard, and a node
    without one gets it. Small models forget it more often than anything else; it takes no
    model round to put right."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    if not any(
        isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == "main"
        for item in tree.body
    ):
        return code
    if any(isinstance(i, ast.If) and "__main__" in ast.unparse(i.test) for i in tree.body):
        return code
    lines = code.splitlines()
    for item in reversed(tree.body):
        if isinstance(item, ast.Expr) and "run_node(" in ast.unparse(item):
            del lines[item.lineno - 1 : (item.end_lineno or item.lineno)]
    return "\n".join(lines).rstrip() + "\n\n\n" + GUARD


def problems(code: str, allowed: Collection[str], *, node: bool) -> list[str]:
    """Why ``code`` may not run (empty: it may). ``node``: it is a node's ``main.py``."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"syntax error on line {exc.lineno}: {exc.msg}"]
    except ValueError as exc:  # null bytes
        return [f"not Python source: {exc}"]
    found = [
        f"line {line}: import of {module!r} is not allowed (evolve.allowed_imports)"
        for module, line in _imports(tree)
        if module.split(".")[0] not in allowed
    ]
    found += [
        f"line {call.lineno}: {name}() is not allowed"
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and (name := _called(call)) in ("exec", "eval", "compile", "__import__", "open")
    ]
    if node:
        found += _node_shape(tree)
    return found


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    modules: list[tuple[str, int]] = []
    for item in ast.walk(tree):
        if isinstance(item, ast.Import):
            modules += [(alias.name, item.lineno) for alias in item.names]
        elif isinstance(item, ast.ImportFrom):
            modules.append(("." if item.level else item.module or "", item.lineno))
    return modules


def _called(call: ast.Call) -> str:
    return call.func.id if isinstance(call.func, ast.Name) else ""


def _node_shape(tree: ast.Module) -> list[str]:
    defined = {
        item.name for item in tree.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    if "main" not in defined:  # the guard is added for it once there is a main
        return ["a node must define main(text, **params)"]
    found: list[str] = []
    guarded = [
        item
        for item in tree.body
        if isinstance(item, ast.If) and "__main__" in ast.unparse(item.test)
    ]
    if not any("run_node" in ast.unparse(item) for item in guarded):
        found.append('a node must end with: if __name__ == "__main__": run_node(main)')
    for item in tree.body:
        if item not in guarded and "run_node(" in ast.unparse(item) and isinstance(item, ast.Expr):
            found.append(f"line {item.lineno}: run_node() must be under if __name__ == ...")
    return found
