"""Terminal rendering with rich: the plan as waves, the live view while running, the results.

Nothing here changes state outside the terminal; the CLI decides what to show and where
(progress on stderr, results on stdout). Import from the modules themselves
(``display.live``, ``display.results``, ...): this package imports nothing, so that listing
the tools does not load the run's live view.
"""
