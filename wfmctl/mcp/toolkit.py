"""What every tool of the MCP server shares: its bridge to wfmd, its output bound, how a
result or a failure becomes a tool result, and the argument types of handles and ids.

Annotations here are evaluated (no `from __future__ import annotations`): the SDK reads the
tools' signatures to build their JSON schemas.
"""

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from mcp.types import CallToolResult, TextContent
from pydantic import Field

from wfmctl import protocol
from wfmctl.client import WfmError
from wfmctl.mcp.bridge import Bridge
from wfmctl.mcp.errors import ToolFailure, explain
from wfmctl.mcp.results import (
    Limits,
    StatusResult,
    cut,
    encode,
    shrink,
    status_result,
)
from wfmctl.mcp.times import FORMS, parse_time
from wfmctl.protocol import Execution

HandleId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        description="The execution's handle_id (a UUID, as execute_workflow and "
        "list_execution_history give it), or any unique prefix of it.",
    ),
]
WorkflowId = Annotated[
    str,
    Field(min_length=1, max_length=200, description="A workflow id, as list_workflows gives it."),
]
ParamValue = str | int | float | bool | None

# The filters of the tools that read across executions.
WorkflowFilter = Annotated[
    str | None, Field(max_length=200, description="Only this workflow's executions.")
]
StatusFilter = Annotated[
    protocol.Status | None, Field(description="Only executions with this status.")
]
Since = Annotated[
    str | None,
    Field(max_length=64, description=f"Executions accepted at or after this time: {FORMS}."),
]
Until = Annotated[
    str | None, Field(max_length=64, description=f"Executions accepted before this time: {FORMS}.")
]


class ToolBase:
    """The tools' common part, over one bridge to wfmd and one output bound."""

    def __init__(self, bridge: Bridge, limits: Limits) -> None:
        self.bridge = bridge
        self.limits = limits

    # ------------------------------------------------------------------ plumbing

    def ok(self, document: Mapping[str, Any]) -> CallToolResult:
        """A result: `document` as structured content and as its JSON text, within bounds."""
        data = encode(document)
        if len(data) > self.limits.max_output:
            document = shrink(document, self.limits.max_output)
            data = encode(document)
            if len(data) > self.limits.max_output:
                return self.failure(
                    f"The result is larger than the {self.limits.max_output:,}-byte output "
                    "bound even with its text cut; ask for less (a smaller limit)."
                )
        return CallToolResult(
            content=[TextContent(type="text", text=data.decode())], structured_content=document
        )

    def failure(self, message: str) -> CallToolResult:
        text = cut(message, self.limits.max_output // 2)
        return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)

    async def attempt(
        self,
        body: Callable[[], Awaitable[CallToolResult]],
        *,
        handle: str | None = None,
        workflow_id: str | None = None,
    ) -> CallToolResult:
        """Run a tool's body; a daemon error or ToolFailure becomes a tool error."""
        try:
            return await body()
        except ToolFailure as failure:
            return self.failure(str(failure))
        except WfmError as err:
            explained = await explain(self.bridge, err, handle=handle, workflow_id=workflow_id)
            return self.failure(str(explained))

    @staticmethod
    def window(since: str | None, until: str | None) -> tuple[float | None, float | None]:
        """The `since` and `until` filters in seconds since the epoch, within the protocol's
        range. Raises ToolFailure naming the accepted forms."""
        try:
            return (
                _clamp_time(parse_time(since)) if since else None,
                _clamp_time(parse_time(until)) if until else None,
            )
        except ValueError as exc:
            raise ToolFailure(str(exc)) from None

    async def status(self, execution: Execution) -> StatusResult:
        name = execution.workflow_name
        if name is None:  # recorded before the daemon kept names: ask discovery
            name = (await self.bridge.workflow_names()).get(execution.workflow_id)
        return status_result(execution, name, self.limits.line_cap)


def _clamp_time(seconds: float) -> float:
    return max(0.0, min(seconds, 1e10))
