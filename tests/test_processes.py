"""Real processes: timeouts and cancellation kill the whole process group, nothing is left."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from code_evolver.processes import describe_exit, run_process, tail

pytestmark = pytest.mark.integration

# A child that starts a grandchild (both in the same process group), writes the grandchild's pid,
# then hangs. Only killing the group stops both.
HANG_WITH_GRANDCHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
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


async def _start_and_cancel(tmp_path: Path, how: str) -> list[int]:
    pidfile = tmp_path / "grandchild.pid"
    task = asyncio.ensure_future(
        run_process([sys.executable, "-c", HANG_WITH_GRANDCHILD, str(pidfile)])
    )
    for _ in range(500):
        if pidfile.exists() and pidfile.read_text():
            break
        await asyncio.sleep(0.01)
    grandchild = int(pidfile.read_text())
    children = [
        int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == os.getpid()
    ]
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


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_cancelled_process_group_leaves_no_orphan(tmp_path: Path, how: str) -> None:
    pids = asyncio.run(_start_and_cancel(tmp_path, how))
    assert len(pids) >= 2
    assert wait_gone(pids) == []


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


def test_describe_exit_and_tail() -> None:
    assert describe_exit(0) == "exit status 0"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert tail(b"a\n\nb\n") == "a | b"
    assert tail(b"x" * 5000, chars=10) == "..." + "x" * 10


def test_step_timeout_kills_a_hanging_command_and_its_children(tmp_path: Path) -> None:
    from support import execute, plan, step

    from code_evolver.result import StepStatus
    from code_evolver.tools.command import CommandTool

    pidfile = tmp_path / "grandchild.pid"
    tools = {"hang": CommandTool("hang", ["python3", "-c", HANG_WITH_GRANDCHILD, str(pidfile)])}
    result = execute(plan(step("h", tool="hang", timeout_s=1.0)), tools, retries=0)
    assert result.steps["h"].status is StepStatus.TIMED_OUT
    assert result.steps["h"].error == "timed out after 1s"
    assert wait_gone([int(pidfile.read_text())]) == []
