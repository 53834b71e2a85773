"""Test node: a subprocess of the script inherits nothing it could misuse."""

import subprocess
import sys
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

    from node_runtime.protocol import ENV_FD

    inherited = ENV_FD in os.environ
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=False)
    return {"inherited": inherited, "child": out.stdout.strip() or out.stderr[-200:]}


run_node(main)
