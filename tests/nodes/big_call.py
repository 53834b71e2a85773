"""Test node: an oversized call fails alone; the channel keeps working."""

from typing import Any

from node_runtime import ToolCallError, call_tool, run_node


def main(text: str) -> Any:
    try:
        call_tool("work", "x" * (17 * 1024 * 1024))
        big = "sent"
    except ToolCallError as exc:
        big = str(exc)
    return {"big": big, "small": call_tool("work", "small")}


run_node(main)
