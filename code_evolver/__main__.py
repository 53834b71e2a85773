"""``python -m code_evolver`` is the ``evolve`` command."""

from code_evolver.cli import main

main()
