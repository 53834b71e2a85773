"""Test node: prints what params.mode says instead of a proper result."""

import json
import sys

from node_runtime import read_input

value, params = read_input()
mode = params.get("mode")
if mode == "text":
    print("this is not JSON at all")
elif mode == "no_result":
    print(json.dumps({"answer": 42}))
elif mode == "crash":
    print("about to fail", file=sys.stderr)
    sys.exit(4)
elif mode == "chatty":
    print("debug line first")
    print(json.dumps({"result": "fine"}))
