"""The sandbox's rules, without starting anything: which limit an ending shows, which
environment a child gets, what each isolation level asks bubblewrap for, which level a tool
gets."""

from __future__ import annotations

import resource
import signal
from pathlib import Path

import pytest

from code_evolver.config import ExecutionSettings
from code_evolver.launch import bubblewrap
from code_evolver.launch.environment import child_environment
from code_evolver.launch.launcher import Launcher
from code_evolver.launch.limits import (
    STRICT_LIMITS,
    LimitOverrides,
    Limits,
    limit_hit,
    prlimit_argv,
)
from code_evolver.launch.sandbox import SandboxUnavailable, require_strict

LIMITS = Limits(memory_mb=256, cpu_s=2, file_size_mb=10, open_files=64, processes=16)


@pytest.mark.parametrize(
    ("returncode", "signum", "cpu_s", "stderr", "expected"),
    [
        (-signal.SIGXCPU, signal.SIGXCPU, 2.0, "", "CPU limit 2s exceeded"),
        (128 + signal.SIGXCPU, signal.SIGXCPU, 2.0, "", "CPU limit 2s exceeded"),
        (-signal.SIGKILL, signal.SIGKILL, 3.1, "", "CPU limit 2s exceeded"),
        (-signal.SIGKILL, signal.SIGKILL, 0.1, "", None),  # killed, not for its CPU time
        (1, 0, 0.1, "Traceback ...\nMemoryError", "memory limit 256 MB exceeded"),
        (1, 0, 0.1, "BlockingIOError: [Errno 11] Resource temporarily unavailable",
         "process limit 16 exceeded"),
        (2, 0, 0.1, "sh: 1: Cannot fork", "process limit 16 exceeded"),
        (1, 0, 0.1, "OSError: [Errno 24] Too many open files: 'x'", "open files limit 64 exceeded"),
        (-signal.SIGXFSZ, signal.SIGXFSZ, 0.1, "", "file size limit 10 MB exceeded"),
        (1, 0, 0.1, "OSError: [Errno 27] File too large", "file size limit 10 MB exceeded"),
        (1, 0, 0.1, "ValueError: bad input", None),
        (0, 0, 0.1, "File too large\nMemoryError", None),  # it succeeded: nothing was hit
        (1, 0, 0.1, "MemoryError was caught\nValueError: something else", None),  # last words
        (152, 0, 0.1, "", None),  # exit status 152, not wrapped: not SIGXCPU
    ],
)  # fmt: skip
def test_a_limit_hit_is_told_from_an_ending(
    returncode: int, signum: int, cpu_s: float, stderr: str, expected: str | None
) -> None:
    hit = limit_hit(LIMITS, returncode=returncode, signum=signum, cpu_s=cpu_s, stderr=stderr)
    assert hit == expected


def test_a_pids_cgroup_record_names_the_process_limit() -> None:
    hit = limit_hit(LIMITS, returncode=1, signum=0, cpu_s=0, stderr="", processes_hit=True)
    assert hit == "process limit 16 exceeded"


def test_prlimit_sets_every_limit_and_cpu_warns_before_it_kills(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (resource.RLIM_INFINITY,) * 2)
    assert prlimit_argv("/usr/bin/prlimit", LIMITS) == [
        "/usr/bin/prlimit", f"--data={256 * 1024 * 1024}", "--cpu=2:3",
        f"--fsize={10 * 1024 * 1024}", "--nofile=64", "--nproc=16", "--",
    ]  # fmt: skip
    assert "--nproc=16" not in prlimit_argv("prlimit", LIMITS, processes=False)
    none = Limits(memory_mb=None, cpu_s=None, file_size_mb=None, open_files=None, processes=None)
    assert prlimit_argv("prlimit", none) == []
    assert prlimit_argv(None, LIMITS) == []  # no prlimit here: doctor says so


def test_a_limit_is_never_raised_above_evolves_own_hard_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hard = {resource.RLIMIT_NOFILE: 32, resource.RLIMIT_CPU: 2}
    monkeypatch.setattr(
        resource, "getrlimit", lambda which: (hard.get(which, -1), hard.get(which, -1))
    )
    argv = prlimit_argv("prlimit", Limits(open_files=1024, cpu_s=600))
    assert "--nofile=32" in argv  # `ulimit -Hn 32`: a child cannot be given more
    assert "--cpu=2" in argv  # soft and hard both at the hard limit


def test_a_tools_limits_replace_the_defaults_key_by_key() -> None:
    merged = Limits().merged(LimitOverrides(memory_mb=512))
    assert merged.memory_mb == 512
    assert merged.cpu_s == Limits().cpu_s


def test_the_environment_is_an_allow_list_plus_what_the_tool_names() -> None:
    parent = {
        "PATH": "/bin", "HOME": "/home/u", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC",
        "OPENAI_API_KEY": "sk-x", "AWS_SECRET": "y", "GITHUB_TOKEN": "z", "TMPDIR": "/t",
    }  # fmt: skip
    env = child_environment({"GITHUB_TOKEN": None, "MODE": "fast"}, source=parent)
    assert env == {
        "PATH": "/bin", "HOME": "/home/u", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC",
        "TMPDIR": "/t", "GITHUB_TOKEN": "z", "MODE": "fast",
    }  # fmt: skip
    strict = child_environment({}, home="/work", tmpdir="/tmp", source=parent)
    assert strict["HOME"] == "/work"
    assert strict["TMPDIR"] == "/tmp"
    assert child_environment({}, inherit_all=True, source=parent) == parent


def test_strict_asks_for_every_namespace_and_binds_only_what_it_is_given(tmp_path: Path) -> None:
    work = tmp_path
    argv = bubblewrap.strict_argv(
        "bwrap", readable=[Path("/opt/lib"), Path("/usr/lib/x")], workdir=work, tmp_bytes=1000
    )
    assert argv[:10] == [
        "bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
        "--new-session", "--cap-drop", "ALL", "--uid", "65534",
    ]  # fmt: skip
    assert "--share-net" not in argv
    assert "--setenv" not in argv  # secrets never go on a command line others can read
    tmpfs = argv.index("--tmpfs")
    assert argv[tmpfs - 2 : tmpfs + 2] == ["--size", "1000", "--tmpfs", "/tmp"]
    dev = argv.index("--dev")
    assert argv[dev : dev + 4] == ["--dev", "/dev", "--remount-ro", "/dev"]
    assert ["--bind", str(work), str(work), "--chdir", str(work)] == argv[-6:-1]
    assert argv[-1] == "--"
    assert "/usr/lib/x" not in argv  # already visible through /usr


def test_contain_keeps_the_file_system_and_gives_a_pid_namespace() -> None:
    argv = bubblewrap.contain_argv("bwrap", root=False)
    assert argv == [
        "bwrap", "--unshare-user", "--dev-bind", "/", "/", "--unshare-pid", "--proc", "/proc",
        "--die-with-parent", "--new-session", "--",
    ]  # fmt: skip
    as_root = bubblewrap.contain_argv("bwrap", root=True)
    assert "--unshare-user" not in as_root  # root keeps its file rights...
    assert as_root[1:3] == ["--cap-drop", "CAP_SYS_ADMIN"]  # ...not the power to unmount /proc


def test_which_isolation_a_tool_gets() -> None:
    auto = Launcher(ExecutionSettings())
    assert auto.isolation(None, "strict") == "strict"  # a node
    assert auto.isolation(None, "contain") == "contain"  # a command
    assert auto.isolation("none", "strict") == "none"  # the tool's own setting wins
    everything = Launcher(ExecutionSettings(sandbox="strict"))
    assert everything.isolation(None, "contain") == "strict"
    assert auto.limits(None, "strict") == STRICT_LIMITS
    own = Launcher(ExecutionSettings(limits=Limits(memory_mb=100)))
    assert own.limits(None, "strict").memory_mb == 100  # the run's own limits apply as given


def test_strict_never_falls_back() -> None:
    missing = bubblewrap.Availability(False, "bubblewrap is not installed (bwrap not found)", "x")
    with pytest.raises(SandboxUnavailable, match="strict isolation cannot run; x, or set"):
        require_strict(missing)


def test_an_execution_override_does_not_loosen_the_strict_limits() -> None:
    from code_evolver.config import Config

    config = Config().with_execution(max_parallel=2)  # e.g. --max-parallel 2
    assert Launcher(config.execution).limits(None, "strict") == STRICT_LIMITS
