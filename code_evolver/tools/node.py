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
from code_evolver.processes import describe_exit, run_process, tail
from code_evolver.runtime_host import RuntimeChannel
from code_evolver.tools.base import Output, Tool, ToolCall, output_to_json


class NodeTool(Tool):
    kind = "node"

    def __init__(
        self,
        name: str,
        script: Path,
        *,
        env: Mapping[str, str] | None = None,
        config_path: Path | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(name, **settings)
        self.script = script
        self.env = dict(env or {})
        self.config_path = config_path

    async def run(self, call: ToolCall) -> Output:
        payload = json.dumps({"input": call.input, "params": dict(call.params)}).encode()
        async with RuntimeChannel(call.calls) as channel:
            env = os.environ | self.env | channel.env | {"CODE_EVOLVER_STEP_ID": call.step_id}
            if self.config_path is not None:  # a script on its own finds the same tools
                env["CODE_EVOLVER_CONFIG"] = str(self.config_path)
            try:
                result = await run_process(
                    [sys.executable, str(self.script)],
                    stdin=payload,
                    cwd=self.script.parent,
                    env=env,
                    pass_fds=channel.pass_fds,
                )
            except OSError as exc:
                raise ToolFailed(
                    f"cannot start node {self.script}: {exc.strerror or exc}", retryable=False
                ) from None
        if result.returncode != 0:
            detail = tail(result.stderr) or tail(result.stdout) or "no output"
            raise ToolFailed(f"node script {describe_exit(result.returncode)}: {detail}")
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
