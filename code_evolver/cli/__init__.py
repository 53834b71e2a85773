"""The ``evolve`` command: a thin layer over the library (``code_evolver.api``, ``Session``)."""

from code_evolver.cli.app import cli, main, main_group

__all__ = ["cli", "main", "main_group"]
