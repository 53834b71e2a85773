"""A local stand-in for an Ollama server, for testing the ollama backend over a real socket.

It follows Ollama's documented API (https://github.com/ollama/ollama/blob/main/docs/api.md)
as far as the backend uses it:

- ``GET /api/tags`` lists the installed models;
- ``POST /api/chat`` answers with the next scripted reply, as one JSON object when the request
  says ``"stream": false`` and otherwise (Ollama's default is to stream) as NDJSON lines, one
  per piece, ending with a ``"done": true`` line;
- a chat for a model that is not installed gets 404 ``{"error": "model 'x' not found"}``;
  as in Ollama, a name without a tag means the ``latest`` tag (``llama3.2`` is
  ``llama3.2:latest``; it is not ``llama3.2:1b``).

Every request is recorded (method, path, headers, parsed JSON body) so a test can assert what
the client sent: ``format``, ``options``, ``keep_alive``, ``stream``.

    with FakeOllama(models=["llama3.2:latest"]) as server:
        server.enqueue("whole reply", ["streamed ", "in ", "pieces"])
        backend = OllamaBackend(OllamaSettings(host=server.url))
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

CREATED_AT = "2024-07-22T20:33:28.123648Z"


@dataclass(frozen=True)
class Recorded:
    """One request as the fake server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


def ollama_name(model: str) -> str:
    """The installed name a request's model refers to: Ollama's tag defaults to ``latest``."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


def unused_port() -> int:
    """A localhost port that nothing listens on (bound once by the OS, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FakeOllama:
    """An Ollama-compatible HTTP server on 127.0.0.1 in a background thread."""

    def __init__(
        self,
        models: Iterable[str] = ("llama3.2:latest",),
        *,
        reply: str | None = None,
        delay_s: float = 0.0,
        serial: bool = False,
        nodelay: bool = False,
        port: int = 0,
    ) -> None:
        """``reply``: the answer to every chat once the scripted ones are used up;
        ``delay_s``: how long each chat takes (``peak`` counts chats served at once);
        ``serial``: serve one chat at a time, as Ollama with OLLAMA_NUM_PARALLEL=1 does (a
        chat that arrives meanwhile waits its turn); ``nodelay``: send with TCP_NODELAY, as
        Ollama (Go) does, so that a reply's body does not wait ~40 ms behind its headers for
        the client's delayed ACK (for timing it); ``port``: listen there (0: any free one)."""
        self.models = list(models)
        self.reply = reply
        self.delay_s = delay_s
        self.nodelay = nodelay
        self.break_streams_after: int | None = None
        """Set: a streamed reply stops after this many pieces and the connection drops (a
        server dying mid-answer)."""
        self._serving: AbstractContextManager[Any] = threading.Lock() if serial else nullcontext()
        self.active = 0
        self.peak = 0
        self.requests: list[Recorded] = []
        self._replies: deque[list[str]] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def enqueue(self, *replies: str | Sequence[str]) -> None:
        """Replies for the next chats, in order; a list is streamed one piece per line."""
        with self._lock:
            for reply in replies:
                self._replies.append([reply] if isinstance(reply, str) else list(reply))

    def chats(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/api/chat"]

    def start(self) -> FakeOllama:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_reply(self) -> list[str] | None:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
            return [self.reply] if self.reply is not None else None

    def _tags(self) -> dict[str, Any]:
        return {
            "models": [
                {
                    "name": name,
                    "model": name,
                    "modified_at": CREATED_AT,
                    "size": 2019393189,
                    "digest": f"{index:064x}",
                    "details": {
                        "parent_model": "",
                        "format": "gguf",
                        "family": "llama",
                        "families": ["llama"],
                        "parameter_size": "3.2B",
                        "quantization_level": "Q4_K_M",
                    },
                }
                for index, name in enumerate(self.models)
            ]
        }


def _chunk(model: str, content: str, *, done: bool) -> dict[str, Any]:
    line: dict[str, Any] = {
        "model": model,
        "created_at": CREATED_AT,
        "message": {"role": "assistant", "content": content},
        "done": done,
    }
    if done:
        line |= {"done_reason": "stop", "total_duration": 1000, "eval_count": 1}
    return line


def _handler_for(fake: FakeOllama) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, like the real server

        def setup(self) -> None:
            super().setup()
            if fake.nodelay:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test output is not the place for an access log."""

        def do_GET(self) -> None:
            self._record(None)
            if self.path == "/api/tags":
                self._send_json(200, fake._tags())
            else:
                self._send_json(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                self._record(raw.decode(errors="replace"))
                self._send_json(400, {"error": "invalid JSON body"})
                return
            self._record(body)
            if self.path != "/api/chat":
                self._send_json(404, {"error": "not found"})
                return
            model = str(body.get("model") or "")
            if ollama_name(model) not in fake.models:
                self._send_json(404, {"error": f"model '{model}' not found"})
                return
            pieces = fake._next_reply()
            if pieces is None:
                self._send_json(500, {"error": "FakeOllama has no scripted reply left"})
                return
            with fake._serving:
                with fake._lock:
                    fake.active += 1
                    fake.peak = max(fake.peak, fake.active)
                try:
                    time.sleep(fake.delay_s)
                    if body.get("stream", True):
                        self._send_stream(model, pieces)
                    else:
                        self._send_json(200, _chunk(model, "".join(pieces), done=True))
                finally:
                    with fake._lock:
                        fake.active -= 1

        def _record(self, body: Any) -> None:
            fake._record(Recorded(self.command, self.path, dict(self.headers.items()), body))

        def _send_json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_stream(self, model: str, pieces: list[str]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            lines = [_chunk(model, piece, done=False) for piece in pieces]
            lines.append(_chunk(model, "", done=True))
            for sent, line in enumerate(lines):
                if fake.break_streams_after is not None and sent >= fake.break_streams_after:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                data = json.dumps(line).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

    return Handler
