"""`evolve "REQUEST"`, `evolve plan "REQUEST"` and `evolve doctor`, with a scripted model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from support import echo_model

from code_evolver.cli import main_group
from code_evolver.llm import service
from code_evolver.llm.base import Request
from code_evolver.llm.fake import ScriptedBackend

REPO = Path(__file__).resolve().parent.parent
CONFIG = str(REPO / "config.yaml")
JOKE = "write a joke and translate it to french and spanish"


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> ScriptedBackend:
    """Whatever backend the CLI chooses, it gets this scripted one."""
    scripted = ScriptedBackend(echo_model)
    monkeypatch.setattr(service, "create_backend", lambda name, settings: scripted)
    monkeypatch.setattr(service, "choose_backend", _embedded_choice)
    return scripted


async def _embedded_choice(settings: Any) -> service.Choice:
    return service.Choice("embedded", ["test"])


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(
        main_group, [*args, "--config", CONFIG], input=stdin, catch_exceptions=False
    )


def test_request_is_planned_shown_run_and_answered(backend: ScriptedBackend) -> None:
    result = invoke(JOKE)
    assert result.exit_code == 0, result.output
    assert "[French] reply to: Write a joke." in result.stdout
    assert "[Spanish] reply to: Write a joke." in result.stdout
    assert "✓ succeeded: 3 succeeded" in result.stdout
    assert "wave 2 (×2 in parallel)" in result.stderr
    assert "planned by the rules in" in result.stderr


def test_request_json_has_plan_planner_and_steps(backend: ScriptedBackend) -> None:
    doc = json.loads(invoke(JOKE, "--json").stdout)
    assert doc["status"] == "succeeded"
    assert doc["planner"]["source"] == "rules"
    assert [s["tool"] for s in doc["plan"]["steps"]] == [
        "content_generator",
        "translator",
        "translator",
    ]
    assert doc["steps"]["step2"]["output"].startswith("[French]")


def test_options_before_the_request_and_unquoted_words(backend: ScriptedBackend) -> None:
    result = CliRunner().invoke(
        main_group, ["--config", CONFIG, "--json", "write", "a", "joke"], catch_exceptions=False
    )
    doc = json.loads(result.stdout)
    assert doc["plan"]["steps"][0]["input"] == "Write a joke."


def test_llm_planner_path_and_fallback(backend: ScriptedBackend) -> None:
    backend._compute = None
    backend.enqueue("not a plan", "still not", "nope", "the fallback's answer")
    result = invoke("why is the sky blue", "--json", "--planner", "llm")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["planner"]["source"] == "fallback"
    assert doc["planner"]["llm_calls"] == 3
    assert doc["steps"]["step1"]["output"] == "the fallback's answer"
    assert "could not make a valid plan" in doc["planner"]["warnings"][0]


def test_plan_only_prints_a_runnable_plan(backend: ScriptedBackend, tmp_path: Path) -> None:
    shown = invoke("plan", JOKE, "--json")
    assert shown.exit_code == 0
    saved = tmp_path / "plan.json"
    saved.write_text(shown.stdout)
    assert backend.requests == []
    ran = invoke("run", str(saved), "--json")
    assert json.loads(ran.stdout)["steps"]["step3"]["output"].startswith("[Spanish]")
    tree = invoke("plan", JOKE)
    assert "wave 2 (×2 in parallel)" in tree.stdout
    assert "planned by the rules" in tree.stdout


def test_planner_rules_mode_that_does_not_match_is_a_user_error(backend: ScriptedBackend) -> None:
    result = invoke("write a joke and translate it to klingon", "--planner", "rules")
    assert result.exit_code == 2
    assert "error: the rules cannot plan this request (which language?" in result.stderr


def test_a_request_without_the_text_it_works_on_is_a_user_error(backend: ScriptedBackend) -> None:
    result = invoke("translate to french and spanish")
    assert result.exit_code == 2
    assert (
        "error: what text should 'translate to french and spanish' translate? Put it in quotes "
        'or after a colon, or pipe it in: echo TEXT | evolve "..."' in result.stderr
    )
    assert backend.requests == []


def _prompts(backend: ScriptedBackend) -> list[str]:
    return [m["content"] for r in backend.requests for m in r.messages]


def test_piped_text_is_the_requests_input(backend: ScriptedBackend) -> None:
    result = invoke("translate to french and spanish", "--json", stdin="good morning\n")
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    steps = answer["plan"]["steps"]
    assert [(s["tool"], s["input"]) for s in steps] == [("translator", "{input}")] * 2
    assert sum("good morning" in p for p in _prompts(backend)) == 2


def test_input_file_and_a_trailing_dash(backend: ScriptedBackend, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("the meeting moved to friday", encoding="utf-8")
    assert invoke("summarize this", "--input", str(notes)).exit_code == 0
    assert any("the meeting moved to friday" in p for p in _prompts(backend))
    assert invoke("summarize this", "-", stdin="bring snacks on monday").exit_code == 0
    assert any("bring snacks on monday" in p for p in _prompts(backend))


def test_an_unreadable_input_file_is_a_user_error(backend: ScriptedBackend) -> None:
    result = invoke("summarize this", "--input", "/nonexistent/notes.txt")
    assert result.exit_code == 2
    assert "error: cannot read --input /nonexistent/notes.txt" in result.stderr


def test_empty_piped_input_counts_as_none(backend: ScriptedBackend) -> None:
    result = invoke("summarize this", stdin="  \n")
    assert result.exit_code == 2
    assert "error: what text should 'summarize this' work on?" in result.stderr


def test_a_plan_made_for_piped_text_is_a_template(backend: ScriptedBackend, tmp_path: Path) -> None:
    made = invoke("plan", "shout this", "--json", stdin="anything")
    assert made.exit_code == 0, made.stderr
    plan = json.loads(made.stdout)
    assert plan["steps"][0]["input"] == "{input}"
    saved = tmp_path / "plan.json"
    step = {"step_id": "s", "tool": "combine", "input": "<{input}>"}
    saved.write_text(json.dumps({"steps": [step]}))
    missing = invoke("run", str(saved))
    assert missing.exit_code == 2
    assert "error: the plan reads {input}, the text it works on, but none was given" in (
        missing.stderr
    )
    ran = invoke("run", str(saved), "--json", stdin="hello")
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout)["steps"]["s"]["output"] == "<hello>"


def test_unavailable_backend_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    from code_evolver.errors import ModelMissing

    class Missing(ScriptedBackend):
        async def check(self) -> None:
            raise ModelMissing("the embedded model is not installed: run `pip install x`")

    monkeypatch.setattr(service, "create_backend", lambda name, settings: Missing([]))
    monkeypatch.setattr(service, "choose_backend", _embedded_choice)
    result = invoke(JOKE)
    assert result.exit_code == 3
    assert "error: the embedded model is not installed" in result.stderr
    assert "Traceback" not in result.stderr


def test_streaming_plan_from_the_model_runs(backend: ScriptedBackend) -> None:
    plan = {
        "steps": [
            {
                "step_id": "step1",
                "description": "a",
                "tool": "content_generator",
                "input": "Explain why the sky is blue.",
                "depends_on": [],
            },
            {
                "step_id": "step2",
                "description": "b",
                "tool": "summarizer",
                "input": "{step1}",
                "depends_on": ["step1"],
            },
        ]
    }

    def model(request: Request) -> str:
        return json.dumps(plan) if request.schema is not None else echo_model(request)

    backend._compute = model
    result = invoke("why is the sky blue", "--no-cache", "--planner", "llm")
    assert result.exit_code == 0, result.output
    assert "summary of reply to: Explain" in result.stdout
    name = "embedded:SmolLM2-135M-Instruct.Q4_1.gguf"  # one name per model, in every line
    assert f"planned by {name}" in result.stderr
    assert f"by {name} · ran in" in result.stdout
    assert "auto:" not in result.stdout + result.stderr
    as_json = invoke("why is the sky blue", "--no-cache", "--planner", "llm", "--json")
    assert json.loads(as_json.stdout)["model"] == name
    no_model = json.loads(invoke("combine these: 'a' 'b'", "--json").stdout)
    assert no_model["model"] is None  # auto never had to choose a model


@pytest.mark.integration  # loads the embedded model, probes a local port
def test_doctor_reports_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # nothing listens: refused at once
    result = invoke("doctor", "--json", "--backend", "embedded")
    doc = json.loads(result.stdout)
    assert doc["backend"] == "embedded"
    names = [c["name"] for c in doc["checks"]]
    assert {"config", "xllamacpp", "embedded model", "ollama server", "EVOLVE_HOME"} <= set(names)
    assert result.exit_code == (0 if doc["usable"] else 3)
    ollama = next(c for c in doc["checks"] if c["name"] == "ollama server")
    assert (ollama["ok"], ollama["needed"]) == (False, False)  # not a failure: not used
    text = invoke("doctor", "--backend", "embedded")
    assert "backend: embedded" in text.stdout
    model = next(c for c in doc["checks"] if c["name"] == "embedded model")["detail"]
    path = model.split(" (")[0]  # folded over lines at 80 columns, never cut with "…"
    assert path in "".join(text.stdout.split())
    assert "not needed (embedded is used)" in text.stdout
    assert "✗  ollama server" not in text.stdout
    other = invoke("doctor", "--backend", "ollama").stdout  # the embedded model: found, unused
    assert "–  embedded model" in other
    assert "✓  embedded model" not in other  # a check that was not needed promises nothing


def test_plan_json_says_on_stderr_which_planner_made_it_and_why(backend: ScriptedBackend) -> None:
    shown = invoke("plan", JOKE, "--json")
    assert "planned by the rules" in shown.stderr
    backend._compute = None
    backend.enqueue("not a plan", "still not", "nope")
    fallback = invoke("plan", "why is the sky blue", "--json", "--planner", "llm", "--no-cache")
    assert fallback.exit_code == 0
    assert json.loads(fallback.stdout)["steps"][0]["tool"] == "content_generator"
    assert "planned without the model" in fallback.stderr
    assert "the model could not make a valid plan after 3 tries" in fallback.stderr


def test_a_requests_usage_errors_name_no_hidden_command() -> None:
    result = CliRunner().invoke(main_group, ["write a haiku", "--bogus"], prog_name="evolve")
    assert result.exit_code == 2
    assert "Usage: evolve [OPTIONS] REQUEST..." in result.stderr
    assert "Try 'evolve --help'" in result.stderr
    assert "ask" not in result.stderr


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("doctr", "doctor"), ("tool", "tools"), ("rn", "run"), ("plna", "plan"), ("toools", "tools")],
)
def test_a_one_word_request_that_looks_like_a_command_is_a_typo(
    backend: ScriptedBackend, typed: str, meant: str
) -> None:
    result = invoke(typed)
    assert result.exit_code == 2
    assert f"no command {typed!r}; did you mean {meant!r}?" in result.stderr
    assert backend.requests == []  # the model was not asked


def test_help_as_a_word_is_the_help_and_longer_requests_are_requests(
    backend: ScriptedBackend,
) -> None:
    shown = invoke("help")
    assert shown.exit_code == 0
    assert "Code Evolver: turn a request into a plan" in shown.stdout
    assert backend.requests == []
    asked = invoke("plans for a rainy day")
    assert asked.exit_code == 0, asked.output
    assert backend.requests  # not taken for `plan`


def test_text_piped_without_a_request_asks_for_one() -> None:
    piped = CliRunner().invoke(main_group, [], input="write a joke")
    assert piped.exit_code == 2
    assert "text was piped to evolve, but no request says what to do with it" in piped.stderr
    for blank in ("", "\n  \n"):
        nothing = CliRunner().invoke(main_group, [], input=blank)
        assert nothing.exit_code == 0
        assert "Usage: " in nothing.stdout


@pytest.mark.parametrize(
    "word", ["what", "that", "chart", "plant", "planet", "play", "notes", "pools", "confirm"]
)
def test_a_one_word_request_that_is_a_real_word_is_a_request(
    backend: ScriptedBackend, word: str
) -> None:
    asked = invoke(word)
    assert "no command" not in asked.stderr
    assert asked.exit_code == 0, asked.output
