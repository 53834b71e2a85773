"""A plain Python program run by a `command` tool: it may use node_runtime too."""

import sys

from node_runtime import call_tool

print(call_tool("work", sys.stdin.read().strip()))
