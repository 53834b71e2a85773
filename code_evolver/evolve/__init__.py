"""Code evolution: nodes written (by a model or a person), proved by tests in the strict
sandbox, kept in a registry under ``$EVOLVE_HOME/nodes`` and reused."""
