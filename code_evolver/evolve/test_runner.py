"""Runs a node's tests inside the sandbox: ``python test_runner.py NODE_FOLDER``.

Standard library only (the sandbox has the interpreter, not necessarily pytest): every
``test_*`` function of ``test_main.py`` is called with no arguments, plain ``assert``s as in
pytest; ``pytest.raises`` and ``pytest.approx`` work through a small stand-in when pytest
itself is not there. Prints one JSON document and exits 0 when at least one test ran and all
passed.
"""

import contextlib
import importlib
import inspect
import json
import math
import re
import sys
import traceback
import types

MAX_TRACE_LINES = 12


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

    module.raises = raises  # type: ignore[attr-defined]
    module.approx = approx  # type: ignore[attr-defined]
    return module


def main() -> int:
    sys.path.insert(0, sys.argv[1])
    try:
        import pytest  # noqa: F401
    except ImportError:
        sys.modules["pytest"] = _pytest_stand_in()
    try:
        tests = importlib.import_module("test_main")
    except BaseException:
        report = {"tests": 0, "failed": [["import", _trace()]]}
        print(json.dumps(report))
        return 1
    found = [(n, f) for n, f in vars(tests).items() if n.startswith("test") and callable(f)]
    failed = []
    for name, test in found:
        needs = [p for p in inspect.signature(test).parameters.values() if p.default is p.empty]
        if needs:
            failed.append([name, f"needs fixtures {[p.name for p in needs]}: use plain tests"])
            continue
        try:
            test()
        except BaseException:
            failed.append([name, _trace()])
    print(json.dumps({"tests": len(found), "failed": failed}))
    return 0 if found and not failed else 1


def _trace() -> str:
    """The end of the traceback, with the node's folder left out of its paths (a temporary
    folder differs per attempt, and the same failure must read the same)."""
    lines = traceback.format_exc().replace(sys.argv[1].rstrip("/") + "/", "").rstrip()
    return "\n".join(lines.splitlines()[-MAX_TRACE_LINES:])


if __name__ == "__main__":
    sys.exit(main())
