"""Test node: tries what ``params.action`` says and reports what happened.

Run under strict isolation by the sandbox tests: every attempt to reach outside should be
refused, and every limit should stop it.
"""

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from node_runtime import run_node


def main(text: str, action: str = "", target: str = "", marker: str = "") -> Any:
    if action == "write":
        try:
            Path(target).write_text("written by the sandbox")
        except OSError as exc:
            return f"refused: {exc.strerror}"
        return "wrote"
    if action == "read":
        try:
            return "read: " + Path(target).read_text()[:40]
        except OSError as exc:
            return f"refused: {exc.strerror}"
    if action == "connect":
        try:
            socket.create_connection(("127.0.0.1", int(target)), timeout=2).close()
        except OSError as exc:
            return f"refused: {exc.strerror or exc}"
        return "connected"
    if action == "environment":
        parent = Path(f"/proc/{os.getppid()}/environ")
        try:
            seen = parent.read_bytes().decode(errors="replace")
        except OSError as exc:
            seen = f"refused: {exc.strerror}"
        return {"env": dict(os.environ), "parent": seen, "cwd": os.getcwd(), "uid": os.getuid()}
    if action == "memory":
        block = bytearray(int(target) * 1024 * 1024)
        return len(block)
    if action == "cpu":
        while True:
            pass
    if action == "fork":
        children = []
        while True:  # until the process limit refuses a fork (then it raises)
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
    if action == "daemons":
        # Leave processes behind in every way a program can: its own session, a double fork.
        subprocess.Popen(["setsid", "sleep", "600", marker], start_new_session=True)
        if os.fork() == 0:
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", "601", marker])
            os._exit(0)
        time.sleep(0.3)
        alive = 0  # they are running, as this sandbox sees them
        for entry in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                alive += marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes()
        return f"left {alive} daemons"
    raise SystemExit(f"unknown action {action!r}")


run_node(main)
