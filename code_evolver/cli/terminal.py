"""What the CLI needs from the terminal: consoles, errors, JSON output, signals, progress.

Progress goes to stderr and results to stdout, so ``evolve ... > out.txt`` still shows
progress. A closed stdout (``evolve ... | head -1``) is not an error: output stops quietly and
the exit code still says how the run went.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from code_evolver.display import LineProgress, LiveView
from code_evolver.errors import EvolverError, UserError
from code_evolver.events import EventBus
from code_evolver.organizer import OrganizedPlan

T = TypeVar("T")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader went away: stop writing, without exiting or changing the exit code."""
        self.quiet = True
        _silence(self.file)


def _silence(stream: Any = None) -> None:
    """Point a closed stream at /dev/null, so later writes (and the final flush) are harmless."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, (stream or sys.stdout).fileno())


def stdout_console() -> Console:
    return _Console(highlight=False)


def stderr_console() -> Console:
    return _Console(stderr=True, highlight=False)


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    try:
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
        sys.stdout.flush()
    except BrokenPipeError:
        _silence(sys.stdout)


def report_error(exc: EvolverError, *, as_json: bool) -> None:
    """One ``error:`` line per problem on stderr (and a JSON document with ``--json``)."""
    problems = exc.problems if isinstance(exc, UserError) else (str(exc),)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for problem in problems:
        err.print(f"[bold red]error:[/] {escape(problem)}")
    if as_json:
        emit_json({"status": "error", "error": str(exc), "problems": list(problems)})


def run_async(main: Callable[[], Awaitable[T]], on_stop: Callable[[], None]) -> T:
    """Run ``main()`` on a fresh event loop. The first SIGINT/SIGTERM/SIGHUP calls ``on_stop``
    (a graceful stop: finished work is kept); a second Ctrl-C interrupts at once."""

    async def wrapper() -> T:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []

        def stop() -> None:
            on_stop()
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signal.SIGINT)  # the next Ctrl-C is not gentle

        for sig in STOP_SIGNALS:
            try:
                loop.add_signal_handler(sig, stop)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                break  # not the main thread: no signal handling
        try:
            return await main()
        finally:
            for sig in installed:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)

    return asyncio.run(wrapper())


@contextlib.contextmanager
def progress(
    bus: EventBus,
    console: Console,
    organized: OrganizedPlan | None = None,
    *,
    enabled: bool = True,
    status: str = "",
) -> Iterator[LiveView | None]:
    """A live view on a terminal, one line per step elsewhere, nothing when disabled."""
    if not enabled:
        yield None
        return
    if console.is_terminal:
        view = LiveView(organized, console, status=status)
        unsubscribe = bus.subscribe(view)
        try:
            with view:
                yield view
        finally:
            unsubscribe()
        return
    unsubscribe = bus.subscribe(LineProgress(console))
    try:
        yield None
    finally:
        unsubscribe()


@contextlib.contextmanager
def quiet_stdout(enabled: bool) -> Iterator[None]:
    """With ``--json``, anything a tool prints in-process goes to stderr, not into the JSON."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield
