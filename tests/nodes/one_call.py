"""Test node: one call (with a deadline when params.timeout is set), errors as data."""

from typing import Any

from node_runtime import ToolCallError, call_tool, call_tools_parallel, run_node


def main(text: str, tool: str = "work", timeout: float | None = None, **params: Any) -> Any:
    try:
        if timeout is None:
            return {"output": call_tool(tool, text, **params)}
        (output,) = call_tools_parallel([(tool, text, params)], timeout=float(timeout))
        return {"output": output}
    except ToolCallError as exc:
        return {"error": str(exc), "kind": exc.kind, "tool": exc.tool}


run_node(main)
