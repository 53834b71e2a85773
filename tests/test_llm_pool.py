"""A pool of LLM endpoints: least-busy routing, capacity, cooldown, failover, config.

Endpoints here are scripted backends (no network); the pool behind a real session over
fake Ollama servers is in the integration test at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from code_evolver.config import load_config, parse_config
from code_evolver.errors import BackendUnavailable, ConfigError, ModelMissing
from code_evolver.llm.base import Request, user
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.llm.pool import COOLDOWN_S, Endpoint, PoolBackend

REPO = Path(__file__).resolve().parent.parent
PROMPT = [user("hello")]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def answering(name: str) -> Callable[[Request], str]:
    return lambda request: f"from {name}"


def failing(error: Exception) -> Callable[[Request], str]:
    def fail(request: Request) -> str:
        raise error

    return fail


def pool(
    *specs: tuple[str, Callable[[Request], str], int], delay_s: float = 0.0, clock: Any = None
) -> tuple[PoolBackend, dict[str, ScriptedBackend]]:
    backends = {name: ScriptedBackend(fn, delay_s=delay_s) for name, fn, _ in specs}
    endpoints = [Endpoint(name, backends[name], capacity) for name, _, capacity in specs]
    return PoolBackend(endpoints, clock=clock or Clock()), backends


def test_calls_spread_over_the_least_busy_endpoints_within_their_capacity() -> None:
    the_pool, backends = pool(
        ("a", answering("a"), 2), ("b", answering("b"), 2), ("c", answering("c"), 2),
        delay_s=0.05,
    )  # fmt: skip
    assert the_pool.max_concurrency == 6

    async def main() -> list[str]:
        return await asyncio.gather(*(the_pool.complete(PROMPT) for _ in range(12)))

    replies = asyncio.run(main())
    assert sorted(replies) == sorted([f"from {n}" for n in "abc"] * 4)  # 4 each
    assert [backends[n].peak for n in "abc"] == [2, 2, 2]  # never above its capacity


def test_a_call_that_fails_before_any_token_moves_to_another_endpoint() -> None:
    the_pool, backends = pool(
        ("down", failing(BackendUnavailable("connection refused")), 1), ("up", answering("up"), 1)
    )
    assert asyncio.run(the_pool.complete(PROMPT)) == "from up"
    down = the_pool.endpoints[0]
    assert down.cooldown_until == COOLDOWN_S
    assert the_pool.max_concurrency == 1  # its capacity left the gate while it cools down
    asyncio.run(the_pool.complete(PROMPT))
    assert len(backends["down"].requests) == 1  # not asked again while cooling down


def test_a_cooled_endpoint_is_probed_by_the_next_call_after_its_cooldown() -> None:
    clock = Clock()
    replies: list[str | Exception] = [BackendUnavailable("502 bad gateway"), "back"]

    def flaky(request: Request) -> str:
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    the_pool, _ = pool(("flaky", flaky, 1), ("steady", answering("steady"), 1), clock=clock)
    the_pool.endpoints[1].latency_s = 9.0  # slower: the flaky one is preferred when healthy
    assert asyncio.run(the_pool.complete(PROMPT)) == "from steady"
    flaky_endpoint = the_pool.endpoints[0]
    assert flaky_endpoint.failures == 1
    clock.now = COOLDOWN_S + 0.1
    assert asyncio.run(the_pool.complete(PROMPT)) == "back"  # the probe succeeded
    assert flaky_endpoint.failures == 0


def test_cooldowns_double_and_are_capped() -> None:
    the_pool, _ = pool(("a", failing(BackendUnavailable("timed out")), 1))
    endpoint = the_pool.endpoints[0]
    clock = the_pool._clock
    waits = []
    for _ in range(8):
        clock.now = endpoint.cooldown_until
        with pytest.raises(BackendUnavailable):
            asyncio.run(the_pool.complete(PROMPT))
        waits.append(endpoint.cooldown_until - clock.now)
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0]
    assert waits[-1] == 60.0


def test_an_endpoint_without_the_model_is_left_out() -> None:
    the_pool, backends = pool(
        ("lacks", failing(ModelMissing("model 'x' not found; `ollama pull x`")), 1),
        ("has", answering("has"), 1),
    )
    the_pool.endpoints[1].latency_s = 9.0  # slower: the one without the model is tried first
    for _ in range(3):
        assert asyncio.run(the_pool.complete(PROMPT)) == "from has"
    assert len(backends["lacks"].requests) == 1
    assert the_pool.endpoints[0].missing


def test_with_every_endpoint_down_the_error_names_each_reason() -> None:
    the_pool, _ = pool(
        ("gpu", failing(BackendUnavailable("connection refused")), 1),
        ("cloud", failing(BackendUnavailable("503 overloaded")), 1),
    )
    with pytest.raises(BackendUnavailable) as caught:
        asyncio.run(the_pool.complete(PROMPT))
    message = str(caught.value)
    assert message.startswith("no LLM endpoint could answer")
    assert "gpu: connection refused" in message
    assert "cloud: 503 overloaded" in message
    assert BackendUnavailable.exit_code == 3


def test_a_stream_moves_before_its_first_piece_and_not_after() -> None:
    the_pool, _ = pool(
        ("down", failing(BackendUnavailable("connection refused")), 1), ("up", answering("up"), 1)
    )

    async def collect() -> str:
        return "".join([piece async for piece in the_pool.stream(PROMPT)])

    assert asyncio.run(collect()) == "from up"


def test_probes_at_start_cool_down_the_dead_and_leave_out_the_modelless() -> None:
    class Probed(ScriptedBackend):
        def __init__(self, problem: Exception | None) -> None:
            super().__init__(answering("probed"))
            self.problem = problem

        async def check(self) -> None:
            if self.problem is not None:
                raise self.problem

    endpoints = [
        Endpoint("dead", Probed(BackendUnavailable("connection refused")), 1),
        Endpoint("modelless", Probed(ModelMissing("model 'x' not found")), 1),
        Endpoint("fine", Probed(None), 2),
    ]
    the_pool = PoolBackend(endpoints, clock=Clock())
    asyncio.run(the_pool.check())
    assert the_pool.max_concurrency == 2
    assert endpoints[1].missing


# ---------------------------------------------------------------- config


def test_endpoints_are_validated_with_their_key_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"llm\.endpoints\.1\.host"):
        parse_config(
            "llm:\n  endpoints:\n"
            "    - {name: a, backend: ollama}\n"
            "    - {name: b, backend: ollama, host: 'http://x y'}\n"
        )
    with pytest.raises(ConfigError, match="a used twice"):
        parse_config(
            "llm:\n  endpoints:\n"
            "    - {name: a, backend: ollama}\n"
            "    - {name: a, backend: openai}\n"
        )
    with pytest.raises(ConfigError, match=r"no endpoint 'c' in llm\.endpoints \(a\)"):
        parse_config("llm:\n  endpoint: c\n  endpoints:\n    - {name: a, backend: ollama}\n")


def test_each_endpoint_gets_its_own_backend_settings() -> None:
    config = load_config(REPO / "config.yaml").with_llm(model=None)
    settings = parse_config(
        "llm:\n  model: m1\n  endpoints:\n"
        "    - {name: box, backend: ollama, host: '10.0.0.2:11434', max_concurrency: 3}\n"
        "    - {name: api, backend: openai, base_url: 'https://api.example/v1', model: m2,"
        " api_key_env: KEY}\n"
    ).llm
    box, api = (settings.for_endpoint(e) for e in settings.endpoints)
    assert (box.backend, box.model, box.ollama.host, box.ollama.max_concurrency) == (
        "ollama", "m1", "http://10.0.0.2:11434", 3,
    )  # fmt: skip
    assert (api.backend, api.model, api.openai.base_url, api.openai.api_key_env) == (
        "openai", "m2", "https://api.example/v1", "KEY",
    )  # fmt: skip
    assert config.llm.endpoints == []


# ---------------------------------------------------------------- real sockets


@pytest.mark.integration  # fake Ollama servers on 127.0.0.1, an evolve session over them
def test_a_session_spreads_its_steps_over_the_endpoints_and_survives_a_dead_one(
    tmp_path: Path,
) -> None:
    import json

    from click.testing import CliRunner
    from fake_ollama import FakeOllama, unused_port

    from code_evolver.cli import main_group

    dead = f"127.0.0.1:{unused_port()}"
    with (
        FakeOllama(reply="a joke", delay_s=0.2) as first,
        FakeOllama(reply="a joke", delay_s=0.2) as second,
    ):
        config = tmp_path / "config.yaml"
        config.write_text(
            "llm:\n  model: llama3.2\n  endpoints:\n"
            f"    - {{name: one, backend: ollama, host: '{first.url}'}}\n"
            f"    - {{name: two, backend: ollama, host: '{second.url}'}}\n"
            f"    - {{name: dead, backend: ollama, host: '{dead}'}}\n"
        )
        request = "write 4 different jokes about cats, dogs, birds and fish"
        ran = CliRunner().invoke(main_group, [request, "--config", str(config), "--json"])
        assert ran.exit_code == 0, ran.output
        document = json.loads(ran.stdout)
        assert document["model"] == "pool:llama3.2"
        assert all(s["status"] == "succeeded" for s in document["steps"].values())
        assert len(first.chats()) == len(second.chats()) == 2  # the dead one took none
        assert first.peak == second.peak == 1  # each at most its capacity
        assert document["peak_concurrency"] == 2  # the gate: the two live capacities
        served = sorted(
            call["tool"] for step in document["steps"].values() for call in step["calls"]
        )
        assert served == ["on one", "on one", "on two", "on two"]  # the endpoint of each call
        doctor = CliRunner().invoke(main_group, ["doctor", "--config", str(config), "--json"])
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
        assert checks["endpoint one"]["ok"]
        assert checks["endpoint two"]["ok"]
        assert not checks["endpoint dead"]["ok"]
        assert json.loads(doctor.stdout)["usable"]
        pinned = CliRunner().invoke(
            main_group, ["write a joke", "--config", str(config), "--endpoint", "two"]
        )
        assert pinned.exit_code == 0, pinned.output
        assert len(second.chats()) == 3


class BreaksMidAnswer(ScriptedBackend):
    """Streams the first piece of its answer, then loses the connection."""

    async def stream(self, messages: Any, **kwargs: Any) -> Any:
        yield "half an ans"
        raise BackendUnavailable("connection reset by peer")


def test_a_stream_that_breaks_mid_answer_starts_over_elsewhere_for_a_reader_that_can() -> None:
    from code_evolver.llm.pool import RESTART, RESTARTABLE

    endpoints = [
        Endpoint("breaks", BreaksMidAnswer(), 1),
        Endpoint("steady", ScriptedBackend(answering("steady"), chunk_size=4), 1),
    ]
    endpoints[1].latency_s = 9.0  # slower: the one that breaks is tried first
    the_pool = PoolBackend(endpoints, clock=Clock())

    async def read(restartable: bool) -> list[str]:
        token = RESTARTABLE.set(restartable)
        try:
            return [piece async for piece in the_pool.stream(PROMPT)]
        finally:
            RESTARTABLE.reset(token)

    pieces = asyncio.run(read(True))
    assert pieces[0] == "half an ans"
    assert pieces[1] is RESTART
    assert "".join(pieces[2:]) == "from steady"
    endpoints[0].cooldown_until = 0.0  # back in the running
    endpoints[0].failures = 0
    with pytest.raises(BackendUnavailable, match="connection reset"):
        asyncio.run(read(False))  # a reader that cannot start over gets the error


def test_an_llm_step_whose_server_breaks_mid_answer_keeps_only_the_new_answer() -> None:
    from code_evolver import events
    from code_evolver.events import EventBus
    from code_evolver.organizer import organize
    from code_evolver.plan import Plan
    from code_evolver.session import Session

    endpoints = [
        Endpoint("breaks", BreaksMidAnswer(), 1),
        Endpoint("steady", ScriptedBackend(answering("steady"), chunk_size=4), 1),
    ]
    endpoints[1].latency_s = 9.0
    seen: list[events.Event] = []
    the_pool = PoolBackend(endpoints, clock=Clock())
    session = Session(
        load_config(REPO / "config.yaml"), backend=the_pool, bus=EventBus(seen.append)
    )
    step = {"step_id": "s", "tool": "content_generator", "input": "write"}
    the_plan = Plan.from_data({"steps": [step]})

    async def main() -> Any:
        async with session:
            return await session.run(organize(the_plan, session.registry))

    result = asyncio.run(main())
    assert result.outputs == {"s": "from steady"}
    restarts = [e for e in seen if isinstance(e, events.StepOutput) and e.restart]
    assert len(restarts) == 1
    assert [c.tool for c in result.steps["s"].calls] == ["on breaks", "on steady"]
    assert [c.status.value for c in result.steps["s"].calls] == ["failed", "succeeded"]


def test_the_planner_asks_the_strongest_model_unless_told_otherwise() -> None:
    from code_evolver.session import Session

    text = (
        "llm:\n  endpoints:\n"
        "    - {name: laptop, backend: ollama, model: 'llama3.2:1b', max_concurrency: 2}\n"
        "    - {name: gpu, backend: ollama, model: 'qwen2.5:14b'}\n"
        "    - {name: cpu, backend: ollama, model: 'qwen2.5:7b'}\n"
    )
    assert parse_config(text).llm.strongest_endpoint() == "gpu"
    session = Session(parse_config(text))
    assert session.planner_llm.settings.endpoint == "gpu"
    assert session.llm.settings.endpoint is None  # the steps use every endpoint
    assert session.llm.max_concurrency == 4
    told = Session(parse_config(text + "planner: {endpoint: cpu}\n"))
    assert told.planner_llm.settings.endpoint == "cpu"
    with pytest.raises(ConfigError, match=r"planner\.endpoint: no endpoint 'tpu'"):
        Session(parse_config(text + "planner: {endpoint: tpu}\n"))


@pytest.mark.integration  # fake Ollama servers on 127.0.0.1
def test_endpoints_without_the_model_or_all_down_end_in_a_clear_exit_3(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from fake_ollama import FakeOllama, unused_port

    from code_evolver.cli import main_group

    dead = f"127.0.0.1:{unused_port()}"
    with FakeOllama(models=["other:latest"], reply="x") as lacking:
        config = tmp_path / "config.yaml"
        config.write_text(
            "llm:\n  model: llama3.2\n  endpoints:\n"
            f"    - {{name: lacking, backend: ollama, host: '{lacking.url}'}}\n"
            f"    - {{name: dead, backend: ollama, host: '{dead}'}}\n"
        )
        ran = CliRunner().invoke(main_group, ["write a joke", "--config", str(config)])
        assert ran.exit_code == 3, ran.output
        assert "lacking:" in ran.output
        assert "dead:" in ran.output
        assert lacking.chats() == []  # probed, found without the model, never asked
        doctor = CliRunner().invoke(main_group, ["doctor", "--config", str(config)])
        assert "ollama pull llama3.2" in doctor.output


def test_backend_given_on_the_command_line_is_used_instead_of_the_endpoints(
    tmp_path: Path,
) -> None:
    from code_evolver.cli.options import Options

    config = tmp_path / "config.yaml"
    config.write_text("llm:\n  endpoints:\n    - {name: a, backend: ollama}\n")
    assert Options(config_path=config).config().llm.endpoints
    assert Options(config_path=config, backend="embedded").config().llm.endpoints == []
    pinned = Options(config_path=config, backend="ollama", endpoint="a").config().llm
    assert pinned.endpoint == "a"
    assert pinned.endpoints


def test_waiting_calls_get_freed_slots_in_the_order_they_came() -> None:
    the_pool, backends = pool(("a", answering("a"), 1), ("b", answering("b"), 2), delay_s=0.01)

    async def main() -> list[str]:
        return await asyncio.gather(*(the_pool.complete(PROMPT) for _ in range(300)))

    replies = asyncio.run(main())
    assert len(replies) == 300
    assert backends["a"].peak == 1
    assert backends["b"].peak == 2
    assert not the_pool._waiters
    assert all(e.in_flight == 0 for e in the_pool.endpoints)


def test_a_waiting_call_cancelled_leaves_no_slot_taken() -> None:
    the_pool, _ = pool(("a", answering("a"), 1), delay_s=0.05)

    async def main() -> None:
        first = asyncio.ensure_future(the_pool.complete(PROMPT))
        waiting = asyncio.ensure_future(the_pool.complete(PROMPT))
        await asyncio.sleep(0.01)
        waiting.cancel()
        assert await first == "from a"
        await asyncio.gather(waiting, return_exceptions=True)
        assert await the_pool.complete(PROMPT) == "from a"  # the slot came back

    asyncio.run(main())
    assert the_pool.endpoints[0].in_flight == 0


@pytest.mark.integration  # fake Ollama servers on 127.0.0.1
def test_a_server_dying_mid_answer_hands_the_answer_to_another_over_real_sockets() -> None:
    from fake_ollama import FakeOllama

    from code_evolver.llm.ollama import OllamaBackend
    from code_evolver.llm.pool import RESTART, RESTARTABLE
    from code_evolver.llm.settings import OllamaSettings

    with FakeOllama() as dying, FakeOllama() as steady:
        dying.enqueue(["first ", "half ", "never sent"])
        dying.break_streams_after = 2
        steady.enqueue(["a whole ", "answer"])
        endpoints = [
            Endpoint("dying", OllamaBackend(OllamaSettings(host=dying.url)), 1),
            Endpoint("steady", OllamaBackend(OllamaSettings(host=steady.url)), 1),
        ]
        endpoints[1].latency_s = 9.0  # slower: the dying one is asked first
        the_pool = PoolBackend(endpoints)

        async def read() -> list[str]:
            token = RESTARTABLE.set(True)
            try:
                return [piece async for piece in the_pool.stream(PROMPT)]
            finally:
                RESTARTABLE.reset(token)
                await the_pool.close()

        pieces = asyncio.run(read())
    restart = pieces.index(RESTART)
    assert "".join(pieces[:restart]) == "first half "
    assert "".join(pieces[restart + 1 :]) == "a whole answer"
    assert endpoints[0].failures == 1  # cooling down


@pytest.mark.integration  # fake Ollama servers on 127.0.0.1
def test_a_server_that_comes_back_rejoins_after_its_cooldown() -> None:
    from fake_ollama import FakeOllama, unused_port

    from code_evolver.llm.ollama import OllamaBackend
    from code_evolver.llm.settings import OllamaSettings

    port = unused_port()
    clock = Clock()
    with FakeOllama(reply="from up") as up:
        endpoints = [
            Endpoint("back", OllamaBackend(OllamaSettings(host=f"127.0.0.1:{port}")), 1),
            Endpoint("up", OllamaBackend(OllamaSettings(host=up.url)), 1),
        ]
        endpoints[1].latency_s = 9.0  # slower: "back" is preferred whenever it is healthy
        the_pool = PoolBackend(endpoints, clock=clock)

        async def ask() -> str:
            return await the_pool.complete(PROMPT)

        async def both() -> tuple[str, str]:
            first = await ask()  # "back" refuses: the call moves to "up"
            assert endpoints[0].failures == 1
            with FakeOllama(reply="from back", port=port):
                clock.now = COOLDOWN_S + 0.1  # its cooldown is over
                second = await ask()
            await the_pool.close()
            return first, second

        assert asyncio.run(both()) == ("from up", "from back")
    assert endpoints[0].failures == 0


def test_an_endpoint_that_cannot_be_reached_names_its_own_entry_as_the_fix() -> None:
    from code_evolver.llm.service import create_pool

    settings = parse_config(
        "llm:\n  endpoints:\n"
        "    - {name: gpu, backend: ollama, host: 127.0.0.1:9, model: m}\n"
        "    - {name: api, backend: openai, base_url: http://127.0.0.1:9/v1, model: m}\n"
    ).llm
    made = create_pool(settings)
    assert isinstance(made, PoolBackend)
    for endpoint in made.endpoints:
        said = str(endpoint.backend._unavailable(ConnectionError()))  # type: ignore[attr-defined]
        assert f"fix llm.endpoints ({endpoint.name})" in said
        assert "OLLAMA_HOST" not in said
        assert "llm.openai" not in said


class Down(ScriptedBackend):
    async def check(self) -> None:
        raise BackendUnavailable("nothing at 127.0.0.1:9")


def test_when_the_first_probe_finds_no_endpoint_no_cooldown_is_told() -> None:
    made = PoolBackend(
        [Endpoint("a", Down(answering("a")), 1), Endpoint("b", Down(answering("b")), 1)]
    )
    with pytest.raises(BackendUnavailable) as info:
        asyncio.run(made.check())
    assert str(info.value) == (
        "no LLM endpoint could answer: a: nothing at 127.0.0.1:9; b: nothing at 127.0.0.1:9"
    )


def test_a_backend_named_in_the_config_is_used_instead_of_the_pool() -> None:
    from code_evolver.llm.service import choose_backend

    endpoints = "  endpoints:\n    - {name: a, backend: ollama}\n    - {name: b, backend: ollama}\n"
    pooled = parse_config(f"llm:\n{endpoints}").llm
    assert pooled.pooled
    assert asyncio.run(choose_backend(pooled)).backend == "pool"
    named = parse_config(f"llm:\n  backend: embedded\n{endpoints}").llm  # a project over home
    assert not named.pooled
    assert asyncio.run(choose_backend(named)).backend == "embedded"
    pinned = parse_config(f"llm:\n  backend: embedded\n  endpoint: b\n{endpoints}").llm
    assert pinned.pooled  # a pinned endpoint is still an endpoint of the pool
