"""Run history: what a run leaves in history.db, reading it back, resume, the CLI over it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support import newest, plan, run_recorded, step, stored, write_plan

from code_evolver.config import Config, load_config
from code_evolver.errors import PlanError
from code_evolver.history import store
from code_evolver.history.records import RunRecord
from code_evolver.history.resume import resumption
from code_evolver.history.writer import MAX_INLINE_OUTPUT
from code_evolver.organizer import organize
from code_evolver.plan import Plan
from code_evolver.result import RunResult, RunStatus
from code_evolver.session import Session

REPO = Path(__file__).resolve().parent.parent


def config(**execution: Any) -> Config:
    return load_config(REPO / "config.yaml").with_execution(**execution)


class Flaky:
    """A tool that fails until ``healed``; counts its calls."""

    def __init__(self) -> None:
        self.healed = False
        self.calls = 0

        def flaky(text: str) -> str:
            self.calls += 1
            if not self.healed:
                raise RuntimeError("not yet")
            return f"fixed {text}"

        self.tool = flaky


def shout(text: str) -> str:
    return text.upper()


DIAMOND = plan(
    step("a", tool="shout", input="hello"),
    step("b", "a", tool="flaky"),
    step("c", "a", tool="shout"),
    step("d", "b", "c", tool="shout"),
    request="a diamond",
)


# ---------------------------------------------------------------- recording


def test_a_run_is_recorded_with_its_plan_steps_inputs_and_outputs() -> None:
    flaky = Flaky()
    flaky.healed = True
    result = run_recorded(DIAMOND, {"shout": shout, "flaky": flaky.tool})
    run = stored(result.run_id)
    assert run.request == "a diamond"
    assert run.status == "succeeded"
    assert run.plan is not None
    assert [s["step_id"] for s in run.plan["steps"]] == ["a", "b", "c", "d"]
    assert run.wall_s == pytest.approx(result.run_s)
    assert run.peak_concurrency == result.peak_concurrency
    latest = run.latest()
    assert latest["a"].output == "HELLO"
    assert latest["b"].input == "HELLO"  # the rendered input, references filled in
    assert latest["d"].output == "FIXED HELLO+HELLO"
    assert [latest[s].wave for s in "abcd"] == [1, 2, 2, 3]
    assert all(r.started_s is not None and r.finished_s is not None for r in latest.values())
    assert latest["a"].tool_digest is not None


def test_a_process_leaving_at_once_leaves_no_run_running() -> None:
    from code_evolver.history import recorder

    async def main() -> RunRecord | None:
        entered, release = asyncio.Event(), asyncio.Event()

        async def wait(text: str) -> str:
            entered.set()
            await release.wait()
            return text

        session = Session(config(), tools={"shout": shout, "wait": wait})
        the_plan = plan(step("a", tool="shout", input="hi"), step("b", "a", tool="wait"))
        running = asyncio.create_task(session.run(organize(the_plan, session.registry)))
        await entered.wait()  # a is done, b runs
        recorder.abandon_all()  # what a second Ctrl-C does before the process ends
        run = newest()
        release.set()
        await running
        await session.close()
        return run

    run = asyncio.run(main())
    assert run is not None
    assert run.status == "interrupted"
    assert run.latest()["a"].output == "HI"  # what was heard is committed first


def test_each_failed_attempt_is_a_row_of_its_own() -> None:
    result = run_recorded(
        plan(step("b", tool="flaky", input="x")), {"flaky": Flaky().tool}, config(retries=2)
    )
    run = stored(result.run_id)
    raised_at = Flaky().tool.__code__.co_firstlineno + 3  # the raise in flaky()
    error = f"RuntimeError: not yet (at test_history.py:{raised_at} in flaky)"
    assert [(r.attempt, r.status, r.error) for r in run.steps] == [
        (1, "failed", error),
        (2, "failed", error),
        (3, "failed", error),
    ]


def test_skipped_steps_are_recorded_with_their_cause() -> None:
    result = run_recorded(DIAMOND, {"shout": shout, "flaky": Flaky().tool})
    latest = stored(result.run_id).latest()
    assert latest["b"].status == "failed"
    assert latest["d"].status == "skipped"
    assert latest["d"].error == "skipped: dependency 'b' did not succeed"
    assert latest["d"].started_s is None


def test_a_large_output_goes_to_a_file_and_resume_reads_it_back() -> None:
    big = "x" * (MAX_INLINE_OUTPUT + 10)
    flaky = Flaky()
    result = run_recorded(
        plan(step("a", tool="big", input="-"), step("b", "a", tool="flaky")),
        {"big": lambda text: big, "flaky": flaky.tool},
    )
    run = stored(result.run_id)
    first = run.latest()["a"]
    assert first.output is None
    assert first.output_file is not None
    session = Session(config(), tools={"big": lambda text: big, "flaky": flaky.tool})
    assert resumption(run, session.registry).kept["a"].output == big


def test_history_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOLVE_HOME", str(tmp_path))
    run_recorded(plan(step("a", tool="shout")), {"shout": shout}, config(history=False))
    assert not (tmp_path / store.FILE_NAME).exists()


def test_a_history_newer_than_this_evolve_is_refused_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(store.HistoryError, match="newer than this evolve knows"):
        store.connect(path)


def test_runs_are_listed_newest_first_and_found_by_a_unique_prefix() -> None:
    ids = [run_recorded(plan(step("a", tool="shout")), {"shout": shout}).run_id for _ in range(3)]
    db = store.connect()
    listed = [r.run_id for r in store.list_runs(db)]
    assert listed == ids[::-1]
    assert store.find_run(db, ids[0][:6]).run_id == ids[0]
    with pytest.raises(LookupError, match="no run"):
        store.find_run(db, "zzz")
    assert store.list_runs(db, status="failed") == []


# ---------------------------------------------------------------- resume


def test_resume_runs_only_what_did_not_succeed_under_the_same_run() -> None:
    flaky = Flaky()
    tools = {"shout": shout, "flaky": flaky.tool}
    first = run_recorded(DIAMOND, tools)
    assert first.status is RunStatus.FAILED
    run = stored(first.run_id)
    flaky.healed = True

    async def main() -> RunResult:
        session = Session(config(), tools=tools)
        try:
            plan_again = resumption(run, session.registry)
            assert plan_again.rerun == ["b", "d"]
            assert sorted(plan_again.kept) == ["a", "c"]
            return await session.resume(run, plan_again)
        finally:
            await session.close()

    calls_before = flaky.calls
    result = asyncio.run(main())
    assert result.run_id == first.run_id
    assert result.status is RunStatus.SUCCEEDED
    assert flaky.calls == calls_before + 1  # only b ran again (a and c kept their outputs)
    assert result.outputs["d"] == "FIXED HELLO+HELLO"
    again = stored(first.run_id)
    assert again.status == "succeeded"
    b_attempts = [(r.attempt, r.status) for r in again.steps if r.step_id == "b"]
    assert b_attempts == [(1, "failed"), (2, "succeeded")]  # numbered after the first
    assert [(r.attempt, r.status) for r in again.steps if r.step_id == "a"] == [(1, "succeeded")]


def test_a_step_whose_tool_changed_runs_again_with_the_steps_that_read_it() -> None:
    flaky = Flaky()
    flaky.healed = True
    first = run_recorded(DIAMOND, {"shout": shout, "flaky": flaky.tool})
    db = store.connect()
    db.execute("UPDATE step_executions SET tool_digest = 'old' WHERE step_id = 'c'")
    db.close()
    session = Session(config(), tools={"shout": shout, "flaky": flaky.tool})
    again = resumption(stored(first.run_id), session.registry)
    assert again.rerun == ["c", "d"]
    assert again.notes == [
        "c: tool 'shout' changed since the run; running it again and the steps that read it"
    ]


def test_a_run_without_a_stored_plan_cannot_be_resumed() -> None:
    run = RunRecord(run_id="r1", request="x", status="running", started_at="2026-01-01")
    with pytest.raises(PlanError, match="no stored plan"):
        resumption(run, Session(config()).registry)


# ---------------------------------------------------------------- a process that dies


@pytest.mark.integration  # a real evolve process, killed with SIGKILL mid-run
def test_kill_9_loses_no_finished_step_and_resume_runs_the_rest(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    flag = tmp_path / "go"
    ran = tmp_path / "quick-ran"  # one line per run of the quick step
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "tools:\n"
        "  upper:\n"
        "    kind: command\n"
        f"    command: [sh, -c, 'echo ran >> {ran}; tr [:lower:] [:upper:]']\n"
        "  gated:\n"
        "    kind: command\n"
        f"    command: [sh, -c, 'while [ ! -e {flag} ]; do sleep 0.05; done; cat']\n"
    )
    the_plan = write_plan(
        tmp_path,
        "one quick, one stuck",
        [("quick", "upper", "done"), ("stuck", "gated", "{quick} later")],
    )
    env = {**os.environ, "EVOLVE_HOME": os.environ["EVOLVE_HOME"]}
    command = [sys.executable, "-m", "code_evolver"]
    proc = subprocess.Popen(
        [*command, "run", str(the_plan), "--config", str(cfg), "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # until the quick step's record is committed, while the other one runs
            assert time.monotonic() < deadline
            assert proc.poll() is None
            if store.default_path().exists() and (run := newest()) and "quick" in run.latest():
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    run = newest()
    assert run is not None
    assert run.status == "running"  # the process died: nobody wrote its end
    assert run.latest()["quick"].output == "DONE"
    assert "stuck" not in run.latest()
    flag.touch()
    resumed = subprocess.run(
        [*command, "resume", run.run_id, "--config", str(cfg), "--json"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    document = json.loads(resumed.stdout)
    assert document["rerun"] == ["stuck"]
    assert document["steps"]["stuck"]["output"] == "DONE later"
    assert stored(run.run_id).status == "succeeded"
    assert ran.read_text().splitlines() == ["ran"]  # the finished step did not run again


@pytest.mark.integration  # a node script: a real process calling tools back
def test_nested_calls_are_recorded_under_their_step(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    fan = REPO / "tests" / "nodes" / "fan_out.py"
    cfg.write_text(f"tools:\n  fan: {{kind: node, script: {fan}}}\n")
    the_plan = plan(step("a", tool="fan", input="hi", params={"n": 3}))
    result = run_recorded(the_plan, {"work": lambda text: f"<{text}>"}, load_config(cfg))
    assert result.ok, result.steps["a"].error
    run = stored(result.run_id)
    calls = sorted((r for r in run.steps if r.call_id), key=lambda r: r.call_id or "")
    assert [(c.step_id, c.call_id, c.tool, c.status, c.attempt) for c in calls] == [
        ("a", f"a.{i}", "work", "succeeded", 1) for i in (1, 2, 3)
    ]
    step_row = run.latest()["a"]
    assert all(
        step_row.started_s is not None
        and c.started_s is not None
        and c.started_s >= step_row.started_s
        for c in calls
    )


# ---------------------------------------------------------------- --reuse


def run_counting(the_plan: Plan, calls: list[str], *, reuse: bool) -> RunResult:
    def count(text: str, suffix: str = "") -> str:
        calls.append(text)
        return text + suffix

    async def main() -> RunResult:
        session = Session(config(), tools={"count": count}, reuse_steps=reuse)
        try:
            return await session.run(organize(the_plan, session.registry))
        finally:
            await session.close()

    return asyncio.run(main())


def test_reuse_takes_outputs_of_the_same_work_from_earlier_runs() -> None:
    calls: list[str] = []
    the_plan = plan(step("a", tool="count", input="x"), step("b", "a", tool="count"))
    run_counting(the_plan, calls, reuse=False)
    run_counting(the_plan, calls, reuse=False)
    assert len(calls) == 4  # without --reuse every step runs
    again = run_counting(the_plan, calls, reuse=True)
    assert len(calls) == 4  # no step ran: both outputs came from history
    assert again.ok
    assert again.reused == 2
    assert again.outputs == {"a": "x", "b": "x"}
    assert again.to_json()["reused"] == 2


def test_reuse_misses_when_the_input_or_params_differ() -> None:
    calls: list[str] = []
    run_counting(plan(step("a", tool="count", input="x")), calls, reuse=True)
    other_input = run_counting(plan(step("a", tool="count", input="y")), calls, reuse=True)
    other_params = run_counting(
        plan(step("a", tool="count", input="x", params={"suffix": "!"})), calls, reuse=True
    )
    assert calls == ["x", "y", "x"]
    assert other_input.reused == other_params.reused == 0
    assert other_params.outputs == {"a": "x!"}


def test_reuse_misses_when_the_tool_changed() -> None:
    calls: list[str] = []
    the_plan = plan(step("a", tool="count", input="x"))
    run_counting(the_plan, calls, reuse=True)

    def count_better(text: str) -> str:  # the same name, another definition
        return text * 2

    async def main() -> RunResult:
        session = Session(config(), tools={"count": count_better}, reuse_steps=True)
        try:
            return await session.run(organize(the_plan, session.registry))
        finally:
            await session.close()

    changed = asyncio.run(main())
    assert changed.reused == 0
    assert changed.outputs == {"a": "xx"}


def test_two_openers_of_a_new_history_migrate_it_once(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "history.db"
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            store.connect(path).close()
        except BaseException as exc:  # collected: the test thread asserts
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db = store.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    db.close()


def test_a_history_of_an_older_schema_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    old = sqlite3.connect(path)
    old.executescript(store.MIGRATIONS[0])
    old.execute("PRAGMA user_version = 1")
    old.execute(
        "INSERT INTO runs (run_id, request, status, started_at) "
        "VALUES ('r1', 'an old run', 'succeeded', '2026-01-01T00:00:00+00:00')"
    )
    old.execute(
        "INSERT INTO step_executions (run_id, step_id, attempt, tool, status, output) "
        "VALUES ('r1', 'a', 1, 'upper', 'succeeded', '\"OLD\"')"
    )
    old.commit()
    old.close()
    db = store.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    run = store.find_run(db, "r1")
    assert run.request == "an old run"
    assert run.latest()["a"].output == "OLD"
    columns = {row[1] for row in db.execute("PRAGMA table_info(step_executions)")}
    assert {"params", "cache_key"} <= columns
    db.close()


@pytest.mark.integration  # several evolve processes writing one history at once
def test_concurrent_evolve_processes_share_one_history(
    tmp_path: Path, template_config: str
) -> None:
    import os
    import subprocess
    import sys

    plans = []
    for n in range(4):
        path = tmp_path / f"plan{n}.json"
        steps = [{"step_id": f"s{i}", "tool": "template", "input": f"{n}-{i}"} for i in range(30)]
        path.write_text(json.dumps({"request": f"plan {n}", "steps": steps}))
        plans.append(path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "code_evolver", "run", str(p), "--config", template_config],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=dict(os.environ),
        )
        for p in plans
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    db = store.connect()
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    runs = store.list_runs(db)
    assert sorted(r.request for r in runs) == [f"plan {n}" for n in range(4)]
    for listed in runs:
        run = store.find_run(db, listed.run_id)
        assert run.status == "succeeded"
        assert len(run.latest()) == 30
    db.close()
