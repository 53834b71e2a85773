"""Test node: a forked child must not use the parent's channel."""

import os
from typing import Any

from node_runtime import ToolCallError, call_tool, run_node


def main(text: str) -> Any:
    first = call_tool("work", text)  # the client exists before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            call_tool("work", "from the child")
            message = "child called a tool"
        except ToolCallError as exc:
            message = f"{exc.kind}: {exc}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 4096).decode()
    return {"first": first, "child": child, "after": call_tool("work", "again")}


run_node(main)
