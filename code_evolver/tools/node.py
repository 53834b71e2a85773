"""``kind: node``: a Python script with the node contract, run as a child process.

The script reads ``{"input": ..., "params": {...}}`` on stdin and prints ``{"result": ...}``.
Its ``node_runtime`` tool calls come back to this run over the runtime channel, so they obey
the run's limits and are recorded under the step. Stdout that is not such a document fails the
step, showing how the output began.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from code_evolver.errors import ToolFailed
from code_evolver.launch.launcher import run_child
from code_evolver.launch.processes import MAX_STDOUT, check_ending
from code_evolver.tools.base import Output, Tool, ToolCall, output_to_json


class NodeTool(Tool):
    kind = "node"

    def __init__(
        self,
        name: str,
        script: Path,
        *,
        env: Mapping[str, str] | None = None,
        max_stdout: int = MAX_STDOUT,
        config_path: Path | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(name, **settings)
        self.script = script
        self.max_stdout = max_stdout
        self.env = dict(env or {})
        self.config_path = config_path

    async def run(self, call: ToolCall) -> Output:
        payload = json.dumps({"input": call.input, "params": dict(call.params)}).encode()
        env = os.environ | self.env | {"CODE_EVOLVER_STEP_ID": call.step_id}
        if self.config_path is not None:  # a script on its own finds the same tools
            env["CODE_EVOLVER_CONFIG"] = str(self.config_path)
        try:
            result = await run_child(
                [sys.executable, str(self.script)],
                stdin=payload,
                cwd=self.script.parent,
                env=env,
                caller=call.calls,
                max_stdout=self.max_stdout,
            )
        except OSError as exc:
            raise ToolFailed(
                f"cannot start node {self.script}: {exc.strerror or exc}", retryable=False
            ) from None
        check_ending(result, "the node script", self.max_stdout)
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
