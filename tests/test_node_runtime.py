"""node_runtime: call_tool / call_tools_parallel from node scripts, brokered and standalone."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import Behaviour, Recorder, make_broker, wait_until_gone

import code_evolver
from code_evolver import events
from code_evolver.calls import CallRefused
from code_evolver.launch.processes import run_process
from code_evolver.launch.runtime_host import serve
from code_evolver.result import RunResult, StepStatus
from node_runtime import call_tools_parallel
from node_runtime._items import to_call
from node_runtime.protocol import ENV_FD, ENV_TOKEN

NODES = Path(__file__).resolve().parent / "nodes"
pytestmark = pytest.mark.integration  # node scripts are real processes


def write_config(tmp_path: Path, extra: str = "", max_parallel: int = 8) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"execution: {{max_parallel: {max_parallel}, retry_backoff_s: 0.01}}\n"
        "tools:\n"
        f"  fan: {{kind: node, script: {NODES / 'fan_out.py'}}}\n"
        f"  one: {{kind: node, script: {NODES / 'one_call.py'}}}\n"
        f"  bad: {{kind: node, script: {NODES / 'bad_output.py'}}}\n"
        f"  waits: {{kind: node, script: {NODES / 'hang_in_call.py'}, timeout_s: 1,"
        " sandbox: contain}\n"
        f"  pycmd: {{kind: command, command: [python3, {NODES / 'python_command.py'}],"
        " runtime: true}\n" + extra
    )
    return config


def run(tmp_path: Path, steps: list[dict[str, Any]], rec: Recorder, **kwargs: Any) -> RunResult:
    tools = {"work": rec.tool("work", **kwargs.pop("work", {})), "hang": rec.tool("hang")}
    return code_evolver.run(
        {"steps": steps},
        config=write_config(tmp_path, max_parallel=kwargs.pop("max_parallel", 8)),
        tools=tools,
        **kwargs,
    )


def step(step_id: str, uses: str, text: str = "x", **params: Any) -> dict[str, Any]:
    return {"step_id": step_id, "tool": uses, "input": text, "params": params}


# ------------------------------------------------------------------ the API, without a workflow


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (("work",), r"calls\[0\]: expected \(tool, prompt\)"),
        ({"tool": "work"}, r"calls\[0\]: expected .* got keys \['tool'\]"),
        (("work", 3), r"calls\[0\]: the prompt must be str"),
        ((None, "x"), r"calls\[0\]: the tool must be a name"),
        (("work", "x", [1]), r"calls\[0\]: params must be a dict"),
        ("work", r"calls\[0\]: expected .* got str"),
    ],
)
def test_malformed_items_name_their_index(item: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        to_call(item, 0)
    with pytest.raises(TypeError, match=message.replace("0", "1", 1)):
        call_tools_parallel([("work", "fine"), item])


def test_an_empty_batch_is_an_empty_list() -> None:
    assert call_tools_parallel([]) == []


def test_item_shapes() -> None:
    assert to_call(("t", "p"), 0).params == {}
    assert to_call(("t", "p", {"a": 1}), 0).params == {"a": 1}
    assert to_call({"tool": "t", "prompt": "p", "params": {"b": 2}}, 0).params == {"b": 2}


# ------------------------------------------------------------------------------ brokered mode


def test_fan_out_results_come_back_in_order_and_are_recorded(tmp_path: Path) -> None:
    rec = Recorder()
    result = run(tmp_path, [step("a", "fan", "hi", n=10)], rec)
    assert result.ok, result.steps["a"].error
    output = result.steps["a"].output
    assert isinstance(output, dict)
    assert output["outputs"] == [f"<hi-{i}>" for i in range(10)]
    calls = result.steps["a"].calls
    assert [c.call_id for c in calls] == [f"a.{i}" for i in range(1, 11)]
    assert {c.tool for c in calls} == {"work"}
    assert all(c.status is StepStatus.SUCCEEDED for c in calls)
    assert sorted(str(c.output) for c in calls) == sorted(output["outputs"])
    assert result.to_json()["steps"]["a"]["calls"][0]["tool"] == "work"


def test_nested_calls_never_exceed_the_tools_limit(tmp_path: Path) -> None:
    rec = Recorder()
    for node in "abc":
        for i in range(10):
            rec.behaviours[f"{node}.{i + 1}"] = Behaviour(delay=0.03)
    steps = [step(node, "fan", node, n=10) for node in "abc"]
    result = run(tmp_path, steps, rec, work={"max_concurrency": 3})
    assert result.ok
    assert rec.peak_by_tool["work"] == 3
    assert len(rec.starts) == 30


def test_a_single_slot_still_lets_a_node_fan_out(tmp_path: Path) -> None:
    rec = Recorder()
    result = run(tmp_path, [step("a", "fan", n=5), step("b", "fan", n=5)], rec, max_parallel=1)
    assert result.ok  # the waiting node lends its slot to its calls: no deadlock
    assert result.peak_concurrency == 2  # one node and the one call on its lent slot


def test_calls_are_shown_as_events_under_their_step(tmp_path: Path) -> None:
    seen: list[events.Event] = []
    tools = {"work": Recorder().tool("work"), "hang": Recorder().tool("hang")}
    code_evolver.run(
        {"steps": [step("a", "fan", n=3)]},
        config=write_config(tmp_path),
        tools=tools,
        listeners=[seen.append],
    )
    started = [e for e in seen if isinstance(e, events.CallStarted)]
    finished = [e for e in seen if isinstance(e, events.CallFinished)]
    assert [e.step_id for e in started] == ["a"] * 3
    assert {e.status for e in finished} == {"succeeded"}


@pytest.mark.parametrize(
    ("params", "behaviour", "kind", "text"),
    [
        ({"tool": "nope"}, None, "ToolNotFound", "unknown tool 'nope'"),
        ({}, Behaviour(always_fail=True), "ToolFailed", "a.1 failed on attempt 1"),
        (
            {"tool": "hang", "timeout": 0.3},
            Behaviour(hang=True),
            "StepTimeout",
            "timed out after 0.3s",
        ),
    ],
)
def test_call_errors_reach_the_script_named(
    tmp_path: Path, params: dict[str, Any], behaviour: Behaviour | None, kind: str, text: str
) -> None:
    rec = Recorder()
    rec.behaviours["a.1"] = behaviour or Behaviour()
    result = run(tmp_path, [step("a", "one", "x", **params)], rec)
    output = result.steps["a"].output
    assert isinstance(output, dict), result.steps["a"].error
    assert output["kind"] == kind
    assert text in output["error"]
    assert output["tool"] == params.get("tool", "work")


def test_retries_apply_to_calls(tmp_path: Path) -> None:
    rec = Recorder()
    rec.behaviours["a.1"] = Behaviour(fail_attempts=1)
    result = run(tmp_path, [step("a", "one", "x")], rec, work={"retries": 1})
    assert result.steps["a"].output == {"output": "<x>"}
    assert result.steps["a"].calls[0].attempts == 2


def test_return_exceptions_keeps_order_and_failures(tmp_path: Path) -> None:
    rec = Recorder()
    rec.behaviours["a.3"] = Behaviour(always_fail=True)
    result = run(tmp_path, [step("a", "fan", "q", n=4, return_exceptions=True)], rec)
    output = result.steps["a"].output
    assert isinstance(output, dict)
    outputs = output["outputs"]
    assert [o.startswith("<q-") for o in outputs].count(True) == 3
    failed = next(o for o in outputs if o.startswith("error:"))
    assert "call " in failed
    assert "[ToolFailed]" in failed


def test_the_first_failure_fails_the_node_naming_the_call(tmp_path: Path) -> None:
    rec = Recorder()
    rec.behaviours["a.2"] = Behaviour(always_fail=True)
    result = run(tmp_path, [step("a", "fan", "q", n=3)], rec)
    assert result.steps["a"].status is StepStatus.FAILED
    assert "ToolCallError: call" in (result.steps["a"].error or "")
    assert "('work')" in (result.steps["a"].error or "")


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("text", 'did not print {"result": ...} as JSON; its output began: \'this is not JSON'),
        ("no_result", 'printed JSON without a "result" key'),
        ("crash", "the node script exited with status 4: about to fail"),
        ("silent", "the node printed nothing"),
    ],
)
def test_bad_node_output_is_a_clear_failure(tmp_path: Path, mode: str, error: str) -> None:
    result = run(tmp_path, [step("a", "bad", mode=mode)], Recorder())
    assert result.steps["a"].status is StepStatus.FAILED
    assert error in (result.steps["a"].error or "")


def test_a_result_after_debugging_prints_is_found(tmp_path: Path) -> None:
    result = run(tmp_path, [step("a", "bad", mode="chatty")], Recorder())
    assert result.steps["a"].output == "fine"


def test_a_python_command_tool_gets_the_channel_too(tmp_path: Path) -> None:
    result = run(tmp_path, [step("a", "pycmd", "hello")], Recorder())
    assert result.steps["a"].output == "<hello>"
    assert [c.tool for c in result.steps["a"].calls] == ["work"]


def test_a_killed_node_leaves_no_process_and_its_call_is_cancelled(tmp_path: Path) -> None:
    rec = Recorder()
    rec.behaviours["a.1"] = Behaviour(hang=True)
    pidfile = tmp_path / "node.pid"
    result = run(tmp_path, [step("a", "waits", "x", pidfile=str(pidfile))], rec)
    assert result.steps["a"].status is StepStatus.TIMED_OUT
    assert result.steps["a"].calls[0].status is StepStatus.CANCELLED
    assert ("a.1", 1, "cancelled") in rec.ends
    assert pidfile.read_text()  # it ran
    assert wait_until_gone("hang_in_call.py") == []


def test_a_channel_refuses_calls_after_its_attempt() -> None:

    tools = {"work": Recorder().tool()}
    broker = make_broker(tools, max_parallel=2)
    channel = broker.channel("s")

    async def main() -> None:
        assert await channel.call("work", "ok") == "<ok>"
        channel.close()
        with pytest.raises(CallRefused, match="step 's' has ended"):
            await channel.call("work", "late")

    asyncio.run(main())


class _Recording:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def call(self, tool: str, input: str, params: Any = None, timeout_s: Any = None) -> Any:
        self.calls.append(tool)
        return "served"


def _script_with_channel(fd: int, token: str) -> list[str]:
    script = (
        "import json\nfrom node_runtime import ToolCallError, call_tool\n"
        "try:\n    print(json.dumps({'output': call_tool('work', 'x')}))\n"
        "except ToolCallError as e:\n    print(json.dumps({'kind': e.kind, 'error': str(e)}))\n"
    )
    return [sys.executable, "-c", script]


def _serve_one_script(token: str, caller: _Recording) -> dict[str, Any]:
    """Serve a channel whose secret is "the-secret" to a script that presents ``token``."""

    async def main() -> dict[str, Any]:
        parent, child = socket.socketpair()
        server = asyncio.ensure_future(serve(parent, "the-secret", caller))
        try:
            env = os.environ | {ENV_FD: str(child.fileno()), ENV_TOKEN: token}
            result = await run_process(
                _script_with_channel(child.fileno(), ""), env=env, pass_fds=(child.fileno(),)
            )
        finally:
            server.cancel()
            parent.close()
            child.close()
        return dict(json.loads(result.stdout))

    return asyncio.run(main())


def test_a_script_cannot_use_a_channel_with_the_wrong_secret() -> None:
    caller = _Recording()
    answer = _serve_one_script("a-stolen-guess", caller)
    assert answer["kind"] == "ChannelClosed"
    assert "refused" in answer["error"]
    assert caller.calls == []


def test_the_right_secret_is_served() -> None:
    caller = _Recording()
    assert _serve_one_script("the-secret", caller) == {"output": "served"}
    assert caller.calls == ["work"]


def test_a_script_whose_workflow_is_gone_gets_a_clear_error() -> None:
    parent, child = socket.socketpair()
    parent.close()
    env = os.environ | {ENV_FD: str(child.fileno()), ENV_TOKEN: "t"}
    proc = subprocess.run(
        _script_with_channel(child.fileno(), ""),
        env=env,
        capture_output=True,
        text=True,
        pass_fds=(child.fileno(),),
        timeout=60,
        check=False,
    )
    child.close()
    answer = json.loads(proc.stdout)
    assert answer["kind"] == "ChannelClosed"
    assert "gone" in answer["error"] or "ended" in answer["error"]


# ---------------------------------------------------------------------------- standalone mode


def _standalone_config(tmp_path: Path) -> Path:
    (tmp_path / "local_tools.py").write_text(
        "import asyncio\n"
        "async def work(text, suffix=''):\n"
        "    await asyncio.sleep(0.01)\n"
        "    return f'<{text}{suffix}>'\n"
        "def broken(text):\n"
        "    raise ValueError('nope')\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        "tools:\n"
        "  work: {kind: function, function: 'local_tools:work', max_concurrency: 2}\n"
        "  broken: {kind: function, function: 'local_tools:broken'}\n"
    )
    return config


def _standalone(
    tmp_path: Path, script: Path, payload: dict[str, Any], *args: str
) -> dict[str, Any]:
    return dict(json.loads(_standalone_run(tmp_path, script, payload, *args).stdout)["result"])


def _standalone_run(
    tmp_path: Path, script: Path, payload: dict[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_FD, ENV_TOKEN, "EVOLVE_VERBOSE")}
    env["CODE_EVOLVER_CONFIG"] = str(_standalone_config(tmp_path))
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        input=json.dumps(payload),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # within pytest's own 120 s per test
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_standalone_runs_calls_in_process_in_order(tmp_path: Path) -> None:
    result = _standalone(tmp_path, NODES / "fan_out.py", {"input": "s", "params": {"n": 6}})
    assert result["outputs"] == [f"<s-{i}>" for i in range(6)]


def test_standalone_with_v_shows_each_call_on_stderr(tmp_path: Path) -> None:
    payload = {"input": "x", "params": {"tool": "broken"}}
    quiet = _standalone_run(tmp_path, NODES / "one_call.py", payload)
    assert "[node_runtime]" not in quiet.stderr
    shown = _standalone_run(tmp_path, NODES / "one_call.py", payload, "-v")
    lines = [line for line in shown.stderr.splitlines() if line.startswith("[node_runtime]")]
    assert lines[0].startswith("[node_runtime] → ")
    assert lines[0].endswith(" broken")
    assert lines[-1].startswith("[node_runtime] ✗ ")
    assert "ValueError: nope" in lines[-1]


def test_standalone_errors(tmp_path: Path) -> None:
    missing = _standalone(
        tmp_path, NODES / "one_call.py", {"input": "x", "params": {"tool": "nope"}}
    )
    assert missing["kind"] == "ToolNotFound"
    broken = _standalone(
        tmp_path, NODES / "one_call.py", {"input": "x", "params": {"tool": "broken"}}
    )
    assert broken["kind"] == "ToolFailed"
    assert "ValueError: nope" in broken["error"]
    params = _standalone(tmp_path, NODES / "one_call.py", {"input": "x", "params": {"suffix": "!"}})
    assert params == {"output": "<x!>"}


def test_async_twins_and_max_workers(tmp_path: Path) -> None:
    script = tmp_path / "async_node.py"
    script.write_text(
        "import asyncio\n"
        "from node_runtime import acall_tool, acall_tools_parallel, run_node\n"
        "async def go(text):\n"
        "    many = await acall_tools_parallel([('work', f'{text}{i}') for i in range(5)],\n"
        "                                      max_workers=2)\n"
        "    one = await acall_tool('work', text, suffix='?')\n"
        "    return {'many': many, 'one': one}\n"
        "run_node(lambda text: asyncio.run(go(text)))\n"
    )
    result = _standalone(tmp_path, script, {"input": "a"})
    assert result == {"many": [f"<a{i}>" for i in range(5)], "one": "<a?>"}
