"""The ollama backend against a fake Ollama server on a real local socket (see fake_ollama.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from fake_ollama import FakeOllama, unused_port

from code_evolver.errors import BackendError, BackendUnavailable, ModelMissing
from code_evolver.llm.base import user
from code_evolver.llm.ollama import OllamaBackend
from code_evolver.llm.service import choose_backend, create_backend
from code_evolver.llm.settings import LlmSettings, OllamaSettings

pytestmark = pytest.mark.integration  # a real HTTP server on a real socket

T = TypeVar("T")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 20}},
    "required": ["answer"],
    "additionalProperties": False,
}
PROMPT = [user("What is 2 + 2?")]


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(models=["llama3.2:latest", "qwen2.5:0.5b"]) as fake:
        yield fake


def using(backend: OllamaBackend, use: Callable[[OllamaBackend], Awaitable[T]]) -> T:
    """Run ``use(backend)`` in a fresh event loop and close the backend's connections after."""

    async def main() -> T:
        try:
            return await use(backend)
        finally:
            await backend.close()

    return asyncio.run(main())


async def collect(backend: OllamaBackend, **kwargs: Any) -> list[str]:
    return [piece async for piece in backend.stream(PROMPT, **kwargs)]


def test_complete_returns_the_reply_and_sends_format_options_and_keep_alive(
    server: FakeOllama,
) -> None:
    server.enqueue('{"answer":"4"}')
    backend = OllamaBackend(OllamaSettings(host=server.url, keep_alive="10m"))

    text = using(
        backend, lambda b: b.complete(PROMPT, schema=SCHEMA, max_tokens=32, temperature=0.0)
    )

    assert text == '{"answer":"4"}'
    [chat] = server.chats()
    assert chat.method == "POST"
    assert chat.body["model"] == "llama3.2"
    assert chat.body["messages"] == [{"role": "user", "content": "What is 2 + 2?"}]
    assert chat.body["format"] == SCHEMA
    assert chat.body["options"] == {"num_ctx": 8192, "num_predict": 32, "temperature": 0.0}
    assert chat.body["keep_alive"] == "10m"
    assert chat.body["stream"] is False


def test_complete_without_schema_or_limits_sends_neither(server: FakeOllama) -> None:
    server.enqueue("four")
    backend = OllamaBackend(OllamaSettings(host=server.url, keep_alive=None, context_tokens=None))

    assert using(backend, lambda b: b.complete(PROMPT)) == "four"

    [chat] = server.chats()
    assert "format" not in chat.body
    assert "keep_alive" not in chat.body
    assert not chat.body.get("options")


def test_stream_yields_the_pieces_in_order(server: FakeOllama) -> None:
    server.enqueue(["Two ", "plus ", "two ", "is ", "four."])
    backend = OllamaBackend(OllamaSettings(host=server.url))

    pieces = using(backend, lambda b: collect(b, schema=SCHEMA, max_tokens=8))

    assert pieces == ["Two ", "plus ", "two ", "is ", "four."]
    [chat] = server.chats()
    assert chat.body["stream"] is True
    assert chat.body["format"] == SCHEMA
    assert chat.body["options"] == {"num_ctx": 8192, "num_predict": 8}


def test_one_backend_serves_several_calls_over_its_connection(server: FakeOllama) -> None:
    server.enqueue("one", ["t", "wo"], "three")
    backend = OllamaBackend(OllamaSettings(host=server.url))

    async def three_calls(b: OllamaBackend) -> list[str]:
        first = await b.complete(PROMPT)
        second = "".join(await collect(b))
        return [first, second, await b.complete(PROMPT)]

    assert using(backend, three_calls) == ["one", "two", "three"]
    assert [c.body["stream"] for c in server.chats()] == [False, True, False]


def test_the_model_argument_overrides_the_settings(server: FakeOllama) -> None:
    server.enqueue("hi")
    settings = LlmSettings(model="qwen2.5:0.5b", ollama=OllamaSettings(host=server.url))
    backend = create_backend("ollama", settings)
    assert isinstance(backend, OllamaBackend)

    assert using(backend, lambda b: b.complete(PROMPT)) == "hi"
    assert server.chats()[0].body["model"] == "qwen2.5:0.5b"


@pytest.mark.parametrize("how", ["complete", "stream", "check"])
def test_a_missing_model_raises_model_missing_with_the_pull_command(
    server: FakeOllama, how: str
) -> None:
    backend = OllamaBackend(OllamaSettings(host=server.url, model="mistral"))
    calls: dict[str, Callable[[OllamaBackend], Awaitable[object]]] = {
        "complete": lambda b: b.complete(PROMPT),
        "stream": collect,
        "check": lambda b: b.check(),
    }

    with pytest.raises(ModelMissing, match=r"`ollama pull mistral`"):
        using(backend, calls[how])
    if how != "check":  # check only lists the models, it never chats
        assert server.chats()[0].body["model"] == "mistral"


def test_check_passes_when_the_model_is_installed(server: FakeOllama) -> None:
    backend = OllamaBackend(OllamaSettings(host=server.url))

    using(backend, lambda b: b.check())

    assert [(r.method, r.path) for r in server.requests] == [("GET", "/api/tags")]


def test_a_server_error_is_a_backend_error_not_a_missing_model(server: FakeOllama) -> None:
    backend = OllamaBackend(OllamaSettings(host=server.url))  # nothing enqueued: a 500

    with pytest.raises(BackendError, match="500") as caught:
        using(backend, lambda b: b.complete(PROMPT))
    assert type(caught.value) is BackendError


@pytest.mark.parametrize("how", ["complete", "stream", "installed_models"])
def test_nothing_listening_raises_backend_unavailable_with_the_fix(how: str) -> None:
    host = f"http://127.0.0.1:{unused_port()}"
    backend = OllamaBackend(OllamaSettings(host=host, timeout_s=5))
    calls: dict[str, Callable[[OllamaBackend], Awaitable[object]]] = {
        "complete": lambda b: b.complete(PROMPT),
        "stream": collect,
        "installed_models": lambda b: b.installed_models(),
    }

    with pytest.raises(BackendUnavailable) as caught:
        using(backend, calls[how])
    message = str(caught.value)
    assert host in message
    assert "`ollama serve`" in message
    assert "--backend embedded" in message


def test_installed_models_lists_what_the_server_has(server: FakeOllama) -> None:
    backend = OllamaBackend(OllamaSettings(host=server.url))

    assert using(backend, lambda b: b.installed_models()) == ["llama3.2:latest", "qwen2.5:0.5b"]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("llama3.2", True),  # no tag: matches llama3.2:latest
        ("llama3.2:latest", True),
        ("llama3.2:1b", False),  # a tag must match exactly
        ("llama3", False),  # a prefix of the name is another model
        ("qwen2.5:0.5b", True),
        ("mistral", False),
    ],
)
def test_has_model_follows_model_matches(server: FakeOllama, model: str, expected: bool) -> None:
    backend = OllamaBackend(OllamaSettings(host=server.url, model=model))

    assert using(backend, lambda b: b.has_model()) is expected


@pytest.mark.parametrize(
    "model",
    [
        "llama3.2",
        "llama3.2:latest",
        "llama3.2:1b",
        "qwen2.5:0.5b",
        "mistral",
        "qwen2.5",  # Ollama reads it as qwen2.5:latest, which is not installed
    ],
)
def test_has_model_agrees_with_what_the_server_serves(server: FakeOllama, model: str) -> None:
    server.enqueue("ok")
    backend = OllamaBackend(OllamaSettings(host=server.url, model=model))

    async def has_then_chat(b: OllamaBackend) -> tuple[bool, bool]:
        has = await b.has_model()
        try:
            await b.complete(PROMPT)
        except ModelMissing:
            return has, False
        return has, True

    has, served = using(backend, has_then_chat)
    assert has is served


@pytest.mark.parametrize("with_scheme", [True, False])
def test_ollama_host_is_read_from_the_environment_when_settings_have_none(
    server: FakeOllama, monkeypatch: pytest.MonkeyPatch, with_scheme: bool
) -> None:
    address = server.url if with_scheme else server.url.removeprefix("http://")
    monkeypatch.setenv("OLLAMA_HOST", address)
    server.enqueue("from the env host")
    backend = OllamaBackend(OllamaSettings())

    assert backend.host == server.url
    assert using(backend, lambda b: b.complete(PROMPT)) == "from the env host"
    assert len(server.chats()) == 1


def test_settings_host_wins_over_ollama_host(
    server: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"http://127.0.0.1:{unused_port()}")
    backend = OllamaBackend(OllamaSettings(host=server.url))

    assert backend.host == server.url
    assert using(backend, lambda b: b.installed_models())


def test_auto_picks_ollama_when_it_has_the_model(server: FakeOllama) -> None:
    settings = LlmSettings(ollama=OllamaSettings(host=server.url))

    choice = asyncio.run(choose_backend(settings))

    assert choice.backend == "ollama"
    assert server.url in choice.reasons[0]
    assert server.chats() == []  # probing lists models, it never generates


def test_auto_picks_embedded_when_ollama_lacks_the_model(server: FakeOllama) -> None:
    settings = LlmSettings(model="mistral", ollama=OllamaSettings(host=server.url))

    choice = asyncio.run(choose_backend(settings))

    assert choice.backend == "embedded"
    assert "`ollama pull mistral`" in choice.reasons[0]


def test_auto_does_not_pick_ollama_for_an_untagged_name_it_lacks(server: FakeOllama) -> None:
    settings = LlmSettings(model="qwen2.5", ollama=OllamaSettings(host=server.url))  # :0.5b only

    choice = asyncio.run(choose_backend(settings))

    assert choice.backend == "embedded"


def test_auto_picks_embedded_when_nothing_listens() -> None:
    host = f"http://127.0.0.1:{unused_port()}"
    settings = LlmSettings(ollama=OllamaSettings(host=host))

    choice = asyncio.run(choose_backend(settings))

    assert choice.backend == "embedded"
    assert choice.reasons == [f"Ollama not used: nothing answers at {host}"]  # no fix: unneeded


def test_auto_reads_ollama_host_from_the_environment(
    server: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", server.url)

    choice = asyncio.run(choose_backend(LlmSettings()))

    assert choice.backend == "ollama"
    assert [r.path for r in server.requests] == ["/api/tags"]


def test_a_plain_http_server_needs_no_certificates_and_an_https_one_keeps_them() -> None:
    from code_evolver.llm.addresses import verify_tls

    assert not verify_tls("http://127.0.0.1:11434")
    assert not verify_tls("HTTP://box:11434")
    assert verify_tls("https://ollama.example.com")  # verified as usual
