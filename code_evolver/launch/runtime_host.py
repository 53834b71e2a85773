"""The parent's end of the runtime channel: serves a child process's tool calls.

Each step attempt that runs a Python script gets its own socketpair and a fresh secret
(``node_runtime.protocol``). Every line from the child must carry that secret, so a script
holding another run's descriptor, or a process that inherited this one's (a subprocess of the
script, which never sees the secret), gets nothing: the channel hangs up on it. Every request is
submitted through the attempt's call channel (``code_evolver.calls``) and answered when done;
closing the channel when the attempt ends cuts the child off.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import secrets
import socket
from types import TracebackType
from typing import Any

from code_evolver.errors import EvolverError
from code_evolver.tools.base import Caller
from node_runtime.protocol import ENV_FD, ENV_TOKEN, MAX_MESSAGE, VERSION, decode, encode


class RuntimeChannel:
    """``async with RuntimeChannel(call.calls) as channel:`` then start the child with
    ``channel.env`` and ``channel.pass_fds``. With no caller it offers nothing (the child then
    runs its tool calls itself)."""

    def __init__(self, caller: Caller | None) -> None:
        self.caller = caller
        self.env: dict[str, str] = {}
        self.pass_fds: tuple[int, ...] = ()
        self._parent: socket.socket | None = None
        self._child: socket.socket | None = None
        self._server: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RuntimeChannel:
        if self.caller is None:
            return self
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._parent, self._child = parent, child
        token = secrets.token_urlsafe(24)
        fd = child.fileno()
        self.env = {ENV_FD: str(fd), ENV_TOKEN: token}
        self.pass_fds = (fd,)
        self._server = asyncio.ensure_future(serve(parent, token, self.caller))
        return self

    def child_started(self) -> None:
        """The child holds its end now: the parent's copy only costs a descriptor."""
        if self._child is not None:
            self._child.close()
            self._child = None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._server is not None:
                self._server.cancel()
                # wait() raises only if *we* are cancelled meanwhile, which must propagate.
                await asyncio.wait([self._server])
                if not self._server.cancelled():
                    self._server.exception()  # seen: a broken channel is not this step's error
        finally:
            self._close()

    def _close(self) -> None:
        for sock in (self._parent, self._child):
            if sock is not None:
                sock.close()


async def serve(sock: socket.socket, token: str, caller: Caller) -> None:
    """Answer the child's calls until it hangs up or the attempt ends (cancellation)."""
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_MESSAGE)
    handlers: dict[Any, asyncio.Task[None]] = {}
    try:
        hello = await reader.readline()
        if not hello:  # the child never used the channel: nobody to answer
            return
        if not _authentic(hello, token):
            await _refuse(writer, "this channel belongs to another run or step")
            return
        while line := await reader.readline():
            try:
                request = decode(line)
            except ValueError:
                continue
            if not _signed(request, token):
                # Someone without the secret writes on the channel (a process that inherited
                # the descriptor): the channel is no longer the script's alone.
                await _refuse(writer, "a message without this step's secret arrived")
                return
            if "cancel" in request:  # the script gave up on a call
                if (handler := handlers.get(request["cancel"])) is not None:
                    handler.cancel()
                continue
            call_id = request.get("id")
            handler = asyncio.ensure_future(_answer(request, caller, writer))
            handlers[call_id] = handler
            handler.add_done_callback(functools.partial(_forget, handlers, call_id))
    finally:
        for handler in list(handlers.values()):
            handler.cancel()
        writer.close()


def _forget(handlers: dict[Any, asyncio.Task[None]], key: Any, _: object) -> None:
    handlers.pop(key, None)


def _authentic(line: bytes, token: str) -> bool:
    try:
        hello = decode(line)
    except ValueError:
        return False
    given = str(hello.get("hello", ""))
    return hello.get("version") == VERSION and hmac.compare_digest(given.encode(), token.encode())


def _signed(message: dict[str, Any], token: str) -> bool:
    """Every message after the hello carries the secret too (``node_runtime.protocol``)."""
    return hmac.compare_digest(str(message.get("token", "")).encode(), token.encode())


async def _refuse(writer: asyncio.StreamWriter, why: str) -> None:
    """Say why before hanging up, so the script can tell a refusal from a crash."""
    with contextlib.suppress(ConnectionError):
        writer.write(encode({"refused": why}))
        await writer.drain()


async def _answer(request: dict[str, Any], caller: Caller, writer: asyncio.StreamWriter) -> None:
    """Run one call and always answer it (a reply that cannot be encoded becomes an error)."""
    reply: dict[str, Any] = {"id": request.get("id")}
    try:
        params = request.get("params") or {}
        timeout_s = request.get("timeout_s")
        output = await caller.call(
            str(request.get("tool", "")),
            str(request.get("input", "")),
            params if isinstance(params, dict) else {},
            float(timeout_s) if isinstance(timeout_s, int | float) else None,
        )
        reply |= {"ok": True, "output": output}
    except EvolverError as exc:
        reply |= {"ok": False, "error": str(exc), "type": type(exc).__name__}
    except Exception as exc:
        reply |= {"ok": False, "error": f"{type(exc).__name__}: {exc}", "type": "ToolFailed"}
    try:
        message = encode(reply)
    except (TypeError, ValueError) as exc:
        error = f"the tool's output cannot be sent as JSON: {exc}"
        message = encode({"id": reply["id"], "ok": False, "error": error, "type": "ToolFailed"})
    writer.write(message)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
