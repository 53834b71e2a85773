"""Test node: calls its own tool until params.depth reaches 0."""

from typing import Any

from node_runtime import call_tool, run_node


def main(text: str, depth: int | str = 1) -> Any:
    depth = int(depth)
    if depth <= 0:
        return f"bottom:{text}"
    return call_tool("rec", text, depth=depth - 1)


run_node(main)
