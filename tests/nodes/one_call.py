"""Test node: one call_tool, reporting a ToolCallError as data."""

from node_runtime import ToolCallError, call_tool, run_node


def main(text, tool="work", timeout=None, **params):
    try:
        return {"output": call_tool(tool, text, timeout=timeout, **params)}
    except ToolCallError as exc:
        return {"error": str(exc), "kind": exc.kind, "tool": exc.tool}


run_node(main)
