"""The history writer process: its framing, its start, a writer that dies, a pipe that fills.

Unit tests run the writer on a thread (conftest's ``WriterThread``: the same ``serve``); the
ones marked ``integration`` start the real process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support import newest, plan, run_recorded, step, stored

from code_evolver import events, home
from code_evolver.config import load_config
from code_evolver.history import link, store
from code_evolver.history.link import PIPE_BYTES, WriterProcess
from code_evolver.history.recorder import HistoryRecorder
from code_evolver.history.writer import HEADER, frames
from code_evolver.llm.fake import ScriptedBackend
from code_evolver.result import RunStatus, skip_reason
from code_evolver.session import Session

REPO = Path(__file__).resolve().parent.parent
integration = pytest.mark.integration  # starts the writer process


def framed(*messages: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(list(messages))
    return HEADER.pack(len(data)) + data


def test_frames_are_taken_whole_however_the_bytes_arrive() -> None:
    stream = framed(("flush", 1)) + framed(("flush", 2), ("flush", 3))
    buffer, got = bytearray(), []
    for i in range(len(stream)):  # one byte a read: the worst a pipe can do
        buffer += stream[i : i + 1]
        got += [m for frame in frames(buffer) for m in pickle.loads(frame)]
    assert got == [("flush", 1), ("flush", 2), ("flush", 3)]
    assert buffer == bytearray()


def test_outputs_larger_than_the_pipe_reach_history_whole() -> None:
    # Three outputs of 0.7 MiB finish at once: one batch of 2 MiB, twice what the pipe holds,
    # so shipping it must wait for the writer to read, without blocking the run.
    size = PIPE_BYTES * 7 // 10
    the_plan = plan(*(step(name, tool="big", input=name) for name in "abc"))
    result = run_recorded(the_plan, {"big": lambda text: text * size})
    assert result.status is RunStatus.SUCCEEDED
    latest = stored(result.run_id).latest()
    for name in "abc":
        spilled = latest[name].output_file
        assert spilled is not None
        assert Path(spilled).read_text(encoding="utf-8") == f'"{name * size}"'


def test_a_run_keeps_its_request_and_planner_and_a_plan_not_run_leaves_no_run() -> None:
    one_step = json.dumps(
        {"steps": [{"step_id": "s", "description": "s", "tool": "combine", "input": "hi"}]}
    )
    backend = ScriptedBackend([one_step, one_step])

    async def main() -> str:
        async with Session(load_config(REPO / "config.yaml"), backend=backend) as session:
            await session.plan("plan what the rules do not know")
            answer = await session.ask("run what the rules do not know")
            return answer.outcome.source

    source = asyncio.run(main())
    db = store.connect()
    try:
        runs = store.list_runs(db)
    finally:
        db.close()
    assert [(r.request, r.planner_source) for r in runs] == [
        ("run what the rules do not know", source)
    ]


def test_the_sessions_of_a_process_share_one_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[Path] = []
    launch = link.launch_writer  # conftest's writer on a thread

    def counted(path: Path) -> WriterProcess:
        launched.append(path)
        return launch(path)

    monkeypatch.setattr(link, "launch_writer", counted)
    first = run_recorded(plan(step("a", tool="echo", input="one")), {"echo": lambda t: t})
    second = run_recorded(plan(step("a", tool="echo", input="two")), {"echo": lambda t: t})
    assert len(launched) == 1
    assert stored(first.run_id).latest()["a"].output == "one"  # each session's close
    assert stored(second.run_id).latest()["a"].output == "two"  # waits for its commit


def test_each_event_becomes_the_row_it_did() -> None:
    recorder = HistoryRecorder(
        digest=lambda tool: f"d-{tool}", identity=lambda: "fake:m1", config_digest="cfg1"
    )
    recorder.attempt_offsets[("r1", "a")] = 2  # a resumed run: a made two attempts before
    recorder.time_offsets["r1"] = 100.0
    infos = (
        events.StepInfo("a", "t1", "", (), 1),
        events.StepInfo("b", "t2", "", ("a",), 2, 3),
        events.StepInfo("d", "t1", "", (), 1),
    )
    first = [
        {"step_id": i.step_id, "tool": i.tool, "parallel_group": i.parallel_group} for i in infos
    ]
    grown = [*first, {"step_id": "c", "tool": "t3"}]
    for event in (
        events.PlanStarted("r1", "what was asked"),
        events.PlanFinished("r1", "rules", 0.1, 0),
        events.RunStarted("r1", infos, json.dumps({"steps": first}), run_input="piped"),
        events.StepRetrying("a", 1, "boom", 0.1, 1.0, input="x", run_id="r1", began=0.5),
        events.CallFinished(
            "a", "a.c1", "t3", "succeeded", 0.4, None, 1.9, run_id="r1", step_attempt=2
        ),
        events.StepSucceeded(
            "a", 2, 0.2, {"k": 1}, 2.0, input="x", run_id="r1", params={"p": 1}, began=1.5
        ),
        events.PlanExtended(
            (events.StepInfo("c", "t3", "", ("b",), 3),),
            json.dumps({"steps": grown}),
            2.1,
            run_id="r1",
        ),
        events.StepFailed("b", 1, "slow", "timed_out", 3.0, input="y", run_id="r1", began=2.5),
        events.StepSkipped("c", "b", 3.0, run_id="r1"),
        events.StepCancelled("d", True, 3.0, run_id="r1", attempt=1, began=0.2),
        events.RunFinished("failed", 3.0, 2.0, 1.5, 2, 3.1, run_id="r1"),
        events.RunStarted("r1", infos, json.dumps({"steps": grown})),  # resumed: no new plan
        events.RunFinished("failed", 1.0, None, None, 1, 1.1, run_id="r1"),
        events.RunStarted("r2", infos, json.dumps({"steps": first})),
    ):
        recorder(event)
    recorder.abandon()  # a second Ctrl-C: r2 is under way
    recorder.close()
    db = store.connect()
    try:
        runs = db.execute(
            "SELECT run_id, request, planner_source, config_digest, run_input, status, backend, "
            "model, plan FROM runs ORDER BY run_id"
        ).fetchall()
        rows = db.execute(
            "SELECT step_id, attempt, call_id, tool, tool_digest, wave, parallel_group, status, "
            "started_s, finished_s, input, output, error, params, cache_key IS NOT NULL "
            "FROM step_executions ORDER BY step_id, attempt, call_id"
        ).fetchall()
    finally:
        db.close()
    plan_one, plan_two = json.dumps({"steps": first}), json.dumps({"steps": grown})
    assert runs == [
        ("r1", "what was asked", "rules", "cfg1", "piped", "failed", "fake", "m1", plan_two),
        ("r2", "", None, "cfg1", None, "interrupted", None, None, plan_one),
    ]
    skipped = skip_reason("b")
    assert rows == [
        ("a", 3, "", "t1", "d-t1", 1, None, "failed", 100.5, 101.0,
         "x", None, "boom", None, 0),
        ("a", 4, "", "t1", "d-t1", 1, None, "succeeded", 101.5, 102.0,
         "x", '{"k": 1}', None, '{"p": 1}', 1),
        ("a", 4, "a.c1", "t3", "d-t3", None, None, "succeeded", 101.5, 101.9,
         None, None, None, None, 0),
        ("b", 1, "", "t2", "d-t2", 2, "3", "timed_out", 102.5, 103.0,
         "y", None, "slow", None, 0),
        ("c", 1, "", "t3", "d-t3", 3, None, "skipped", None, None,
         None, None, skipped, None, 0),
        ("d", 1, "", "t1", "d-t1", 1, None, "cancelled", 100.2, 103.0,
         None, None, "cancelled", None, 0),
    ]  # fmt: skip


def test_a_history_that_cannot_be_opened_starts_one_writer_and_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "home").write_text("a file where the folder should be")
    monkeypatch.setenv("EVOLVE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(home, "_warned", set())
    launched: list[Path] = []
    launch = link.launch_writer

    def counted(path: Path) -> WriterProcess:
        launched.append(path)
        return launch(path)

    monkeypatch.setattr(link, "launch_writer", counted)
    with caplog.at_level(logging.WARNING, logger="code_evolver"):
        for text in ("one", "two", "three"):
            result = run_recorded(plan(step("a", tool="echo", input=text)), {"echo": lambda t: t})
            assert result.status is RunStatus.SUCCEEDED
    assert len(launched) == 1  # the process goes on without history, as it was told
    warnings = [r.getMessage() for r in caplog.records if r.name == "code_evolver"]
    assert len(warnings) == 1
    assert "cannot write the run history" in warnings[0]


# ---------------------------------------------------------------- the real process


@integration
def test_the_writer_starts_light_in_a_session_of_its_own(tmp_path: Path) -> None:
    modules = subprocess.run(
        [sys.executable, "-S", "-I", "-c", link.start_command("print(sorted(sys.modules))")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for heavy in ("typing", "pathlib", "dataclasses", "code_evolver.events"):
        assert f"'{heavy}'" not in modules  # each would slow every evolve's writer start
    process = link.launch_writer(tmp_path / "history.db")
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        assert isinstance(process, subprocess.Popen)
        assert os.getsid(process.pid) != os.getsid(0)  # Ctrl-C in the terminal is not its
        process.stdin.write(framed(("flush", 7)))
        process.stdin.flush()
        assert process.stdout.readline() == b"ack 7\n"
        os.kill(process.pid, signal.SIGINT)  # nor is a stray one, once it is up
        process.stdin.write(framed(("flush", 8)))
        process.stdin.flush()
        assert process.stdout.readline() == b"ack 8\n"
    finally:
        process.stdin.close()
        assert process.wait(timeout=30) == 0
        process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()


@integration
def test_a_writer_that_dies_mid_run_is_one_warning_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    started: list[WriterProcess] = []
    real = link.launch_writer

    def launch(path: Path) -> WriterProcess:
        started.append(real(path))
        return started[-1]

    def kill(text: str) -> str:
        process = started[0]
        assert isinstance(process, subprocess.Popen)
        process.kill()
        process.wait()
        time.sleep(0.1)  # the recorder's reader hears the end
        return text

    monkeypatch.setattr(link, "launch_writer", launch)
    monkeypatch.setattr(home, "_warned", set())  # warnings are once a process
    the_plan = plan(step("a", tool="kill", input="x"), *(step(f"b{i}", "a") for i in range(20)))
    with caplog.at_level(logging.WARNING, logger="code_evolver"):
        result = run_recorded(the_plan, {"kill": kill, "work": lambda text: text})
    assert result.status is RunStatus.SUCCEEDED
    warnings = [r.getMessage() for r in caplog.records if r.name == "code_evolver"]
    assert len(warnings) == 1
    assert "writer process stopped (killed by SIGKILL)" in warnings[0]
    assert "goes on without run history" in warnings[0]


@integration
def test_a_finished_step_is_committed_while_the_loop_stays_busy(tmp_path: Path) -> None:
    # One step, then 5,000 no-op steps that keep evolve's event loop busy for a second or
    # more without a pause. The first step's record must be in the database while the run
    # is still going: a writer that shares the loop's interpreter only got to it at the end.
    (tmp_path / "storm_tools.py").write_text("async def noop(text):\n    return text\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text("tools:\n  noop: {kind: function, function: 'storm_tools:noop'}\n")
    steps: list[dict[str, Any]] = [{"step_id": "first", "tool": "noop", "input": "go"}]
    steps += [
        {"step_id": f"s{i}", "tool": "noop", "input": "{first}", "depends_on": ["first"]}
        for i in range(5_000)
    ]
    the_plan = tmp_path / "plan.json"
    the_plan.write_text(json.dumps({"request": "a storm", "steps": steps}))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    said = (tmp_path / "stderr").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "code_evolver", "run", str(the_plan), "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=said,
        env=env,
    )
    seen_running = False
    try:
        while proc.poll() is None and not seen_running:
            if store.default_path().exists():
                db = store.connect(create=False)
                try:
                    seen_running = bool(
                        db.execute(
                            "SELECT 1 FROM runs JOIN step_executions USING (run_id) "
                            "WHERE runs.status = 'running' AND step_id = 'first'"
                        ).fetchone()
                    )
                finally:
                    db.close()
            time.sleep(0.005)
    finally:
        assert proc.wait(timeout=300) == 0
        said.close()
    assert seen_running
    assert "history" not in (tmp_path / "stderr").read_text()  # its writer ended quietly


@integration
def test_records_in_the_pipe_are_committed_after_evolve_is_killed(tmp_path: Path) -> None:
    # The database is locked, so the writer holds the first step's record unwritten; evolve
    # is killed with kill -9 while a second step waits; once the lock goes, the record lands.
    ran, gate = tmp_path / "ran", tmp_path / "gate"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "tools:\n"
        f"  quick: {{kind: command, command: [sh, -c, 'cat; echo > {ran}']}}\n"
        "  stuck: {kind: command, command: [sh, -c, "
        f"'while [ ! -e {gate} ]; do sleep 0.05; done']}}\n"
    )
    the_plan = tmp_path / "plan.json"
    steps = [
        {"step_id": "first", "tool": "quick", "input": "kept"},
        {"step_id": "second", "tool": "stuck", "input": "{first}"},
    ]
    the_plan.write_text(json.dumps({"request": "killed", "steps": steps}))
    store.connect().close()  # the schema, so that the lock below is all the writer meets
    lock = sqlite3.connect(store.default_path(), isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    proc = subprocess.Popen(
        [sys.executable, "-m", "code_evolver", "run", str(the_plan), "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ran.exists():
            assert time.monotonic() < deadline
            assert proc.poll() is None
            time.sleep(0.02)
        time.sleep(0.5)  # shipped within 2 ms of the step's end
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        lock.execute("ROLLBACK")
        lock.close()
    deadline = time.monotonic() + 30
    while (run := newest()) is None or "first" not in run.latest():
        assert time.monotonic() < deadline, "the shipped record never arrived"
        time.sleep(0.05)
    assert run.latest()["first"].output == "kept"
    assert run.status == "running"  # nobody told its end: it can be resumed
