"""The chat: requests and follow-ups, slash commands, the prompt-toolkit REPL, Ctrl-C and
Ctrl-D, with the scripted model."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console
from support import echo_model

from code_evolver.chat.conversation import Conversation
from code_evolver.chat.instant_prompt import PROMPT
from code_evolver.chat.repl import history_path, run_terminal
from code_evolver.chat.session import ChatSession
from code_evolver.cli import main_group
from code_evolver.config import load_config
from code_evolver.errors import BackendError
from code_evolver.llm import service
from code_evolver.llm.base import Request
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.result import RunStatus, StepStatus

REPO = Path(__file__).resolve().parent.parent
CONFIG = str(REPO / "config.yaml")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EVOLVE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> ScriptedBackend:
    scripted = ScriptedBackend(echo_model)
    monkeypatch.setattr(service, "create_backend", lambda name, settings: scripted)

    async def embedded(settings: Any) -> service.Choice:
        return service.Choice("embedded", ["test"])

    monkeypatch.setattr(service, "choose_backend", embedded)
    return scripted


def chat(*lines: str) -> Result:
    return CliRunner().invoke(
        main_group, ["chat", "--config", CONFIG], input="".join(f"{line}\n" for line in lines)
    )


def prompts(backend: ScriptedBackend) -> list[str]:
    return [m["content"] for r in backend.requests for m in r.messages]


# ---------------------------------------------------------------- requests and follow-ups


def test_a_follow_up_works_on_the_last_answer(backend: ScriptedBackend) -> None:
    result = chat("write a haiku about rain", "now translate it to french", "/quit")
    assert result.exit_code == 0, result.output
    haiku = next(p for p in prompts(backend) if "haiku about rain" in p)
    translated = prompts(backend)[-1]
    assert "reply to" in translated  # the echo model's answer to the haiku request
    assert haiku != translated


def test_a_follow_up_without_a_pronoun_asks_for_text_then_takes_the_last_answer(
    backend: ScriptedBackend,
) -> None:
    first = chat("translate to french")
    assert "error: what text should 'translate to french' translate?" in first.output
    assert "there is none yet" in first.output
    assert "pipe it in" not in first.output  # the shell's advice fits no chat
    result = chat("write a joke about owls", "translate to french")
    assert result.exit_code == 0
    assert "joke about owls" in prompts(backend)[-1]


def test_last_names_the_last_answer_in_any_request(backend: ScriptedBackend) -> None:
    result = chat("write a joke about owls", "summarize {last}")
    assert result.exit_code == 0
    assert "joke about owls" in prompts(backend)[-1]
    assert "error: {last} is the last answer, and there is none yet" in chat("shout {last}").output


# ---------------------------------------------------------------- slash commands


def test_slash_commands(backend: ScriptedBackend, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps({"steps": [{"step_id": "s", "tool": "combine", "input": "<{input}>"}]})
    )
    transcript = tmp_path / "chat.md"
    result = chat(
        "/help",
        "write a joke about owls",
        "/plan write a poem and translate it to german",
        f"/run {plan}",
        "/tools",
        "/backend",
        "/model",
        "/config",
        "/context",
        "/clear",
        "/context",
        f"/save {transcript}",
        "/contxt",
        "/quit",
        "write something never run",
    )
    out = result.output
    assert result.exit_code == 0, out
    assert "/plan REQUEST" in out  # /help
    assert "/save FILE" in out
    assert "└── wave 2" in out  # /plan shows the waves
    assert "<reply to: Write a joke about owls.>" in out  # /run: {input} is the last answer
    assert "translator" in out  # /tools
    assert "backend: embedded:SmolLM2-135M-Instruct.Q4_1.gguf (test)" in out
    assert "model: embedded:SmolLM2-135M-Instruct.Q4_1.gguf" in out
    assert "llm:        # from " in out  # /config, with where each value came from
    assert "1 turns, " in out  # /context
    assert "context cleared" in out
    assert "No context yet" in out
    assert "unknown command /contxt (did you mean 'context'?)" in out
    assert "never run" not in "".join(prompts(backend))  # /quit ended the chat
    saved = transcript.read_text()
    assert saved.startswith("# Code Evolver chat")
    assert "## > write a joke about owls" in saved


def test_a_user_error_does_not_end_the_chat(backend: ScriptedBackend) -> None:
    result = chat("/run /nonexistent/plan.json", "write a joke about owls")
    assert result.exit_code == 0
    assert "error:" in result.output
    assert any("joke about owls" in p for p in prompts(backend))


# ---------------------------------------------------------------- the REPL


def repl(chat_session: ChatSession, keys: str) -> None:
    async def main() -> None:
        with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
            pipe.send_text(keys)
            await run_terminal(lambda: chat_session, input=pipe, output=DummyOutput())
        await chat_session.close()

    asyncio.run(main())


def consoles() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=100, force_terminal=False, color_system=None), buffer


def session_with(backend: ScriptedBackend) -> tuple[ChatSession, io.StringIO]:
    console, buffer = consoles()
    return ChatSession(load_config(CONFIG), console, console, backend=backend), buffer


def test_the_repl_runs_requests_and_keeps_its_history(home: Path) -> None:
    backend = ScriptedBackend(echo_model)
    first, output = session_with(backend)
    repl(first, "write a joke about owls\r\x03now summarize it\r/quit\r")  # \x03: Ctrl-C
    assert "reply to: Write a joke about owls." in output.getvalue()
    assert "reply to: Write a joke about owls." in prompts(backend)[-1]  # the follow-up's text
    path = history_path()
    assert path is not None
    saved = path.read_text()
    assert "write a joke about owls" in saved
    assert "/quit" in saved
    second, _ = session_with(ScriptedBackend(echo_model))
    repl(second, "\x04")  # Ctrl-D leaves at once
    from prompt_toolkit.history import FileHistory

    assert "now summarize it" in list(FileHistory(str(path)).load_history_strings())


def test_completion_of_commands_and_tools() -> None:
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from code_evolver.chat.repl import _completer

    chat_session, _ = session_with(ScriptedBackend(echo_model))
    completer = _completer(lambda: chat_session)
    commands = [c.text for c in completer.get_completions(Document("/co"), CompleteEvent())]
    assert commands == ["/config", "/context"]
    tools = [c.text for c in completer.get_completions(Document("use transl"), CompleteEvent())]
    assert "translator" in tools


def test_ctrl_c_stops_the_running_request_and_the_next_one_runs() -> None:
    def slow(request: Request) -> str:
        return echo_model(request)

    backend = ScriptedBackend(slow, delay_s=0.3, chunk_size=1, chunk_delay_s=0.02)  # streamed
    chat_session, output = session_with(backend)

    async def main() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.45, chat_session.interrupt)  # step1 done, step2 running
        stopped = await chat_session.ask("write a joke and translate it to french")
        again = await chat_session.ask("write a joke about owls")
        await chat_session.close()
        return stopped, again

    stopped, again = asyncio.run(main())
    assert stopped.result.status is RunStatus.INTERRUPTED
    assert stopped.result.steps["step2"].status is StepStatus.CANCELLED
    assert again.result.status is RunStatus.SUCCEEDED
    assert "interrupted" in output.getvalue()


def test_the_toolbar_names_the_model_and_the_last_run() -> None:
    chat_session, _ = session_with(ScriptedBackend(echo_model))
    assert chat_session.toolbar().startswith("scripted:scripted")

    async def main() -> None:
        await chat_session.ask("write a joke about owls")
        await chat_session.close()

    asyncio.run(main())
    assert "last run succeeded in" in chat_session.toolbar()


@pytest.mark.integration  # a real pseudo-terminal, a real evolve process, command tools
def test_evolve_alone_on_a_terminal_chats_and_leaves_nothing_behind(home: Path) -> None:
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios
    import time

    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {**os.environ, "EVOLVE_HOME": str(home), "TERM": "xterm"}
    os.write(main, b"shout 'hello there'\r")  # typed before the prompt shows: kept for it
    proc = subprocess.Popen(
        [sys.executable, "-m", "code_evolver", "--config", CONFIG],
        stdin=child,
        stdout=child,
        stderr=child,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    os.close(child)
    seen = b""

    def wait_for(text: bytes, timeout: float = 60) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            assert time.monotonic() < deadline, seen[-2000:]
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:
                    break
                seen += chunk
                if b"\x1b[6n" in chunk:  # where is the cursor? answered as a terminal does
                    os.write(main, b"\x1b[1;1R")

    try:
        wait_for("›".encode())
        wait_for(b"HELLO THERE")
        # the instant prompt comes before the editor (its first act asks where the cursor is)
        assert seen.index("›".encode()) < seen.index(b"\x1b[6n")
        os.write(main, b"count its words\r")  # a follow-up: the words of the last answer
        wait_for(b"word_count \xc2\xb7", timeout=60)  # the result panel's title
        assert seen.count(b"succeeded: 1 succeeded") >= 1
        os.write(main, b"/quit\r")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    assert b"Traceback" not in seen
    leftover = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, check=False)
    assert leftover.stdout == b""  # no process of its session is left


@pytest.mark.parametrize(
    ("request_text", "topic", "expected"),
    [
        ("write a haiku about France", "Spain", "write a haiku about Spain"),
        (
            "write a haiku about France and translate it to german",
            "Spain",
            "write a haiku about Spain and translate it to german",
        ),
        (
            "give me 3 facts about owls, then summarize them",
            "cats",
            "give me 3 facts about cats, then summarize them",
        ),
        ("write a joke", "cats", "write a joke about cats"),
    ],
)
def test_the_same_for_another_topic(request_text: str, topic: str, expected: str) -> None:
    from code_evolver.chat.session import same_for

    assert same_for(request_text, topic) == expected


def test_do_the_same_for_runs_the_last_request_about_the_new_topic(
    backend: ScriptedBackend,
) -> None:
    result = chat("write a haiku about France", "do the same for Spain")
    assert result.exit_code == 0
    assert "Write a haiku about Spain." in prompts(backend)[-1]


def test_user_text_with_markup_brackets_is_shown_not_parsed(backend: ScriptedBackend) -> None:
    result = chat("/[/x]", "/model [bold]", "write a joke about owls")
    assert result.exit_code == 0
    assert "unknown command /[/x]" in result.output
    assert "Traceback" not in result.output


def test_a_scripted_chat_prints_no_prompt(backend: ScriptedBackend) -> None:
    result = chat("write a haiku about rain", "/context")
    assert result.exit_code == 0, result.output
    assert "reply to" in result.output
    assert PROMPT not in result.output  # the instant prompt is for terminals only


def test_a_stray_byte_on_stdin_is_no_crash(backend: ScriptedBackend) -> None:
    result = CliRunner().invoke(
        main_group, ["chat", "--config", CONFIG], input=b"\xff\nwrite a joke about owls\n"
    )
    assert result.exit_code == 0, result.output
    assert any("joke about owls" in p for p in prompts(backend))


def test_ctrl_c_between_requests_does_not_cancel_the_next() -> None:
    chat_session, _ = session_with(ScriptedBackend(echo_model))

    async def main() -> Any:
        chat_session.interrupt()  # e.g. during /save: no request is under way
        answer = await chat_session.ask("write a joke about owls")
        await chat_session.close()
        return answer

    assert asyncio.run(main()).result.status is RunStatus.SUCCEEDED


def test_a_stopped_request_leaves_the_context_as_it_was() -> None:
    backend = ScriptedBackend(echo_model, chunk_size=1, chunk_delay_s=0.02)  # ~1 s a reply
    chat_session, _ = session_with(backend)

    async def main() -> None:
        await chat_session.ask("write a joke about owls")
        asyncio.get_running_loop().call_later(0.1, chat_session.interrupt)
        await chat_session.ask("write a poem about the sea")
        await chat_session.close()

    asyncio.run(main())
    assert chat_session.conversation.last == "reply to: Write a joke about owls."


def test_plan_uses_the_conversation(backend: ScriptedBackend) -> None:
    result = chat(
        "write a joke about owls", "/plan translate it to french", "/plan summarize {last}"
    )
    assert result.exit_code == 0
    assert "what text should" not in result.output
    assert "translator" in result.output
    assert "summarizer" in result.output


def test_a_session_that_cannot_be_made_ends_the_prompt_with_its_error() -> None:
    from code_evolver.errors import ConfigError

    def broken() -> ChatSession:
        raise ConfigError("config.yaml: llm.backend: not one of auto, ollama, embedded, openai")

    async def main() -> None:
        with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
            await asyncio.wait_for(run_terminal(broken, input=pipe, output=DummyOutput()), 10)

    with pytest.raises(ConfigError, match=r"llm\.backend"):
        asyncio.run(main())  # nothing typed: the error ends the prompt on its own


def test_a_second_ctrl_c_during_one_message_leaves_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from code_evolver.chat import repl as repl_module

    left: list[int] = []
    stopped: list[bool] = []
    monkeypatch.setattr(repl_module, "leave_now", left.append)
    chat_session, _ = session_with(ScriptedBackend(echo_model))
    monkeypatch.setattr(chat_session, "interrupt", lambda: stopped.append(True))
    on_ctrl_c = repl_module.ctrl_c_handler(chat_session)
    on_ctrl_c()
    assert (stopped, left) == ([True], [])  # the first stops the request
    on_ctrl_c()
    assert left == [130]  # the second leaves


def test_config_shows_what_was_switched_in_the_chat(backend: ScriptedBackend) -> None:
    result = chat("/model other.gguf", "/config")
    assert result.exit_code == 0
    assert "llm.model: other.gguf  # set in this chat (/model)" in result.output


def _blocked_reading_a_pipe(pid: int) -> bool:
    """Whether a thread of ``pid`` sleeps in a pipe read (the kernel's wait channel)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            if (task / "wchan").read_text().endswith("pipe_read"):
                return True
    return False


@pytest.mark.integration  # a real evolve process reading a pipe
def test_ctrl_c_while_a_scripted_chat_waits_for_its_next_line_ends_it(home: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    with subprocess.Popen(
        [sys.executable, "-m", "code_evolver", "chat", "--config", CONFIG],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "EVOLVE_HOME": str(home)},
        cwd=REPO,
    ) as proc:
        assert proc.stdin is not None
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while not _blocked_reading_a_pipe(proc.pid):  # the pipe stays open: no line will come
            assert time.monotonic() < deadline
            assert proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=30) == 130
        finally:
            proc.kill()
            proc.stdin.close()
        assert b"Fatal Python error" not in proc.stderr.read()


def test_a_follow_up_the_rules_cannot_plan_reaches_the_overseer_with_the_conversation(
    backend: ScriptedBackend,
) -> None:
    result = CliRunner().invoke(
        main_group,
        ["chat", "--config", CONFIG, "--planner", "llm"],
        input="write a haiku about rain\nwhat about dogs?\n",
    )
    assert result.exit_code == 0, result.output
    planner_prompts = [p for p in prompts(backend) if "The request to plan now:" in p]
    assert planner_prompts, prompts(backend)
    assert "what about dogs?" in planner_prompts[-1]
    assert "asked: write a haiku about rain" in planner_prompts[-1]
    assert "answered: reply to:" in planner_prompts[-1]  # the last answer, clipped


def test_a_follow_up_no_plan_fits_is_answered_with_the_conversation(
    backend: ScriptedBackend,
) -> None:
    result = chat("write a haiku about rain", "what about dogs?")
    assert result.exit_code == 0, result.output
    answered = prompts(backend)[-1]  # the fallback step: the request as one model step
    assert "asked: write a haiku about rain" in answered
    assert answered.rstrip().endswith("Now: what about dogs?")


def test_the_planner_reads_only_the_newest_turns_within_its_budget() -> None:
    conversation = Conversation()
    assert conversation.for_planner() is None
    for n in range(10):
        conversation.add(f"request {n}", "word " * 500)
    text = conversation.for_planner(max_chars=1_000)
    assert text is not None
    assert "request 9" in text
    assert "request 0" not in text
    assert len(text) < 1_100


def test_runs_show_and_resume_in_the_chat() -> None:
    chat_session, output = session_with(ScriptedBackend(echo_model))

    async def main() -> str:
        await chat_session.ask("write a joke about owls")
        assert chat_session.last_result is not None
        run_id = chat_session.last_result.run_id
        for line in ("/runs", f"/show {run_id[:6]}", f"/show {run_id} --gantt", "/show nope"):
            assert await chat_session.handle(line)
        assert await chat_session.handle(f"/resume {run_id}")
        await chat_session.close()
        return run_id

    run_id = asyncio.run(main())
    out = output.getvalue()
    assert run_id in out  # /runs
    assert "write a joke about owls" in out  # /show: the request
    assert "critical path" in out  # /show --gantt
    assert "no run 'nope'" in out
    assert f"nothing to resume: every step of run {run_id} succeeded" in out


class Unreachable(ScriptedBackend):
    async def check(self) -> None:
        raise BackendError("no server at http://127.0.0.1:9 (ConnectionRefused)")


def test_a_backend_that_cannot_serve_is_not_switched_to() -> None:
    chat_session, output = session_with(Unreachable(echo_model))
    before = chat_session.config.llm.backend

    async def main() -> None:
        assert await chat_session.handle("/backend openai")
        await chat_session.close()

    asyncio.run(main())
    out = output.getvalue()
    assert "error: no server at http://127.0.0.1:9" in out
    assert "still on" in out
    assert chat_session.config.llm.backend == before
    assert chat_session.switched == {}


def test_model_names_the_model_before_any_request(backend: ScriptedBackend) -> None:
    result = chat("/model", "/quit")
    assert result.exit_code == 0, result.output
    assert "model: embedded:SmolLM2-135M-Instruct.Q4_1.gguf" in result.output
    assert "auto:" not in result.output


def test_chat_errors_list_every_problem_and_speak_of_the_chat(
    backend: ScriptedBackend, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"steps": [
        {"step_id": "a", "tool": "nope", "input": "x"},
        {"step_id": "a", "tool": "combine", "input": "y"},
    ]}))  # fmt: skip
    reads = tmp_path / "reads.json"
    reads.write_text(
        json.dumps({"steps": [{"step_id": "s", "tool": "combine", "input": "{input}"}]})
    )
    result = chat(f"/run {broken}", f"/run {reads}", "/quit")
    assert result.output.count("error:") >= 3  # both plan problems, then the missing answer
    assert "unknown tool 'nope'" in result.output
    assert "duplicate step_id 'a'" in result.output
    assert "which in a chat is the last answer, and there is none yet" in " ".join(
        result.output.split()
    )
