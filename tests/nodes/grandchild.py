"""Test node: a subprocess of the script inherits nothing it could misuse."""

import subprocess
import sys
import tempfile
from typing import Any

from node_runtime import run_node

CODE = """
from node_runtime import ToolCallError, call_tool
try:
    call_tool('work', 'x')
    print('called')
except ToolCallError as exc:
    print(exc.kind)
"""


def main(text: str) -> Any:
    import os

    import node_runtime
    from node_runtime.protocol import ENV_FD

    fd = node_runtime._CHANNEL[0]

    inherited = ENV_FD in os.environ
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=False)
    # A shell started with os.system inherits every inheritable descriptor: not the channel.
    with tempfile.NamedTemporaryFile("r") as seen:
        os.system(
            f"[ -e /proc/$$/fd/{fd} ] && echo open > {seen.name} || echo closed > {seen.name}"
        )
        probe = seen.read()
    return {
        "inherited": inherited,
        "child": out.stdout.strip() or out.stderr[-200:],
        "shell_sees_channel": probe.strip(),
    }


run_node(main)
