"""Runs a node's tests inside the sandbox: ``python test_runner.py NODE_FOLDER``.

Standard library only, and fast: every ``test_*`` function of ``test_main.py`` is called,
plain ``assert``s as in pytest. ``import pytest`` gets a small stand-in (``raises``,
``approx``, ``fail``, ``skip``, ``mark.parametrize``) rather than pytest itself, whose import
alone would cost more than the rest of a fix-loop round. A bare ``assert a == b`` that fails
says what each side was, as pytest does (the model repairs from it). Prints one JSON document
and exits 0 when at least one test ran and all passed.
"""

import ast
import contextlib
import importlib
import inspect
import itertools
import json
import math
import re
import sys
import traceback
import types
from collections.abc import Callable, Iterator

MAX_TRACE_LINES = 12


class Skipped(Exception):
    pass


def _pytest_stand_in() -> types.ModuleType:
    module = types.ModuleType("pytest")

    @contextlib.contextmanager
    def raises(expected, match=None):  # type: ignore[no-untyped-def]
        try:
            yield
        except expected as exc:
            if match is not None and not re.search(match, str(exc)):
                raise AssertionError(f"{match!r} not in {str(exc)!r}") from exc
            return
        raise AssertionError(f"did not raise {expected}")

    def approx(value, rel=1e-6, abs=1e-12):  # type: ignore[no-untyped-def]
        class Approx:
            def __eq__(self, other):  # type: ignore[no-untyped-def]
                return math.isclose(other, value, rel_tol=rel, abs_tol=abs)

            def __repr__(self) -> str:
                return f"approx({value!r})"

        return Approx()

    def fail(reason=""):  # type: ignore[no-untyped-def]
        raise AssertionError(reason)

    def skip(reason=""):  # type: ignore[no-untyped-def]
        raise Skipped(reason)

    def parametrize(names, values):  # type: ignore[no-untyped-def]
        keys = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)

        def mark(test):  # type: ignore[no-untyped-def]
            rows = [v if len(keys) > 1 else (v,) for v in values]
            layers = getattr(test, "_parametrize", [])
            test._parametrize = [*layers, [dict(zip(keys, r, strict=True)) for r in rows]]
            return test

        return mark

    module.raises = raises  # type: ignore[attr-defined]
    module.approx = approx  # type: ignore[attr-defined]
    module.fail = fail  # type: ignore[attr-defined]
    module.skip = skip  # type: ignore[attr-defined]
    module.mark = types.SimpleNamespace(parametrize=parametrize)  # type: ignore[attr-defined]
    return module


def cases(test: Callable[..., object]) -> Iterator[dict[str, object]]:
    """The keyword arguments of each call of ``test`` (one call, none, unless parametrized)."""
    layers = getattr(test, "_parametrize", [])
    for combination in itertools.product(*layers):
        kwargs: dict[str, object] = {}
        for part in combination:
            kwargs.update(part)
        yield kwargs


def main() -> int:
    sys.path.insert(0, sys.argv[1])
    sys.modules["pytest"] = _pytest_stand_in()
    try:
        tests = importlib.import_module("test_main")
    except BaseException:
        print(json.dumps({"tests": 0, "failed": [["import", _trace()]]}))
        return 1
    found = [(n, f) for n, f in vars(tests).items() if n.startswith("test") and callable(f)]
    failed = []
    ran = 0
    for name, test in found:
        for kwargs in cases(test):
            params = inspect.signature(test).parameters.values()
            needs = [p.name for p in params if p.default is p.empty and p.name not in kwargs]
            label = f"{name}[{', '.join(map(repr, kwargs.values()))}]" if kwargs else name
            if needs:
                failed.append([label, f"needs fixtures {needs}: write plain tests"])
                continue
            try:
                test(**kwargs)
                ran += 1
            except Skipped:
                continue
            except BaseException as exc:
                failed.append([label, _trace() + _compared(exc)])
    print(json.dumps({"tests": ran + len(failed), "failed": failed}))
    return 0 if ran and not failed else 1


def _trace() -> str:
    """The end of the traceback, with the node's folder left out of its paths (a temporary
    folder differs per attempt, and the same failure must read the same)."""
    lines = traceback.format_exc().replace(sys.argv[1].rstrip("/") + "/", "").rstrip()
    return "\n".join(lines.splitlines()[-MAX_TRACE_LINES:])


def _compared(exc: BaseException) -> str:
    """For a bare ``assert a == b`` that failed: what each side was, as pytest would say.
    A bare AssertionError tells the model (and a person) nothing to fix."""
    if not isinstance(exc, AssertionError) or exc.args:
        return ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None or not tb.tb_frame.f_code.co_filename.endswith("test_main.py"):
        return ""
    frame = tb.tb_frame
    try:
        with open(frame.f_code.co_filename, encoding="utf-8") as source:
            tree = ast.parse(source.read())
        statement = next(
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Assert)
            and node.lineno <= tb.tb_lineno <= (node.end_lineno or node.lineno)
        )
        test = statement.test
        if not (isinstance(test, ast.Compare) and len(test.comparators) == 1):
            return ""
        sides = [
            eval(compile(ast.Expression(side), "<assert>", "eval"), frame.f_globals, frame.f_locals)
            for side in (test.left, test.comparators[0])
        ]
    except Exception:
        return ""
    left, right = (repr(side)[:300] for side in sides)
    return f"\nAssertionError: left side {left}, right side {right}"  # the error, told whole


if __name__ == "__main__":
    sys.exit(main())
