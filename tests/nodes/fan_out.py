"""Test node: fans out params.n calls of params.tool, returns outputs and timings."""

import time
from typing import Any

from node_runtime import call_tools_parallel, run_node


def main(
    text: str,
    tool: str = "work",
    n: int | str = 10,
    max_workers: int | None = None,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> Any:
    started = time.perf_counter()
    outputs = call_tools_parallel(
        [(tool, f"{text}-{i}") for i in range(int(n))],
        max_workers=max_workers,
        timeout=timeout,
        return_exceptions=return_exceptions,
    )
    outputs = [o if isinstance(o, str) else f"error: {o} [{o.kind}]" for o in outputs]
    return {"outputs": outputs, "wall": time.perf_counter() - started}


run_node(main)
