"""Run history: every run and every step execution, kept in ``$EVOLVE_HOME/history.db``."""
