"""The one error scripts catch: a tool call that did not succeed."""

from __future__ import annotations


class ToolCallError(RuntimeError):
    """A tool call failed; names the call (``tool``, and ``index`` within a parallel batch).

    ``kind`` is the workflow's error type, e.g. ``ToolNotFound``, ``StepTimeout``,
    ``ToolFailed``, or ``ChannelClosed`` when the workflow is gone or the step has ended.
    """

    def __init__(
        self, message: str, *, tool: str = "", index: int | None = None, kind: str = ""
    ) -> None:
        super().__init__(message)
        self.tool = tool
        self.index = index
        self.kind = kind

    def for_call(self, index: int) -> ToolCallError:
        """The same failure, naming its place in a parallel batch."""
        return ToolCallError(
            f"call {index} ({self.tool!r}): {self}", tool=self.tool, index=index, kind=self.kind
        )
