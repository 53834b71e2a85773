"""Terminal rendering with rich: the plan as waves, the live view while running, the results.

Nothing here changes state outside the terminal; the CLI decides what to show and where
(progress on stderr, results on stdout).
"""

from code_evolver.display.live import LineProgress, LiveView
from code_evolver.display.plan_tree import plan_tree
from code_evolver.display.results import results_view, summary_line
from code_evolver.display.tools_table import tools_table

__all__ = ["LineProgress", "LiveView", "plan_tree", "results_view", "summary_line", "tools_table"]
