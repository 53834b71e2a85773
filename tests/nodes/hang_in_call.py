"""Test node: writes its pid, then waits forever on a call to a hanging tool."""

import os
import sys

from node_runtime import call_tool, read_input

value, params = read_input()
with open(params["pidfile"], "w") as f:
    f.write(str(os.getpid()))
call_tool("hang", value)
sys.exit(0)
