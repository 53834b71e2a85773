"""Brokered mode: tool calls travel to the workflow over the inherited runtime channel."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import stat
import threading
from concurrent.futures import Future
from typing import Any

from node_runtime.errors import ToolCallError
from node_runtime.protocol import MAX_MESSAGE, VERSION, decode, encode

_READER_GRACE_S = 2.0
"""How long a failed send waits for the reader to deliver the workflow's last words."""


class BrokeredClient:
    """Sends calls over the channel; a reader thread pairs replies with waiting futures."""

    def __init__(self, fd: int, token: str) -> None:
        """Raises ToolCallError when ``fd`` is not the runtime channel (e.g. a child process
        of the script inherited the variables but not the descriptor)."""
        if not _is_unix_socket(fd):
            raise ToolCallError(
                "no runtime channel here: only the script the workflow started can call tools "
                "through it",
                kind="ChannelClosed",
            )
        self._sock = socket.socket(fileno=fd)
        self._send_lock = threading.Lock()
        self._pending: dict[int, tuple[str, Future[Any]]] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed: str | None = None
        self._token = token
        self._reader_done = threading.Event()
        self._reader = threading.Thread(target=self._read, name="node-runtime-reader", daemon=True)
        self._reader.start()
        self._send({"hello": token, "version": VERSION})

    def submit(
        self, tool: str, prompt: str, params: dict[str, Any], timeout_s: float | None
    ) -> Future[Any]:
        future: Future[Any] = Future()
        call_id = next(self._ids)
        with self._pending_lock:
            if self._closed is not None:
                future.set_exception(ToolCallError(self._closed, tool=tool, kind="ChannelClosed"))
                return future
            self._pending[call_id] = (tool, future)
        request = {
            "token": self._token,
            "id": call_id,
            "tool": tool,
            "input": prompt,
            "params": params,
            "timeout_s": timeout_s,
        }
        try:
            message = encode(request)
        except (TypeError, ValueError) as exc:
            message = b""
            problem = f"{tool}: params must be JSON values ({exc})"
        else:
            problem = f"{tool}: the call is too large to send" if len(message) > MAX_MESSAGE else ""
        if problem:
            with self._pending_lock:
                self._pending.pop(call_id, None)
            future.set_exception(ToolCallError(problem, tool=tool, kind="ToolFailed"))
            return future
        future.add_done_callback(lambda f: self._abandon(call_id) if f.cancelled() else None)
        self._send_bytes(message)
        return future

    def _abandon(self, call_id: int) -> None:
        """The script stopped waiting for a call: the workflow may stop running it."""
        with self._pending_lock:
            known = self._pending.pop(call_id, None) is not None
        if known:
            self._send({"token": self._token, "cancel": call_id})

    def _send(self, message: dict[str, Any]) -> None:
        self._send_bytes(encode(message))

    def _send_bytes(self, message: bytes) -> None:
        try:
            with self._send_lock:
                self._sock.sendall(message)
        except OSError:
            # The workflow hung up. If it said why first (a refusal), that reason must win over
            # this generic one: let the reader deliver what is still in the socket.
            if self._reader.is_alive() and threading.current_thread() is not self._reader:
                self._reader_done.wait(_READER_GRACE_S)
            self._shut("the workflow that ran this script is gone; no more tool calls")

    def _read(self) -> None:
        reason = "the workflow step has ended; tool calls are no longer possible"
        try:
            with self._sock.makefile("rb") as lines:
                for line in lines:
                    self._deliver(decode(line))
        except (OSError, ValueError):
            reason = "the runtime channel broke; no more tool calls"
        self._shut(reason)
        self._reader_done.set()

    def _deliver(self, message: dict[str, Any]) -> None:
        if "refused" in message:
            self._shut(f"the workflow refused the channel: {message['refused']}")
            return
        with self._pending_lock:
            entry = self._pending.pop(message.get("id", -1), None)
        if entry is None:
            return
        tool, future = entry
        if message.get("ok"):
            future.set_result(message.get("output", ""))
        else:
            error = str(message.get("error") or "the call failed")
            future.set_exception(
                ToolCallError(f"{tool}: {error}", tool=tool, kind=str(message.get("type", "")))
            )

    def _shut(self, reason: str) -> None:
        with self._pending_lock:
            if self._closed is None:
                self._closed = reason
            pending, self._pending = self._pending, {}
        for tool, future in pending.values():
            if not future.done():
                future.set_exception(ToolCallError(reason, tool=tool, kind="ChannelClosed"))

    def close(self) -> None:
        """Hang up: calls still waiting fail, later ones are refused."""
        self._shut("the script closed its runtime channel")
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(_READER_GRACE_S)
        self._sock.close()

    def close_after_fork(self) -> None:
        """In a forked child: this socket belongs to the parent process; never touch it."""
        with self._pending_lock:
            self._closed = (
                "tool calls are possible only from the process the workflow started, "
                "not from a forked child"
            )
            self._pending = {}


def _is_unix_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
