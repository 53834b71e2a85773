"""Isolation of tool processes, against real bubblewrap: a strict node reaches nothing it was
not given, hits its limits by name and leaves nothing behind; a contained command's whole
process tree dies with its step and with evolve (``kill -9`` included); without bubblewrap,
strict refuses and contain falls back, saying so."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import Recorder, processes_with, wait_until_gone

import code_evolver
from code_evolver.errors import UserError
from code_evolver.launch import bubblewrap
from code_evolver.result import RunResult, StepStatus

pytestmark = pytest.mark.integration  # bubblewrap sandboxes and their processes
REPO = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "nodes" / "sandbox_probe.py"


@pytest.fixture(autouse=True)
def _needs_bubblewrap() -> None:
    if not bubblewrap.probe("bwrap").ok:
        pytest.fail(f"these tests need bubblewrap: {bubblewrap.probe('bwrap').detail}")


def config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "tools:\n"
        f"  probe: {{kind: node, script: {PROBE}, timeout_s: 60}}\n"
        f"  tight: {{kind: node, script: {PROBE}, timeout_s: 60,"
        " limits: {memory_mb: 256, cpu_s: 1, processes: 16}}\n" + extra
    )
    return path


def probe(tmp_path: Path, action: str, target: str = "", **kwargs: Any) -> RunResult:
    tool = kwargs.pop("tool", "probe")
    step = {
        "step_id": "a",
        "tool": tool,
        "input": "",
        "params": {"action": action, "target": target},
    }
    step["params"] |= kwargs.pop("params", {})
    return code_evolver.run({"steps": [step]}, config=config(tmp_path), **kwargs)


def output(result: RunResult) -> Any:
    record = result.steps["a"]
    assert record.ok, record.error
    assert record.isolation == "strict"
    return record.output


# ---------------------------------------------------------------- a strict node reaches nothing


def test_a_strict_node_writes_only_in_its_work_dir(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    assert output(probe(tmp_path, "write", str(outside))).startswith("refused")
    assert not outside.exists()
    assert output(probe(tmp_path, "write", "inside.txt")) == "wrote"  # its own folder
    assert output(probe(tmp_path, "write", "/usr/evil")).startswith("refused")


def test_a_strict_node_cannot_read_the_home_or_the_project(tmp_path: Path) -> None:
    secret = Path.home() / f".evolve-sandbox-test-{uuid.uuid4().hex}"
    secret.write_text("the user's secret")
    try:
        assert output(probe(tmp_path, "read", str(secret))).startswith("refused")
    finally:
        secret.unlink()
    assert output(probe(tmp_path, "read", str(REPO / "config.yaml"))).startswith("refused")
    assert output(probe(tmp_path, "read", str(tmp_path / "config.yaml"))).startswith("refused")


def test_a_strict_node_cannot_connect_to_a_loopback_service(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # it does listen
        assert output(probe(tmp_path, "connect", str(port))).startswith("refused")


def test_a_strict_node_sees_no_secret_of_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVOLVE_TEST_SECRET", "hunter2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-to-be-seen")
    seen = output(probe(tmp_path, "environment"))
    assert "hunter2" not in json.dumps(seen)
    assert "sk-never-to-be-seen" not in json.dumps(seen)
    assert set(seen["env"]) <= {
        "PATH", "HOME", "TMPDIR", "LANG", "LANGUAGE", "TZ", "TERM", "PWD", "PYTHONPATH",
        "CODE_EVOLVER_STEP_ID",
    } | {k for k in seen["env"] if k.startswith("LC_")}  # fmt: skip
    assert seen["env"]["HOME"] == seen["cwd"]  # a private home: its work folder
    assert seen["uid"] == 65534


# ----------------------------------------------------------------------- limits, by name


@pytest.mark.parametrize(
    ("action", "target", "message"),
    [
        ("memory", "1024", "memory limit 256 MB exceeded"),
        ("cpu", "", "CPU limit 1s exceeded"),
        ("fork", "", "process limit 16 exceeded"),
    ],
)
def test_each_limit_hit_is_named(tmp_path: Path, action: str, target: str, message: str) -> None:
    result = probe(tmp_path, action, target, tool="tight")
    record = result.steps["a"]
    assert record.status is StepStatus.FAILED
    assert record.error == f"the node script stopped: {message} (tools.tight.limits to change it)"
    assert record.attempts == 1  # a limit hit is not retried


# ------------------------------------------------------------------ nothing is left behind


def test_a_strict_node_leaves_no_process_after_its_step(tmp_path: Path) -> None:
    marker = unique_seconds()
    assert output(probe(tmp_path, "daemons", params={"marker": marker})) == "left 2 daemons"
    assert wait_until_gone(marker) == []


def unique_seconds() -> str:
    """A marker that ``sleep`` accepts as an extra argument (it adds up its arguments) and that
    no other process on the machine has in its command line."""
    return f"0.{uuid.uuid4().int % 10**15:015d}1"


def contained_config(tmp_path: Path, marker: str, **extra: str) -> Path:
    """A command tool that leaves a setsid daemon and a double-forked sleeper, then waits."""
    script = (
        f"setsid sleep 600 {marker} & (sleep 601 {marker} &) ; sleep 0.2; "
        f"echo started $(ps -eo args | grep -c '^sleep 60[01] {marker}'); sleep ${{WAIT:-0}}"
    )
    tool: dict[str, Any] = {"kind": "command", "command": ["sh", "-c", script], "env": ["WAIT"]}
    tool |= {key: yaml.safe_load(value) for key, value in extra.items()}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"tools": {"leaver": tool}}))
    return path


def test_a_contained_command_leaves_no_process_after_its_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = unique_seconds()
    monkeypatch.setenv("WAIT", "0")
    result = code_evolver.run(
        {"steps": [{"step_id": "a", "tool": "leaver", "input": ""}]},
        config=contained_config(tmp_path, marker),
    )
    assert result.steps["a"].output == "started 2"  # two daemons ran
    assert result.steps["a"].isolation == "contain"
    assert wait_until_gone(marker) == []


def test_a_contained_steps_processes_die_with_the_step_not_with_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run goes on after the step: its daemons are gone already (as a later step, in the
    same namespace, sees)."""
    marker = unique_seconds()
    monkeypatch.setenv("WAIT", "0")
    config = contained_config(tmp_path, marker)
    count = f"ps -eo args | grep -c '^sleep 60[01] {marker}' || true"
    tools = yaml.safe_load(config.read_text())["tools"]
    tools["count"] = {"kind": "command", "command": ["sh", "-c", count]}
    config.write_text(yaml.safe_dump({"tools": tools}))
    result = code_evolver.run(
        {
            "steps": [
                {"step_id": "a", "tool": "leaver", "input": ""},
                {"step_id": "b", "tool": "count", "input": "", "depends_on": ["a"]},
            ]
        },
        config=config,
    )
    assert result.steps["a"].output == "started 2"
    assert result.steps["b"].output == "0"


def test_a_contained_command_leaves_no_process_after_a_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = unique_seconds()
    monkeypatch.setenv("WAIT", "600")
    result = code_evolver.run(
        {"steps": [{"step_id": "a", "tool": "leaver", "input": ""}]},
        config=contained_config(tmp_path, marker, timeout_s="1"),
    )
    assert result.steps["a"].status is StepStatus.TIMED_OUT
    assert wait_until_gone(marker) == []


@pytest.fixture
def evolve_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``evolve run`` of a contained command that leaves daemons and keeps running."""
    marker = unique_seconds()
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"steps": [{"step_id": "a", "tool": "leaver", "input": ""}]}))
    env = os.environ | {"WAIT": "600", "EVOLVE_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "code_evolver", "run", str(plan), "--config",
         str(contained_config(tmp_path, marker))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while len(processes_with(marker)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(processes_with(marker)) == 3, "the daemons did not start"  # and the sh
        yield proc, marker
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_a_contained_command_dies_with_evolve(
    evolve_run: tuple[subprocess.Popen[str], str], how: signal.Signals
) -> None:
    proc, marker = evolve_run
    proc.send_signal(how)
    proc.wait(timeout=30)
    assert proc.returncode == (130 if how == signal.SIGINT else -signal.SIGKILL)
    assert wait_until_gone(marker) == [], f"processes outlived evolve ({how.name})"


# -------------------------------------------------------------------------- the channel


def test_a_process_without_the_secret_cannot_call_on_the_channel(tmp_path: Path) -> None:
    """A forked child of the script shares the channel's descriptor; what it writes without
    the secret is refused (the channel hangs up), and no tool runs for it."""
    script = tmp_path / "forger.py"
    script.write_text(
        "import json, os, socket\n"
        "from node_runtime import ToolCallError, call_tool, run_node\n"
        "import node_runtime\n"
        "def main(text: str) -> object:\n"
        "    first = call_tool('work', 'legit')\n"
        "    fd = int(node_runtime._CHANNEL[0])\n"
        "    if os.fork() == 0:\n"
        "        forged = {'id': 99, 'tool': 'work', 'input': 'forged', 'params': {}}\n"
        "        os.write(fd, json.dumps(forged).encode() + b'\\n')\n"
        "        os._exit(0)\n"
        "    os.wait()\n"
        "    try:\n"
        "        second = call_tool('work', 'after')\n"
        "    except ToolCallError as exc:\n"
        "        second = str(exc)\n"
        "    return {'first': first, 'second': second}\n"
        "run_node(main)\n"
    )
    rec = Recorder()
    path = tmp_path / "config.yaml"
    path.write_text(f"tools:\n  forger: {{kind: node, script: {script}}}\n")
    result = code_evolver.run(
        {"steps": [{"step_id": "a", "tool": "forger", "input": ""}]},
        config=path,
        tools={"work": rec.tool("work")},
    )
    assert result.ok, result.steps["a"].error
    out = result.steps["a"].output
    assert isinstance(out, dict)
    assert out["first"] == "<legit>"
    assert "a message without this step's secret arrived" in out["second"]
    assert [c.input for c in rec.calls] == ["legit"]


# ----------------------------------------------------------------- without bubblewrap


def test_strict_refuses_without_bubblewrap_and_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        code_evolver.run(
            {"steps": [{"step_id": "a", "tool": "probe", "input": ""}]},
            config=config(tmp_path),
            bubblewrap="/nonexistent/bwrap",
        )
    message = str(info.value)
    assert message.startswith("bubblewrap is not installed (/nonexistent/bwrap not found)")
    assert "apt-get install bubblewrap" in message
    assert "sandbox: contain (or none)" in message
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"steps": [{"step_id": "a", "tool": "probe", "input": ""}]}))
    (tmp_path / "c.yaml").write_text(
        config(tmp_path).read_text() + "execution: {bubblewrap: /nonexistent/bwrap}\n"
    )
    cli = subprocess.run(
        [sys.executable, "-m", "code_evolver", "run", str(plan), "--config",
         str(tmp_path / "c.yaml")],
        capture_output=True, text=True, timeout=60, check=False,
        env=os.environ | {"EVOLVE_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert cli.returncode == 2
    assert cli.stderr.startswith("error: bubblewrap is not installed")


def test_contain_falls_back_without_bubblewrap_and_still_sweeps_leftovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from code_evolver import home

    monkeypatch.setattr(home, "_warned", set())
    marker = unique_seconds()
    monkeypatch.setenv("WAIT", "0")
    result = code_evolver.run(
        {"steps": [{"step_id": "a", "tool": "leaver", "input": ""}]},
        config=contained_config(tmp_path, marker),
        bubblewrap="/nonexistent/bwrap",
    )
    assert result.steps["a"].output == "started 2"  # two daemons ran
    assert wait_until_gone(marker) == []  # swept when the step ended
    (warning,) = [r.getMessage() for r in caplog.records if "fall back" in r.getMessage()]
    assert "not if evolve itself is killed with SIGKILL" in warning


STEALER = r"""
import ctypes, json, os, socket, sys
ppid = os.getppid()
try:
    environ = open(f"/proc/{ppid}/environ", "rb").read().split(b"\0")
    token = next(v.split(b"=", 1)[1].decode() for v in environ
                 if v.startswith(b"CODE_EVOLVER_RUNTIME_TOKEN="))
    fd_number = int(next(v.split(b"=", 1)[1] for v in environ
                         if v.startswith(b"CODE_EVOLVER_RUNTIME_FD=")))
except (OSError, StopIteration) as exc:
    print(f"no secret: {exc}"); sys.exit(0)
libc = ctypes.CDLL(None, use_errno=True)
pidfd = os.pidfd_open(ppid)
stolen = libc.syscall(438, pidfd, fd_number, 0)  # pidfd_getfd
if stolen < 0:
    print(f"no descriptor: errno {ctypes.get_errno()}"); sys.exit(0)
call = {"token": token, "id": 1, "tool": "work", "input": "forged", "params": {}}
os.write(stolen, json.dumps(call).encode() + b"\n")
print("sent a forged call")
"""


@pytest.mark.parametrize("sandbox", ["strict", "contain"])
def test_a_subprocess_of_a_node_cannot_steal_the_channel(tmp_path: Path, sandbox: str) -> None:
    """A child of the script reading the secret from /proc/PPID/environ and taking the
    descriptor with pidfd_getfd gets neither: the script is not dumpable."""
    script = tmp_path / "thief.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "from node_runtime import call_tool, run_node\n"
        f"STEALER = {STEALER!r}\n"
        "def main(text: str) -> object:\n"
        "    out = subprocess.run([sys.executable, '-c', STEALER], capture_output=True,\n"
        "                         text=True)\n"
        "    time.sleep(0.3)\n"
        "    return {'stealer': out.stdout.strip() or out.stderr[-300:],\n"
        "            'mine': call_tool('work', 'legit')}\n"
        "run_node(main)\n"
    )
    rec = Recorder()
    path = tmp_path / "config.yaml"
    path.write_text(f"tools:\n  thief: {{kind: node, script: {script}, sandbox: {sandbox}}}\n")
    result = code_evolver.run(
        {"steps": [{"step_id": "a", "tool": "thief", "input": ""}]},
        config=path,
        tools={"work": rec.tool("work")},
    )
    assert result.ok, result.steps["a"].error
    out = result.steps["a"].output
    assert isinstance(out, dict)
    assert out["stealer"].startswith(("no secret", "no descriptor")), out["stealer"]
    assert out["mine"] == "<legit>"
    assert [c.input for c in rec.calls] == ["legit"]


def test_a_contained_command_cannot_uncover_evolves_environment(tmp_path: Path) -> None:
    """Under contain, /proc shows only the step's processes; unmounting it (root could, with
    its capabilities) must fail, so evolve's environment stays out of reach. evolve runs as a
    process of its own here: /proc shows a process's environment as it started."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "tools:\n  peek: {kind: command, command: [sh, -c, 'umount -l /proc 2>/dev/null; "
        'for p in /proc/[0-9]*; do tr "\\0" "\\n" < $p/environ 2>/dev/null; done '
        "| grep -c hunter2 || true']}\n"
    )
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"steps": [{"step_id": "a", "tool": "peek", "input": ""}]}))
    done = subprocess.run(
        [sys.executable, "-m", "code_evolver", "run", str(plan), "--config", str(path), "--json"],
        capture_output=True, text=True, timeout=60, check=False,
        env=os.environ | {"EVOLVE_TEST_SECRET": "hunter2", "EVOLVE_HOME": str(tmp_path / "h")},
    )  # fmt: skip
    step = json.loads(done.stdout)["steps"]["a"]
    assert step["isolation"] == "contain"
    assert step["output"] == "0", "evolve's environment was readable"


def test_a_tool_path_without_the_helpers_still_runs(tmp_path: Path) -> None:
    """prlimit and bubblewrap are evolve's helpers, found on evolve's PATH, not the tool's."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "tools:\n  echo: {kind: command, command: [/bin/echo, fine], env: {PATH: /nowhere}}\n"
    )
    result = code_evolver.run(
        {"steps": [{"step_id": "a", "tool": "echo", "input": ""}]}, config=path
    )
    assert result.steps["a"].output == "fine"
