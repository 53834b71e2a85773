"""Planning: a request becomes a validated plan (rules fast path, plan cache, LLM overseer)."""

from code_evolver.planner.decompose import rules_plan
from code_evolver.planner.planner import Planner, PlanOutcome

__all__ = ["PlanOutcome", "Planner", "rules_plan"]
