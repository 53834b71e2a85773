"""``kind: template``: the step's rendered input is the output (joins earlier outputs, no LLM)."""

from __future__ import annotations

from code_evolver.tools.base import Output, Tool, ToolCall


class TemplateTool(Tool):
    kind = "template"

    async def run(self, call: ToolCall) -> Output:
        return call.input
