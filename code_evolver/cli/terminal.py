"""What the CLI needs from the terminal: consoles, errors, JSON output, signals, progress.

Progress goes to stderr and results to stdout, so ``evolve ... > out.txt`` still shows
progress. A closed stdout (``evolve ... | head -1``) is not an error: output stops quietly and
the exit code still says how the run went.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment

from code_evolver.display.safe import json_safe, shown, without_controls
from code_evolver.errors import EvolverError, problems_of

if TYPE_CHECKING:  # the rest is imported where it is used: `evolve tools` needs none of it
    from code_evolver.display.live import LiveView
    from code_evolver.events import EventBus
    from code_evolver.organizer import OrganizedPlan

T = TypeVar("T")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXIT_INTERRUPTED = 130


class _Console(Console):
    """Our console: text is shown as it is (no ``:emoji:`` codes from tool output), control
    characters never reach the terminal, and a closed pipe is not an error."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(emoji=False, highlight=False, **kwargs)

    def on_broken_pipe(self) -> None:
        """The reader went away: stop writing, without exiting or changing the exit code."""
        self.quiet = True
        _silence(self.file)

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        """The last guard of terminal safety: no control character in any text we print
        reaches the terminal raw (rich's own control segments, e.g. cursor moves, pass)."""
        for segment in super().render(renderable, options):
            if segment.control or segment.text.isprintable():
                yield segment
            else:
                yield Segment(without_controls(segment.text), segment.style)


def _silence(stream: Any = None) -> None:
    """Point a closed stream at /dev/null, so later writes (and the final flush) are harmless."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, (stream or sys.stdout).fileno())


def stdout_console() -> Console:
    return _Console()


_stderr: Console | None = None


def stderr_console() -> Console:
    """The stderr console; warnings logged while it is live are printed through it, so they
    appear above a live view instead of tearing it."""
    global _stderr
    _stderr = _Console(stderr=True)
    return _stderr


class _WarningPrinter(logging.Handler):
    """Prints the library's warnings (``code_evolver`` logger) as ``warning:`` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        label = "warning" if record.levelno < logging.ERROR else "error"
        try:
            console = _stderr or _Console(stderr=True, soft_wrap=True)
            colour = "yellow" if label == "warning" else "red"
            console.print(f"[{colour}]{label}:[/] {shown(record.getMessage())}", soft_wrap=True)
        except Exception:  # e.g. out of descriptors: still say it, plainly
            with contextlib.suppress(Exception):
                sys.stderr.write(f"{label}: {without_controls(record.getMessage())}\n")


@contextlib.contextmanager
def library_warnings() -> Iterator[None]:
    """Show the library's logged warnings on stderr while the CLI runs."""
    logger = logging.getLogger("code_evolver")
    handler = _WarningPrinter(logging.WARNING)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout (controls escaped, so it is exact and inert)."""
    try:
        click.echo(json_safe(json.dumps(document, ensure_ascii=False, indent=2)))
        sys.stdout.flush()
    except BrokenPipeError:
        _silence(sys.stdout)


def report_error(exc: EvolverError, *, as_json: bool) -> None:
    """One ``error:`` line per problem on stderr (and a JSON document with ``--json``)."""
    problems = problems_of(exc)
    err = _Console(stderr=True, soft_wrap=True)
    for problem in problems:
        err.print(f"[bold red]error:[/] {shown(problem)}")
    if as_json:
        emit_error_json(str(exc), problems)


def emit_error_json(error: str, problems: Sequence[str]) -> None:
    """The ``--json`` document of a run that did not happen: every error ends this way."""
    emit_json({"status": "error", "error": error, "problems": list(problems)})


def run_async(main: Callable[[], Awaitable[T]], on_stop: Callable[[], None]) -> T:
    """Run ``main()`` on a fresh event loop. The first SIGINT/SIGTERM/SIGHUP calls ``on_stop``
    (a graceful stop: finished work is kept); a second one ends the process at once (see
    :func:`hard_exit`), also while threads are still being wound up after the loop."""
    import asyncio

    async def wrapper() -> T:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []

        def stop() -> None:
            for sig in installed:  # the next signal is not gentle
                with contextlib.suppress(Exception):
                    loop.add_signal_handler(sig, hard_exit)
            _hard_exit_from_now_on()
            on_stop()

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
            if _interrupted:
                _hard_exit_from_now_on()  # removing the handlers restored the defaults

    return asyncio.run(wrapper())


_interrupted = False


def _hard_exit_from_now_on() -> None:
    global _interrupted
    _interrupted = True
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda *_: hard_exit())


def hard_exit() -> None:
    """A second Ctrl-C: kill every process we started, restore the cursor and leave with 130
    at once, without waiting for model threads and without a traceback."""
    with contextlib.suppress(Exception):
        if sys.stderr.isatty():
            sys.stderr.write("\x1b[?25h")  # a live view may have hidden the cursor
        sys.stderr.write("\ninterrupted\n")
    leave_now(EXIT_INTERRUPTED)


def leave_now(code: int) -> None:
    """End the process with ``code`` without waiting for threads: kill our process groups,
    flush what was printed, and skip the interpreter's teardown."""
    from code_evolver.launch.processes import kill_all_groups

    kill_all_groups()
    if (history := sys.modules.get("code_evolver.history.recorder")) is not None:
        with contextlib.suppress(Exception):  # no run is left "running" in the history
            history.abandon_all()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def progress_wanted(as_json: bool, err: Console) -> bool:
    """Progress goes to stderr unless stdout is data (--json) and stderr is no terminal: a
    person watching a --json run still sees it move, a log or a pipe gets only the data."""
    return not as_json or err.is_terminal


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
    from code_evolver.display.live import LineProgress, LiveView

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
