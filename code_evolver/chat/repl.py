"""The chat's front ends: the prompt-toolkit REPL on a terminal, and one request per line.

Both run on one event loop for the whole conversation, so the model loads once and a
follow-up starts at once. While a request runs, Ctrl-C (SIGINT) stops that request only:
its finished steps are shown, and the prompt comes back. At the prompt, Ctrl-C clears the
line and Ctrl-D leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from code_evolver.chat import instant_prompt
from code_evolver.chat.commands import COMMANDS
from code_evolver.chat.instant_prompt import PROMPT
from code_evolver.home import state_dir

if TYPE_CHECKING:
    from code_evolver.chat.session import ChatSession

EXIT_INTERRUPTED = 130


def leave_now(code: int) -> None:
    """End the process at once, its process groups killed (the one-shot's second Ctrl-C)."""
    from code_evolver.cli import terminal

    terminal.leave_now(code)


async def run_lines(chat: ChatSession, stream: TextIO) -> None:
    """One request (or command) per line of ``stream``, until its end or ``/quit``."""
    try:
        read = _FdLines(stream.fileno()).readline
    except (AttributeError, OSError, ValueError):  # no file behind it (tests): its own lines
        raw = getattr(stream, "buffer", None)
        read = (lambda: raw.readline().decode("utf-8", "replace")) if raw else stream.readline
    while line := await _in_daemon_thread(read):
        if not await _one(chat, line):
            return


class _FdLines:
    """Lines of a file descriptor, read with ``os.read``: a thread blocked in it holds no lock
    of Python's (a buffered reader's would abort the interpreter at exit). Bytes are decoded
    leniently: a stray byte is no crash."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = b""
        self._ended = False

    def readline(self) -> str:
        while b"\n" not in self._pending and not self._ended:
            chunk = os.read(self._fd, 65536)
            self._ended = not chunk
            self._pending += chunk
        line, newline, self._pending = self._pending.partition(b"\n")
        return (line + newline).decode("utf-8", "replace")


async def _in_daemon_thread(read: Callable[[], str]) -> str:
    """``read()`` in a daemon thread: Ctrl-C while the chat waits for its next line ends it at
    once, where a pool thread blocked in ``readline`` would hold the exit until a line came."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def settle(line: str | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(line or "")

    def work() -> None:
        line, error = None, None
        try:
            line = read()
        except Exception as exc:  # delivered to the awaiting chat, raised there
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(settle, line, error)

    threading.Thread(target=work, name="chat-stdin", daemon=True).start()
    return await future


async def run_terminal(
    make_chat: Callable[[], ChatSession],
    *,
    input: Any = None,
    output: Any = None,
    shown_early: bool = False,
) -> ChatSession | None:
    """The REPL: history shared across sessions, suggestions from it, completion of commands
    and tool names, Esc-Enter for a new line, a toolbar with the model and the last run.

    The prompt shows first; the session (config, tools, the library behind them) is made
    meanwhile in a thread, and the first message waits for it. ``shown_early``: the caller
    has put up the :mod:`instant_prompt`, which this editor replaces. Returns the chat, if one
    was made, for the caller to close."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
    from prompt_toolkit.key_binding import KeyBindings

    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _new_line(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    making = asyncio.ensure_future(asyncio.to_thread(make_chat))

    def ready() -> ChatSession | None:
        return making.result() if making.done() and not making.exception() else None

    prompt: PromptSession[str] = PromptSession(
        history=_history(),
        auto_suggest=AutoSuggestFromHistory(),
        completer=_completer(ready),
        complete_while_typing=False,
        bottom_toolbar=lambda: chat.toolbar() if (chat := ready()) else "loading… · /help",
        key_bindings=keys,
        input=input,
        output=output,
    )

    def failed(future: asyncio.Future[ChatSession]) -> None:
        """A session that cannot be made (a broken config) ends the prompt with its error."""
        error = None if future.cancelled() else future.exception()
        if error is not None and prompt.app.is_running:
            prompt.app.exit(exception=error)

    making.add_done_callback(failed)
    if shown_early:
        instant_prompt.hand_over()
    while True:
        if making.done() and (error := making.exception()) is not None:
            raise error
        try:
            line = await prompt.prompt_async(PROMPT)
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt: the line is cleared
        except EOFError:
            break  # Ctrl-D
        if not await _one(await making, line):
            break
    return await making


async def _one(chat: ChatSession, line: str) -> bool:
    """One message, with Ctrl-C stopping only it; a second Ctrl-C during the same message
    leaves at once (a model busy reading a long prompt cannot stop mid-prompt)."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, ctrl_c_handler(chat))
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):
        installed = False  # not the main thread (tests): no signal to catch
    try:
        return await chat.handle(line)
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)


def ctrl_c_handler(chat: ChatSession) -> Callable[[], None]:
    """The first Ctrl-C stops the message's request; the next one leaves at once."""
    pressed = 0

    def on_ctrl_c() -> None:
        nonlocal pressed
        pressed += 1
        if pressed == 1:
            chat.interrupt()
        else:
            leave_now(EXIT_INTERRUPTED)

    return on_ctrl_c


def history_path() -> Path | None:
    """``$EVOLVE_HOME/chat/history``; None (after one warning) when it cannot be kept."""
    folder = state_dir("chat", what="chat history")
    return folder / "history" if folder is not None else None


def _history() -> Any:
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    path = history_path()
    if path is None:
        return InMemoryHistory()
    try:
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


def _completer(ready: Callable[[], ChatSession | None]) -> Any:
    from prompt_toolkit.completion import Completer, Completion

    class _Words(Completer):
        """``/`` and a command name; otherwise a tool's name for the word being typed."""

        def get_completions(self, document: Any, complete_event: Any) -> Iterable[Completion]:
            text = document.text_before_cursor
            if text.startswith("/") and " " not in text:
                for name in COMMANDS:
                    if name.startswith(text[1:]):
                        yield Completion(f"/{name}", start_position=-len(text))
                return
            word = document.get_word_before_cursor()
            chat = ready()
            if word and chat is not None:
                for name in sorted(chat.session.registry):
                    if name.startswith(word) and name != word:
                        yield Completion(name, start_position=-len(word))

    return _Words()
