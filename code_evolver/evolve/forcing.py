"""``--evolve``: the plan's generic writing steps become ``generate`` steps.

A step of the planner's fallback tool (the model that writes anything) is what a node could
do instead: its description becomes the node's task, and the text it worked on (the
references in its input: ``{input}``, earlier steps) the node's input. Other steps (a
translator, a command) keep their tools.
"""

from __future__ import annotations

from collections.abc import Mapping

from code_evolver.plan import Plan
from code_evolver.templating import parse
from code_evolver.tools.base import Tool


def evolve_plan(plan: Plan, tools: Mapping[str, Tool], writer: str) -> Plan:
    """``plan`` with each step of ``writer`` done by the first ``generated`` tool instead."""
    generate = next((name for name, tool in tools.items() if tool.kind == "generated"), None)
    if generate is None:
        return plan
    data = plan.model_dump(mode="json")
    for step in data["steps"]:
        if step["tool"] != writer:
            continue
        refs = [str(ref) for ref in parse(step["input"]).refs]
        step["tool"] = generate
        step["input"] = "\n\n".join(dict.fromkeys(refs))
        step["params"] = {"task": step["description"] or step["input"]}
    return Plan.from_data(data)
