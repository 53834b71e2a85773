"""``evolve plan --show``: the plan as a tree of waves, each listing its steps."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group, RenderableType
from rich.text import Text
from rich.tree import Tree

from code_evolver.display.safe import shown, terminal_safe
from code_evolver.display.style import clip
from code_evolver.organizer import OrganizedPlan
from code_evolver.tools.base import Tool


def plan_tree(organized: OrganizedPlan, tools: Mapping[str, Tool] | None = None) -> RenderableType:
    plan = organized.plan
    steps = organized.steps
    count = len(plan.steps)
    longest = len(organized.critical_path(dict.fromkeys(steps, 1.0))[1])
    title = shown(clip(plan.request, 90)) if plan.request else "Plan"
    root = Tree(
        f"[bold]{title}[/]\n[dim]{count} step{'s' * (count != 1)} in "
        f"{len(organized.waves)} wave{'s' * (len(organized.waves) != 1)}, "
        f"longest chain {longest}[/]"
    )
    for number, wave in enumerate(organized.waves, start=1):
        together = f" [cyan](×{len(wave)} in parallel)[/]" if len(wave) > 1 else ""
        branch = root.add(f"[bold]wave {number}[/]{together}")
        for step_id in wave:
            step = steps[step_id]
            kind = f" [dim]{tools[step.tool].kind}[/]" if tools and step.tool in tools else ""
            line = f"[bold]{shown(step_id)}[/]  [cyan]{shown(step.tool)}[/]{kind}"
            if step.description:
                line += f"  {shown(clip(step.description, 60))}"
            if step.depends_on:
                line += f"  [dim]← {shown(', '.join(step.depends_on))}[/]"
            branch.add(line)
    if not organized.warnings:
        return root
    warnings = [Text(f"warning: {terminal_safe(w)}", style="yellow") for w in organized.warnings]
    return Group(root, *warnings)
