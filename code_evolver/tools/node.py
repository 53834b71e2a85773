"""``kind: node``: a Python script with the node contract, run as a child process.

The script reads ``{"input": ..., "params": {...}}`` on stdin and prints ``{"result": ...}``.
Its ``node_runtime`` tool calls come back to this run over the runtime channel, so they obey
the run's limits and are recorded under the step. Stdout that is not such a document fails the
step, showing how the output began.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from code_evolver.errors import ToolFailed
from code_evolver.tools.base import Output, ToolCall, output_to_json
from code_evolver.tools.process import ProcessTool


class NodeTool(ProcessTool):
    kind = "node"
    default_isolation = "strict"

    def __init__(self, name: str, script: Path, **settings: Any) -> None:
        super().__init__(name, **settings)
        self.script = script

    async def run(self, call: ToolCall) -> Output:
        payload = json.dumps({"input": call.input, "params": dict(call.params)}).encode()
        # Strict: the script itself (read-only) and a private work folder; nothing else of
        # the folder it is in (a project's .env, .git). Otherwise it runs in its folder.
        strict = self.isolation(call.launcher) == "strict"
        try:
            result = await self.launch(
                call,
                [sys.executable, str(self.script)],
                stdin=payload,
                what="the node script",
                cwd=None if strict else self.script.parent,
                readable=[self.script],
            )
        except OSError as exc:
            raise ToolFailed(
                f"cannot start node {self.script}: {exc.strerror or exc}", retryable=False
            ) from None
        return output_to_json(node_result(result.stdout.decode("utf-8", errors="replace")))


def node_result(stdout: str) -> Any:
    """The ``result`` of a node's stdout; the last line may hold it after debugging prints."""
    text = stdout.strip()
    candidates = [text] + ([text.splitlines()[-1]] if "\n" in text else [])
    for candidate in candidates:
        try:
            document = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(document, dict) and "result" in document:
            return document["result"]
        head = candidate[:200]
        raise ToolFailed(f'the node printed JSON without a "result" key: {head!r}')
    raise ToolFailed(
        f'the node did not print {{"result": ...}} as JSON; its output began: {text[:200]!r}'
        if text
        else 'the node printed nothing; it must print {"result": ...}'
    )
