"""The planner's held-out requests and the plan shape each one should get.

``bench/requests/heldout.yaml`` holds requests written before the planner was tuned, each with
its expected shape: the tools of the plan's steps, which steps each one reads (``after``: indices
into the shape) and the params that matter (``target_lang``). ``matches`` says whether a plan has
that shape: the same number of steps and a one-to-one mapping between plan steps and shape steps
that keeps every tool, every dependency edge (exactly: no missing and no extra edges) and every
listed param. Step ids, step order, inputs and unlisted params are free.

    python bench/shapes.py [FILE]     # load and check the set, print the counts by kind
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HELDOUT = Path(__file__).resolve().parent / "requests" / "heldout.yaml"
KINDS = ("single", "chain", "fan-out", "fan-in", "independent", "mixed")
ENTRY_KEYS = {"request", "kind", "shape", "shapes", "stdin", "note", "optional_combine"}
STEP_KEYS = {"tool", "after", "params"}
JOIN = "combine"

# An expected param value: one text, or a list whose items the plan may give in any order,
# as a list or as one comma-separated text (translate_many's ``languages``).
ParamValue = str | tuple[str, ...]


@dataclass(frozen=True)
class ShapeStep:
    """One expected step: its tool, the shape steps it reads, and the params it must have."""

    tool: str
    after: tuple[int, ...] = ()
    params: Mapping[str, ParamValue] = field(default_factory=dict)

    def describe(self, shape: Sequence[ShapeStep]) -> str:
        listed = ", ".join(f"{k}={_show(v)}" for k, v in self.params.items())
        text = f"{self.tool}({listed})" if listed else self.tool
        if self.after:
            text += " after " + " + ".join(shape[j].tool for j in self.after)
        return text


Shape = tuple[ShapeStep, ...]


@dataclass(frozen=True)
class Case:
    """One held-out request: any of ``shapes`` is a right plan for it."""

    request: str
    kind: str
    shapes: tuple[Shape, ...]
    stdin: str | None = None
    note: str | None = None
    optional_combine: bool = False


@dataclass(frozen=True)
class _PlanStep:
    step_id: str
    tool: str
    params: Mapping[str, object]
    depends_on: frozenset[str]


def load_heldout(path: Path | str = HELDOUT) -> list[Case]:
    """Read and check a held-out file; a malformed entry raises ``ValueError`` naming it."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of entries")
    cases = []
    for number, entry in enumerate(data, start=1):
        try:
            cases.append(_case(entry))
        except ValueError as exc:
            raise ValueError(f"{path}: entry {number}: {exc}") from None
    return cases


def _case(entry: object) -> Case:
    if not isinstance(entry, dict):
        raise ValueError("expected a mapping")
    unknown = set(entry) - ENTRY_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    request = entry.get("request")
    if not isinstance(request, str) or not request.strip():
        raise ValueError("`request` must be a non-empty string")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {', '.join(KINDS)}, not {kind!r}")
    if ("shape" in entry) == ("shapes" in entry):
        raise ValueError("give exactly one of `shape` and `shapes`")
    raw_shapes = [entry["shape"]] if "shape" in entry else entry["shapes"]
    if not isinstance(raw_shapes, list) or not raw_shapes:
        raise ValueError("`shapes` must be a non-empty list of shapes")
    stdin, note = entry.get("stdin"), entry.get("note")
    if stdin is not None and not isinstance(stdin, str):
        raise ValueError("`stdin` must be a string")
    if note is not None and not isinstance(note, str):
        raise ValueError("`note` must be a string")
    optional_combine = entry.get("optional_combine", False)
    if not isinstance(optional_combine, bool):
        raise ValueError("`optional_combine` must be true or false")
    return Case(
        request=request,
        kind=kind,
        shapes=tuple(_shape(raw) for raw in raw_shapes),
        stdin=stdin,
        note=note,
        optional_combine=optional_combine,
    )


def _shape(raw: object) -> Shape:
    if not isinstance(raw, list) or not raw:
        raise ValueError("a shape must be a non-empty list of steps")
    return tuple(_shape_step(index, step) for index, step in enumerate(raw))


def _shape_step(index: int, raw: object) -> ShapeStep:
    if not isinstance(raw, dict):
        raise ValueError(f"step {index}: expected a mapping")
    unknown = set(raw) - STEP_KEYS
    if unknown:
        raise ValueError(f"step {index}: unknown keys {sorted(unknown)}")
    tool = raw.get("tool")
    if not isinstance(tool, str) or not tool:
        raise ValueError(f"step {index}: `tool` must be a non-empty string")
    after = raw.get("after", [])
    if not isinstance(after, list) or not all(type(j) is int for j in after):
        raise ValueError(f"step {index}: `after` must be a list of step indices")
    if any(not 0 <= j < index for j in after) or len(set(after)) != len(after):
        raise ValueError(f"step {index}: `after` {after} must name distinct earlier steps")
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise ValueError(f"step {index}: `params` must be a mapping")
    return ShapeStep(
        tool=tool,
        after=tuple(after),
        params={str(name): _expected(index, name, value) for name, value in params.items()},
    )


def _expected(index: int, name: object, value: object) -> ParamValue:
    if isinstance(value, list) and value and all(_is_scalar(v) for v in value):
        return tuple(str(v).strip() for v in value)
    if _is_scalar(value):
        return str(value).strip()
    raise ValueError(f"step {index}: param {name!r} must be a scalar or a list of scalars")


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool)


def matches(plan_steps: Sequence[Mapping[str, object]], case: Case) -> bool | str:
    """True when the plan has one of the case's shapes, else a one-line reason why not.

    ``plan_steps`` are the plan's steps as dicts (``step_id``, ``tool``, ``params``,
    ``depends_on``). With ``optional_combine``, one extra ``combine`` step that nothing reads
    and that reads every final result of the other steps is ignored.
    """
    steps = _plan_steps(plan_steps)
    if isinstance(steps, str):
        return steps
    reasons = []
    for shape in case.shapes:
        reason = _match_shape(steps, shape, case.optional_combine)
        if reason is None:
            return True
        reasons.append(reason)
    if len(reasons) == 1:
        return reasons[0]
    return f"matches none of {len(reasons)} shapes: " + "; ".join(
        f"({number}) {reason}" for number, reason in enumerate(reasons, start=1)
    )


def _plan_steps(raw_steps: Sequence[Mapping[str, object]]) -> list[_PlanStep] | str:
    steps: list[_PlanStep] = []
    for number, raw in enumerate(raw_steps, start=1):
        step_id, tool = raw.get("step_id"), raw.get("tool")
        params, depends_on = raw.get("params") or {}, raw.get("depends_on") or []
        if not isinstance(step_id, str) or not isinstance(tool, str):
            return f"plan step {number} has no step_id or tool"
        if not isinstance(params, Mapping) or not isinstance(depends_on, list | tuple):
            return f"plan step {step_id} has malformed params or depends_on"
        deps = frozenset(str(dep) for dep in depends_on)
        steps.append(_PlanStep(step_id, tool, {str(k): v for k, v in params.items()}, deps))
    ids = [step.step_id for step in steps]
    if len(set(ids)) != len(ids):
        return "the plan repeats a step_id"
    for step in steps:
        unknown = step.depends_on - set(ids)
        if unknown:
            return f"plan step {step.step_id} depends on unknown step {sorted(unknown)[0]}"
    return steps


def _match_shape(steps: list[_PlanStep], shape: Shape, optional_combine: bool) -> str | None:
    """None when ``steps`` have ``shape`` (allowing a final joining combine), else a reason."""
    if len(steps) == len(shape) or not optional_combine:
        return _match_exact(steps, shape)
    if len(steps) != len(shape) + 1:
        return (
            f"{len(steps)} steps, expected {len(shape)} "
            f"(or {len(shape) + 1} with a final {JOIN} of every result)"
        )
    first_reason = None
    for join in steps:
        rest = [step for step in steps if step is not join]
        if not _joins_everything(join, rest):
            continue
        reason = _match_exact(rest, shape)
        if reason is None:
            return None
        first_reason = first_reason or reason
    if first_reason is None:
        return f"{len(steps)} steps, expected {len(shape)}, and no final {JOIN} reads every result"
    return first_reason


def _joins_everything(join: _PlanStep, rest: list[_PlanStep]) -> bool:
    read: set[str] = set()
    for step in rest:
        read |= step.depends_on
    if join.tool != JOIN or join.step_id in read:
        return False
    finals = {step.step_id for step in rest if step.step_id not in read}
    return finals <= join.depends_on


def _match_exact(steps: list[_PlanStep], shape: Shape) -> str | None:
    if len(steps) != len(shape):
        return f"{len(steps)} steps, expected {len(shape)}"
    have, want = Counter(step.tool for step in steps), Counter(step.tool for step in shape)
    if have != want:
        return f"tools differ: plan has {_count(have)}, expected {_count(want)}"
    for wanted in shape:
        if wanted.params and not any(
            step.tool == wanted.tool and _params_match(step.params, wanted.params) for step in steps
        ):
            return f"no step {wanted.describe(shape)}"
    failed_at = _search(steps, shape)
    if failed_at is None:
        return None
    return f"dependencies differ: no step fits {shape[failed_at].describe(shape)}"


def _search(steps: list[_PlanStep], shape: Shape) -> int | None:
    """Backtrack over shape steps in order (``after`` points backwards, so each step's
    dependencies are placed before it); None when every step is placed, else the index of
    the deepest shape step that could not be."""
    readers: dict[str, set[str]] = {step.step_id: set() for step in steps}
    for step in steps:
        for dep in step.depends_on:
            readers[dep].add(step.step_id)
    # Steps with the same signature are interchangeable: trying a second one after the first
    # failed cannot succeed, so identical parallel steps cost no factorial search.
    signature = {
        step.step_id: (
            step.tool,
            json.dumps(step.params, sort_keys=True, default=str),
            tuple(sorted(step.depends_on)),
            tuple(sorted(readers[step.step_id])),
        )
        for step in steps
    }
    placed: list[_PlanStep] = []
    used: set[str] = set()
    deepest = 0

    def place(index: int) -> bool:
        nonlocal deepest
        if index == len(shape):
            return True
        wanted = shape[index]
        deps = frozenset(placed[j].step_id for j in wanted.after)
        tried = set()
        for step in steps:
            if step.step_id in used or signature[step.step_id] in tried:
                continue
            if step.tool != wanted.tool or step.depends_on != deps:
                continue
            if not _params_match(step.params, wanted.params):
                continue
            tried.add(signature[step.step_id])
            placed.append(step)
            used.add(step.step_id)
            if place(index + 1):
                return True
            placed.pop()
            used.discard(step.step_id)
        deepest = max(deepest, index)
        return False

    return None if place(0) else deepest


def _params_match(actual: Mapping[str, object], expected: Mapping[str, ParamValue]) -> bool:
    return all(_value_matches(actual.get(name), value) for name, value in expected.items())


def _value_matches(actual: object, expected: ParamValue) -> bool:
    if actual is None:
        return False
    if isinstance(expected, tuple):
        return _items(actual) == {item.casefold() for item in expected}
    return _text(actual) == expected.casefold()


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().casefold()


def _items(value: object) -> set[str]:
    if isinstance(value, list | tuple):
        parts = [_text(item) for item in value]
    else:
        parts = re.split(r"\s*(?:,|;|/|\band\b)\s*", _text(value))
    return {part.strip() for part in parts if part.strip()}


def _count(tools: Counter[str]) -> str:
    return ", ".join(f"{tool} x{n}" if n > 1 else tool for tool, n in sorted(tools.items()))


def _show(value: ParamValue) -> str:
    return "[" + ", ".join(value) + "]" if isinstance(value, tuple) else value


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    cases = load_heldout(args[0] if args else HELDOUT)
    kinds = Counter(case.kind for case in cases)
    print(f"{len(cases)} requests: " + ", ".join(f"{kind} {kinds[kind]}" for kind in KINDS))
    print(f"with stdin {sum(case.stdin is not None for case in cases)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
