"""Running a child process so that nothing outlives it.

Children start in a new session, so their process group holds everything they spawn. The group
is killed when the attempt is cancelled (timeout, fail-fast, Ctrl-C) and also after the child
exits, because a background grandchild that still holds stdout open would otherwise keep the
step (and the pipes) alive forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcessResult:
    returncode: int
    stdout: bytes
    stderr: bytes


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def run_process(
    argv: Sequence[str],
    *,
    stdin: bytes = b"",
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
) -> ProcessResult:
    """Run ``argv`` with ``stdin``, collect its output, and leave no process behind.

    Raises ``OSError`` (e.g. ``FileNotFoundError``) when the program cannot be started.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    readers = (
        asyncio.ensure_future(proc.stdout.read()),
        asyncio.ensure_future(proc.stderr.read()),
    )
    try:
        await _feed(proc.stdin, stdin)
        returncode = await proc.wait()
    except BaseException:
        kill_group(proc.pid)
        for reader in readers:
            reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, ProcessLookupError):
            await asyncio.shield(proc.wait())
        raise
    kill_group(proc.pid)
    stdout, stderr = await asyncio.gather(*readers)
    return ProcessResult(returncode, stdout, stderr)


async def _feed(pipe: asyncio.StreamWriter, data: bytes) -> None:
    """Write all of stdin, then close it; a child that exits without reading it is fine."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        if data:
            pipe.write(data)
            await pipe.drain()
        pipe.close()
        await pipe.wait_closed()


def describe_exit(returncode: int) -> str:
    """``exit status 3`` or ``killed by SIGSEGV``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def tail(data: bytes, *, lines: int = 12, chars: int = 1500) -> str:
    """The end of a stream, which is where the error usually is, as one line."""
    text = data.decode("utf-8", errors="replace").strip()
    kept = text.splitlines()[-lines:]
    joined = " | ".join(line.strip() for line in kept if line.strip())
    return joined if len(joined) <= chars else "..." + joined[-chars:]
