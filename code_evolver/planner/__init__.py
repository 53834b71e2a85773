"""Planning: a request becomes a validated plan (rules fast path, plan cache, LLM overseer)."""

from code_evolver.planner.planner import Planner, PlanOutcome
from code_evolver.planner.rules import rules_plan

__all__ = ["PlanOutcome", "Planner", "rules_plan"]
