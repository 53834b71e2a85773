"""Where the LLM servers are and the API key: malformed values are config errors (exit 2)
that name the setting, found when the config is read, never a ValueError from a client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from code_evolver.cli import main_group
from code_evolver.config import parse_config
from code_evolver.errors import ConfigError
from code_evolver.llm.addresses import api_key_problem, http_url, ollama_url
from code_evolver.llm.service import choose_backend
from code_evolver.llm.settings import LlmSettings, OllamaSettings

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("", "http://127.0.0.1:11434"),
        ("localhost", "http://localhost:11434"),
        (":56789", "http://127.0.0.1:56789"),
        ("1.2.3.4:56789", "http://1.2.3.4:56789"),
        ("http://1.2.3.4", "http://1.2.3.4:80"),
        ("https://example.com:56789/path/", "https://example.com:56789/path"),
        ("[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_ollama_addresses_are_read_as_ollama_reads_them(given: str, url: str) -> None:
    assert ollama_url(given) == url


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("localhost:abc", "has a bad port"),
        ("localhost:99999", "has a bad port"),
        ("localhost:0", "has port 0"),
        ("[::1", "is not a valid address"),
        ("ftp://host", r"is not an http\(s\) address"),
    ],
)
def test_malformed_ollama_addresses_say_what_is_wrong(given: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ollama_url(given)


@pytest.mark.parametrize(
    "given", ["http://127.0.0.1:99999/v1", "http://h:abc/v1", "localhost:8000", "ftp://h/v1"]
)
def test_malformed_base_urls_are_refused(given: str) -> None:
    with pytest.raises(ValueError, match=repr(given).replace("[", r"\[")):
        http_url(given)


@pytest.mark.parametrize(
    "given",
    [
        "http://exa mple.com/v1",
        "http://host\x00/v1",
        "http://ex\u00e4mple.com/v1",
        "http://h\u00f6st:8080",
        "http://a_b.example/v1",
        "http://[::1]:8000/v1",
        "http://host/v1?q=a b",
        "http://xn--/v1",
        "http://host\u200b/v1",
        "http://ho<st/v1",
        "http://ho%41st/v1",
        "https://" + "a" * 70 + ".com/v1",
    ],
)
def test_an_accepted_base_url_is_one_the_http_client_takes(given: str) -> None:
    import httpx

    try:
        url = http_url(given)
    except ValueError:
        return  # refused at once, named: fine
    httpx.URL(url)  # accepted: it must not fail later, inside the client


def test_api_key_problems() -> None:
    assert api_key_problem("sk-abc123") is None
    assert api_key_problem("sk-abc\n") == "contains a line break (a newline copied with it?)"
    assert api_key_problem("sk-a\rb") == "contains a line break (a newline copied with it?)"
    assert api_key_problem("sk-ключ") == "contains non-ASCII characters"
    assert api_key_problem("sk-\x00") == "contains control characters"


def test_a_bad_host_or_base_url_in_config_names_its_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            "llm:\n  ollama: {host: 'localhost:abc'}\n"
            "  openai: {base_url: 'http://127.0.0.1:99999/v1'}\n"
        )
    assert info.value.problems == (
        "config: llm.ollama.host: 'localhost:abc' has a bad port; use a number from 1 to 65535",
        "config: llm.openai.base_url: 'http://127.0.0.1:99999/v1' has a bad port; "
        "use a number from 1 to 65535",
    )


@pytest.mark.parametrize("host", ["localhost:abc", "localhost:99999"])
def test_a_malformed_ollama_host_is_a_config_error_for_the_ollama_backend(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", host)
    with pytest.raises(ConfigError, match=r"^\$OLLAMA_HOST: .* has a bad port"):
        LlmSettings(backend="ollama")
    with pytest.raises(ConfigError, match="OLLAMA_HOST"):
        OllamaSettings().resolved_host()
    result = CliRunner().invoke(
        main_group,
        ["plan", "anything at all", "--backend", "ollama", "--config", str(REPO / "config.yaml")],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: $OLLAMA_HOST: ")


def test_auto_does_without_ollama_when_its_host_is_malformed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "localhost:abc")
    choice = asyncio.run(choose_backend(LlmSettings(backend="auto")))  # no probe is made
    assert choice.backend == "embedded"
    assert "OLLAMA_HOST" in choice.reasons[0]


@pytest.mark.parametrize("key", ["sk-abc\r\n", "sk-ключ"])
def test_an_api_key_that_cannot_be_sent_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key)
    with pytest.raises(ConfigError, match=r"^\$OPENAI_API_KEY \(llm.openai.api_key_env\)"):
        LlmSettings(backend="openai")
    LlmSettings(backend="auto")  # a key nobody uses is nobody's problem
    result = CliRunner().invoke(
        main_group,
        ["plan", "anything at all", "--backend", "openai", "--config", str(REPO / "config.yaml")],
    )
    assert result.exit_code == 2
    assert "the API key contains" in result.stderr


@pytest.mark.integration  # a fresh interpreter: ollama builds a client from $OLLAMA_HOST at import
def test_doctor_reports_a_malformed_ollama_host_instead_of_crashing(tmp_path: Path) -> None:
    env = os.environ | {"OLLAMA_HOST": "localhost:abc", "EVOLVE_HOME": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "code_evolver",
            "doctor",
            "--json",
            "--backend",
            "openai",
            "--config",
            str(REPO / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert not checks["ollama server"]["ok"]
    assert "$OLLAMA_HOST: 'localhost:abc' has a bad port" in checks["ollama server"]["detail"]
