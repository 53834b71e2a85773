"""Brokered mode: tool calls travel to the workflow over the inherited runtime channel."""

from __future__ import annotations

import itertools
import socket
import threading
from concurrent.futures import Future
from typing import Any

from node_runtime.errors import ToolCallError
from node_runtime.protocol import VERSION, decode, encode


class BrokeredClient:
    """Sends calls over the channel; a reader thread pairs replies with waiting futures."""

    def __init__(self, fd: int, token: str) -> None:
        self._sock = socket.socket(fileno=fd)
        self._send_lock = threading.Lock()
        self._pending: dict[int, tuple[str, Future[Any]]] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed: str | None = None
        self._send({"hello": token, "version": VERSION})
        threading.Thread(target=self._read, name="node-runtime-reader", daemon=True).start()

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
            "id": call_id,
            "tool": tool,
            "input": prompt,
            "params": params,
            "timeout_s": timeout_s,
        }
        self._send(request)
        return future

    def _send(self, message: dict[str, Any]) -> None:
        try:
            with self._send_lock:
                self._sock.sendall(encode(message))
        except OSError:
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

    def _deliver(self, message: dict[str, Any]) -> None:
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
