"""The pipe to a history file's writer process (:mod:`code_evolver.history.writer`).

One link a history file and process, shared by every session that records into it: a chat
that switches its model, or a script that runs plan after plan, starts the writer once (it
costs 25-30 ms on another core) instead of once a session. The first session starts it;
it ends when the process does (or when it fails, and then the next session starts another).

Sending is cheap on purpose: a message is appended, and ``SHIP_S`` after the first of a
batch the batch goes down the pipe in one write. A full pipe never blocks the event loop:
what it does not take waits in a backlog for the next ship.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import itertools
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from pathlib import Path
from typing import IO, Any, Protocol

from code_evolver.history.schema import HistoryError
from code_evolver.history.writer import HEADER
from code_evolver.home import state_problem, warn_once

WHAT = "run history"
SHIP_S = 0.002
"""How long a record may wait in evolve before it is shipped: a burst of steps is one write."""
PIPE_BYTES = 1 << 20
"""The pipe's buffer (the default is 64 KiB): a burst of large outputs need not wait."""
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

Message = tuple[Any, ...]


def start_command(then: str = "main(sys.argv[1])") -> str:
    """The writer's ``python -S -I -c`` program (no site: only the standard library and this
    package, found where it is): import the writer, then ``then``."""
    return (
        f"import sys; sys.path.append({_PACKAGE_ROOT!r}); "
        f"from code_evolver.history.writer import main; {then}"
    )


class WriterProcess(Protocol):
    """The writer as the link sees it: what it is sent, what it answers, its end."""

    stdin: IO[bytes] | None
    stdout: IO[bytes] | None
    stderr: IO[bytes] | None

    def wait(self, timeout: float | None = None) -> int: ...


def launch_writer(path: Path) -> WriterProcess:
    """The writer process for the history at ``path``. (Unit tests, which start no process,
    put the same writer on a thread instead.)"""
    return subprocess.Popen(
        [sys.executable, "-S", "-I", "-c", start_command(), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # Ctrl-C is evolve's to handle, not the writer's
    )


class WriterLink:
    """Messages to one writer; :func:`link_to` gives the one for a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failed = False
        self.closed = False
        self._process: WriterProcess | None = None
        self._reader: threading.Thread | None = None
        self._pending: deque[Message] = deque()
        """Sent, not shipped yet (a deque: sessions on other threads may append while a ship
        takes what is there)."""
        self._backlog = bytearray()
        """Shipped, not yet taken by the pipe (it was full)."""
        self._shipping_on: asyncio.AbstractEventLoop | None = None
        """The loop a ship is scheduled on (a loop that closed drops it, so this is checked)."""
        self._lock = threading.Lock()
        """Sessions on other threads may share the link: one ship at a time."""
        self._shipper: int | None = None
        """The thread shipping now."""
        self._acked = threading.Condition()
        self._last_ack = 0
        self._flushes = 0
        self._gone = False

    def start(self) -> bool:
        """Start the writer (if it is not running); False if it cannot be (after a warning)."""
        with self._lock:
            if self._process is not None or self.failed or self.closed:
                return self._process is not None
            try:
                process = launch_writer(self.path)
            except OSError as exc:
                self._fail(None, stopped=f"it could not start: {exc.strerror or exc}")
                return False
            assert process.stdin is not None
            fd = process.stdin.fileno()
            os.set_blocking(fd, False)
            with contextlib.suppress(OSError):  # a smaller pipe only means more waits when full
                fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
            self._process = process
            self._reader = threading.Thread(
                target=_listen, args=(process, weakref.ref(self)), name="history", daemon=True
            )
            self._reader.start()
            return True

    def send(self, message: Message, *, now: bool = False) -> None:
        """Ship ``message`` within ``SHIP_S`` (``now``: at once). Called for every step, so
        it takes no lock: appending to a deque is safe from any thread."""
        if self.failed:
            self._let_go()
            return
        if self._process is None and not self.start():
            return
        self._pending.append(message)
        if now:
            self._ship()
        elif (loop := self._shipping_on) is None or loop.is_closed():
            self._ship_soon()

    def flush(self, timeout_s: float = 30) -> bool:
        """Wait until everything sent is committed; False if it was not, by ``timeout_s``."""
        if self._process is None or self.failed:
            return False
        with self._acked:  # numbered in the order they are sent
            self._flushes += 1
            wanted = self._flushes
            self._pending.append(("flush", wanted))
        deadline = time.monotonic() + timeout_s
        self._ship(deadline)
        with self._acked:
            return (
                self._acked.wait_for(
                    lambda: self._last_ack >= wanted or self._gone or self.failed,
                    timeout=max(0.0, deadline - time.monotonic()),
                )
                and self._last_ack >= wanted
            )

    def close(self, timeout_s: float = 30) -> None:
        """Ship what is left, and wait (up to ``timeout_s``) for the writer to commit it and
        end; after that it goes on by itself."""
        if self._process is None:
            self.closed = True
            return
        if not self.failed:
            self._ship(time.monotonic() + timeout_s)
        self.closed = True
        self._let_go()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout_s)  # it ends when the writer has ended

    # ------------------------------------------------------------------ shipping

    def _ship_soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to wait on: now, waiting for a full pipe if need be
            self._ship(time.monotonic() + 30)
            return
        if self._shipping_on is not loop:
            self._shipping_on = loop
            loop.call_later(SHIP_S, self._ship)  # (a loop that closes first drops it: see send)

    def _ship(self, deadline: float | None = None) -> None:
        """Write what is pending. ``deadline`` None (the event loop's ships): never wait; what
        a full pipe does not take goes in a later ship. Else wait for room until then, outside
        the lock."""
        while self._write_some():  # the pipe is full
            if deadline is None:
                self._ship_soon()
                return
            left = deadline - time.monotonic()
            process = self._process
            if left <= 0 or process is None or process.stdin is None:
                return
            with contextlib.suppress(OSError, ValueError):
                select.select([], [process.stdin.fileno()], [], left)

    def _write_some(self) -> bool:
        """Move what is pending into the backlog and write what the pipe takes: whether the
        pipe was full, with more to write (not when another ship is under way, or there is
        no pipe).

        A ship under way on this very thread means a signal handler (a second Ctrl-C)
        interrupted it: this one stays out, so that no byte is written twice."""
        if self._shipper == threading.get_ident() or not self._lock.acquire(timeout=5):
            return False
        try:
            self._shipper = threading.get_ident()
            self._shipping_on = None
            process = self._process
            if process is None or process.stdin is None or self.failed:
                return False
            pending = self._pending
            if count := len(pending):
                batch = list(itertools.islice(pending, count))
                frame = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
                self._backlog += HEADER.pack(len(frame)) + frame
                for _ in range(count):  # only after they are in the backlog: none is lost
                    pending.popleft()
            fd = process.stdin.fileno()
            while self._backlog:
                try:
                    written = os.write(fd, self._backlog)
                except BlockingIOError:
                    return True
                except OSError as exc:  # the writer is gone: its reader says why
                    broken = exc
                    break
                del self._backlog[:written]
            else:
                return False
        finally:
            self._shipper = None
            self._lock.release()
        self._fail_later(broken)
        return False

    def _let_go(self) -> None:
        """Close the pipe (once, on a thread that sends): the writer then ends. A failed
        writer reads on until then, so that no write of ours fails."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None and process.stdin is not None:
            with contextlib.suppress(OSError):  # its last write failed: the writer is gone
                process.stdin.close()

    # ------------------------------------------------------------------ the writer's answers

    def _heard(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "ack" and rest.isdigit():
            with self._acked:
                self._last_ack = max(self._last_ack, int(rest))
                self._acked.notify_all()
        elif word == "error":
            kind, _, detail = rest.partition(" ")
            if kind == "open":  # the file or its folder: where it is is the fix
                self._fail(HistoryError(detail))
            else:
                self._fail(None, stopped=f"it could not write: {detail}")

    def _ended(self, code: int, trouble: str) -> None:
        if not self.closed or code != 0:
            self._fail(None, stopped=_why_it_ended(code, trouble))
        with self._acked:
            self._gone = True
            self._acked.notify_all()

    def _fail(self, exc: BaseException | None, *, stopped: str = "") -> None:
        """Stop, with one warning: why the history cannot be written (``exc``), or why the
        writer ended before it was told to (``stopped``)."""
        with self._acked:
            if self.failed:
                return
            self.failed = True
            self._acked.notify_all()
        if exc is not None:
            state_problem(WHAT, self.path, exc)
        else:
            warn_once(
                f"state:{WHAT}",
                f"the {WHAT}'s writer process stopped ({stopped}); what it had not committed "
                f"is lost, and this evolve goes on without {WHAT}",
            )

    def _fail_later(self, exc: BaseException) -> None:
        """A write failed: the writer ended. Its reader warns with the writer's own reason
        (it has ended too, so this wait is short); this one counts only if it gave none."""
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=1)
        self._fail(None, stopped=f"its pipe: {exc}")


def _listen(process: WriterProcess, link: weakref.ref[WriterLink]) -> None:
    """The writer's acks and its error, until it ends (a thread: it blocks on the pipe, which
    costs nothing). It holds the link weakly, so that it does not keep it alive: the process's
    table of links does, until :func:`close_all`."""
    assert process.stdout is not None
    assert process.stderr is not None
    code, trouble = -1, ""
    try:
        for line in process.stdout:
            if (alive := link()) is not None:
                alive._heard(line.decode(errors="replace").rstrip("\n"))
                del alive
        trouble = process.stderr.read().decode(errors="replace").strip()
        code = process.wait()
    finally:  # whatever happened, nobody waits for this writer any more
        process.stdout.close()
        process.stderr.close()
        if (alive := link()) is not None:
            alive._ended(code, trouble)


def _why_it_ended(code: int, trouble: str) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    last = trouble.splitlines()[-1] if trouble else "no reason given"
    return f"exit code {code}: {last}"


_LINKS: dict[tuple[Path, int], WriterLink] = {}
_LINKS_LOCK = threading.Lock()


def link_to(path: Path) -> WriterLink:
    """The link to ``path``'s writer in this process: the one it has (a failed one too: the
    process goes on without history, as it was told), or a new one. A forked child gets
    its own: the parent's pipe is the parent's."""
    key = (path, os.getpid())
    with _LINKS_LOCK:
        link = _LINKS.get(key)
        if link is None or link.closed:
            link = _LINKS[key] = WriterLink(path)
        return link


def close_all(timeout_s: float = 30) -> None:
    """Close every link: each writer commits what it was sent, and ends (at exit, and
    between tests)."""
    with _LINKS_LOCK:
        links = list(_LINKS.values())
        _LINKS.clear()
    try:
        for link in links:
            link.close(timeout_s)
    except KeyboardInterrupt:  # at exit: the writers finish on their own
        pass


atexit.register(close_all)
