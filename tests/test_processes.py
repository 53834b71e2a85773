"""Child processes: timeouts and cancellation kill the whole process group, nothing is left, and
a cancel is never swallowed, even while waiting for pipes that another session holds; output
past the cap stops the writer; running out of descriptors waits instead of failing; every kind
of process ends alike."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from code_evolver import home
from code_evolver.config import default_max_parallel
from code_evolver.errors import ToolFailed
from code_evolver.launch import processes, spawn
from code_evolver.launch.endings import describe_exit, tail
from code_evolver.launch.processes import run_process, when_resources_allow

integration = pytest.mark.integration  # starts real processes
STRATEGIES = ["pidfd", "asyncio"] if spawn.AVAILABLE else ["asyncio"]

# A child that starts a grandchild (both in the same process group), writes the grandchild's pid,
# then hangs. Only killing the group stops both.
HANG_WITH_GRANDCHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", sys.argv[1]])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


def _children() -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == os.getpid()}


async def _start_and_cancel(tmp_path: Path, how: str) -> list[int]:
    pidfile = tmp_path / "grandchild.pid"
    others = _children()  # of earlier tests (a history writer ends when its session does)
    task = asyncio.ensure_future(
        run_process([sys.executable, "-c", HANG_WITH_GRANDCHILD, str(pidfile)])
    )
    for _ in range(500):
        if pidfile.exists() and pidfile.read_text():
            break
        await asyncio.sleep(0.01)
    grandchild = int(pidfile.read_text())
    children = sorted(_children() - others)
    if how == "timeout":
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await task
    else:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return [grandchild, *children]


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return -1


@integration
@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_cancelled_process_group_leaves_no_orphan(tmp_path: Path, how: str) -> None:
    pids = asyncio.run(_start_and_cancel(tmp_path, how))
    assert len(pids) >= 2
    assert wait_gone(pids) == []


@integration
def test_background_grandchild_does_not_hold_the_step_open() -> None:
    # The child exits at once but leaves a grandchild holding stdout; the step must still end.
    script = (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('done')"
    )
    started = time.monotonic()
    result = asyncio.run(run_process([sys.executable, "-c", script]))
    assert result.returncode == 0
    assert result.stdout.strip() == b"done"
    assert time.monotonic() - started < 30


@integration
def test_cancel_while_waiting_for_pipes_held_by_another_session(tmp_path: Path) -> None:
    # The background sleep leaves the process group (setsid) but keeps stdout open, so after sh
    # exits run_process waits for the pipes; a cancel arriving then must still propagate.
    pidfile = tmp_path / "escaped.pid"
    script = (
        f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 3' & "
        f"while [ ! -s {pidfile} ]; do sleep 0.01; done; echo hi"
    )

    async def scenario() -> float:
        task = asyncio.ensure_future(run_process(["sh", "-c", script]))
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
        began = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - began

    try:
        assert asyncio.run(scenario()) < 1.0
    finally:
        if pidfile.exists() and pidfile.read_text().strip():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


@integration
def test_run_process_stops_a_runaway_writer() -> None:
    began = time.monotonic()
    result = asyncio.run(run_process(["yes"], max_stdout=1_000_000))
    assert result.overflowed
    assert len(result.stdout) == 1_000_000
    assert time.monotonic() - began < 5


def test_describe_exit_and_tail() -> None:
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert tail(b"a\n\nb\n") == "a | b"
    assert tail(b"x" * 5000, chars=10) == "..." + "x" * 10


@integration
def test_step_timeout_kills_a_hanging_command_and_its_children(tmp_path: Path) -> None:
    from support import execute, plan, step, wait_until_gone

    from code_evolver.result import StepStatus
    from code_evolver.tools.command import CommandTool

    pidfile = tmp_path / "grandchild.pid"
    tools = {"hang": CommandTool("hang", ["python3", "-c", HANG_WITH_GRANDCHILD, str(pidfile)])}
    result = execute(plan(step("h", tool="hang", timeout_s=1.0)), tools, retries=0)
    assert result.steps["h"].status is StepStatus.TIMED_OUT
    assert result.steps["h"].error == "timed out after 1s"
    assert pidfile.read_text()  # the grandchild ran (its pid is its namespace's)
    assert wait_until_gone(str(pidfile)) == []


def test_running_out_of_descriptors_waits_and_tries_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(home, "_warned", set())
    tries: list[int] = []

    async def start() -> str:
        tries.append(1)
        if len(tries) < 4:
            raise OSError(errno.EMFILE, "Too many open files")
        return "started"

    with caplog.at_level(logging.WARNING, logger="code_evolver"):
        assert asyncio.run(when_resources_allow(start)) == "started"
    assert len(tries) == 4
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("out of file descriptors or processes (Too many open files;")


def test_other_start_errors_are_not_retried() -> None:
    async def start() -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file")

    with pytest.raises(FileNotFoundError):
        asyncio.run(when_resources_allow(start))


def test_the_default_concurrency_fits_the_descriptor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    for soft, expected in ((1024, 8), (256, 8), (128, 8), (100, 4), (64, 1), (10, 1)):
        monkeypatch.setattr(resource, "getrlimit", lambda _, soft=soft: (soft, soft))
        assert default_max_parallel() == expected
    monkeypatch.setattr(resource, "getrlimit", lambda _: (resource.RLIM_INFINITY,) * 2)
    assert default_max_parallel() == 8


@integration
@pytest.mark.timeout(270)  # the subprocess's own bound applies
def test_too_many_open_files_is_back_pressure_not_failure(tmp_path: Path) -> None:
    """A run of many `true` steps under `ulimit -n 64` at --max-parallel 64: every step waits
    for descriptors instead of failing."""
    steps = [{"step_id": f"s{i}", "tool": "nop", "input": ""} for i in range(300)]
    (tmp_path / "plan.json").write_text(json.dumps({"steps": steps}))
    (tmp_path / "config.yaml").write_text('tools:\n  nop: {kind: command, command: ["true"]}\n')

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "code_evolver",
            "run",
            "plan.json",
            "--max-parallel",
            "64",
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=low_limit,
        env=os.environ | {"EVOLVE_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert {s["status"] for s in result["steps"].values()} == {"succeeded"}
    assert "warning: out of file descriptors or processes" in done.stderr


@integration
def test_a_node_writing_too_much_is_stopped_with_the_output_cap_message(tmp_path: Path) -> None:
    from code_evolver.tools.base import ToolCall
    from code_evolver.tools.node import NodeTool

    script = tmp_path / "flood.py"
    script.write_text("import sys\nsys.stdout.write('x' * 5_000_000)\n")
    tool = NodeTool("flood", script, max_stdout=100_000)
    with pytest.raises(ToolFailed) as info:
        asyncio.run(tool.run(ToolCall("", {}, "s1")))
    assert str(info.value) == (
        "the node script wrote more than 100,000 bytes to stdout and was stopped"
    )
    assert not info.value.retryable


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way of starting children that works here: the pidfd one and asyncio's fallback."""
    monkeypatch.setattr(processes, "STRATEGY", request.param)
    return str(request.param)


LIST_OPEN_FDS = """
import os
def is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
print(" ".join(str(fd) for fd in range(3, 4096) if is_open(fd)))
"""


@integration
def test_only_pass_fds_reach_the_child(strategy: str) -> None:
    inheritable = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(inheritable, True)  # what a careless library (or our own parent) leaves
    private = os.open(os.devnull, os.O_RDONLY)
    passed, kept = os.pipe()
    try:
        result = asyncio.run(
            run_process([sys.executable, "-S", "-c", LIST_OPEN_FDS], pass_fds=[passed])
        )
    finally:
        for fd in (inheritable, private, passed, kept):
            os.close(fd)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(passed).encode()]


@integration
def test_the_child_leads_a_new_session_and_process_group(strategy: str) -> None:
    script = "import os; print(os.getpid(), os.getpgid(0), os.getsid(0))"
    result = asyncio.run(run_process([sys.executable, "-S", "-c", script]))
    pid, pgid, sid = result.stdout.split()
    assert pid == pgid == sid
    assert int(sid) != os.getsid(0)


BURN_CPU = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"


@pytest.fixture
def pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    if not spawn.AVAILABLE:
        pytest.skip("no pidfd here: asyncio's path runs")
    monkeypatch.setattr(processes, "STRATEGY", "pidfd")


@integration
@pytest.mark.usefixtures("pidfd")
def test_resource_usage_is_reported() -> None:
    result = asyncio.run(run_process([sys.executable, "-S", "-c", BURN_CPU]))
    assert result.cpu_s > 0.1
    assert result.max_rss_kb > 1000  # an interpreter holds a few MB at least


@integration
@pytest.mark.usefixtures("pidfd")
def test_resource_usage_counts_the_descendants_the_child_waited_for() -> None:
    script = f"{sys.executable} -S -c '{BURN_CPU}'; echo done"
    result = asyncio.run(run_process(["sh", "-c", script]))
    assert result.stdout.strip() == b"done"
    assert result.cpu_s > 0.1


@integration
def test_the_fallback_reports_no_resource_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "STRATEGY", "asyncio")
    result = asyncio.run(run_process(["true"]))
    assert (result.returncode, result.cpu_s, result.max_rss_kb) == (0, 0.0, 0)


@integration
def test_start_errors_stay_what_subprocess_raises(tmp_path: Path, strategy: str) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(FileNotFoundError):
        asyncio.run(run_process(["no-such-program-xyz"]))
    with pytest.raises(PermissionError):
        asyncio.run(run_process([str(script)]))
    with pytest.raises(FileNotFoundError):
        asyncio.run(run_process(["true"], cwd=tmp_path / "missing"))
    script.chmod(0o755)
    result = asyncio.run(run_process(["./script.sh"], cwd=tmp_path))
    assert result.stdout == b"hi\n"


@integration
@pytest.mark.usefixtures("pidfd")
def test_a_start_cancelled_in_its_spawn_thread_leaves_no_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancelled while a worker thread starts the child: the start is seen through, and what
    it started is killed and reaped before the cancellation goes on."""
    monkeypatch.setattr(processes, "SPAWN_THREADS", 2)
    real_spawn = spawn.spawn
    entered = threading.Event()
    pids: list[int] = []

    def slow_spawn(*args: object, **kwargs: object) -> spawn.Spawned:
        entered.set()
        time.sleep(0.3)  # the cancel arrives meanwhile
        child = real_spawn(*args, **kwargs)  # type: ignore[arg-type]
        pids.append(child.pid)
        return child

    monkeypatch.setattr(spawn, "spawn", slow_spawn)

    async def scenario() -> None:
        task = asyncio.ensure_future(run_process(["sleep", "30"]))
        await asyncio.to_thread(entered.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    (pid,) = pids
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped, not a zombie


def test_a_start_wait_cancelled_while_its_socket_is_readable_raises_nothing_later() -> None:
    """The fork server's first word: the reader may fire for a wait that was just cancelled
    (a run stopping); that must not be an error nobody catches ("Future.set_result")."""
    import socket

    from code_evolver.launch.forkserver import _started

    async def main() -> list[dict[str, object]]:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _, context: errors.append(context))
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        with ours, theirs:
            task = asyncio.create_task(_started(loop, ours.fileno()))
            await asyncio.sleep(0)  # it waits for the socket
            theirs.send(b"x")  # readable; and in the same turn of the loop, the run stops:
            loop.call_soon(task.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.01)
        return errors

    assert asyncio.run(main()) == []
