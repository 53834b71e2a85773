"""Tools: what a step runs. One module per kind (command, function, template); ``specs`` says what
config.yaml may contain and ``registry`` builds runnable tools from it.

This package imports nothing on purpose: ``code_evolver.config`` needs ``tools.specs`` while the
registry needs the config, and the public names are re-exported by ``code_evolver`` itself.
"""
