"""Executions as MCP resources, for clients that attach context rather than call tools.

- `wfm://executions/{handle_id}`: the execution's status and parameters (JSON);
- `wfm://executions/{handle_id}/logs{?after_seq,before_seq}`: a page of its log, as
  get_workflow_logs gives it (without arguments: the last page), with the URIs of the pages
  before and after it.

`resources/list` lists the newest executions first, both resources of each.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.types import Resource

from wfmctl.client import WfmError
from wfmctl.mcp.bridge import Bridge
from wfmctl.mcp.errors import explain
from wfmctl.mcp.logs import get_logs
from wfmctl.mcp.results import Limits, cut, encode, rfc3339, shrink, status_result
from wfmctl.protocol import ErrorCode

LISTED = 50  # executions in resources/list, newest first
LOG_PAGE = 10_000  # entries asked for per log page: the output bound decides how many fit
MIME = "application/json"


def execution_uri(handle: str) -> str:
    return f"wfm://executions/{handle}"


def logs_uri(handle: str, **query: int) -> str:
    args = "&".join(f"{k}={v}" for k, v in query.items())
    return f"wfm://executions/{handle}/logs" + (f"?{args}" if args else "")


class ExecutionResources(MCPServer[Any]):
    """MCPServer listing the newest executions as resources (its templates read them)."""

    def __init__(self, bridge: Bridge, limits: Limits, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bridge = bridge
        self._limits = limits

    async def list_resources(self) -> list[Resource]:
        listed = await super().list_resources()
        try:
            page = await self._bridge.call(lambda c: c.history(limit=LISTED))
        except WfmError:  # the daemon is away: nothing to list, and nothing to fail
            return listed
        for e in page.executions:
            when = rfc3339(e.created_at)
            name = cut(e.workflow_name or e.workflow_id, 100)
            listed.append(
                Resource(
                    uri=execution_uri(e.handle),
                    name=f"{e.workflow_id} {e.handle}",
                    title=f"{name}: {e.status}, accepted {when}",
                    description="The execution's status and parameters.",
                    mime_type=MIME,
                )
            )
            listed.append(
                Resource(
                    uri=logs_uri(e.handle),
                    name=f"{e.workflow_id} {e.handle} logs",
                    title=f"{name}: log ({e.log_count:,} entries)",
                    description="The last page of the execution's log.",
                    mime_type=MIME,
                )
            )
        return listed


def add_templates(server: MCPServer[Any], bridge: Bridge, limits: Limits) -> None:
    async def failed(err: WfmError, handle: str) -> ResourceError:
        text = str(await explain(bridge, err, handle=handle))
        if err.code == ErrorCode.NOT_FOUND:
            return ResourceNotFoundError(text)
        return ResourceError(text)

    @server.resource(
        "wfm://executions/{handle_id}",
        name="execution",
        description="An execution's status and parameters, by handle_id or a unique prefix.",
        mime_type=MIME,
    )
    async def execution(handle_id: str) -> str:
        try:
            found = await bridge.call(lambda c: c.status(handle_id))
        except WfmError as err:
            raise await failed(err, handle_id) from None
        name = found.workflow_name
        if name is None:
            name = (await bridge.workflow_names()).get(found.workflow_id)
        document = {**status_result(found, name, limits.line_cap), "params": found.params}
        return encode(shrink(document, limits.max_output)).decode()

    @server.resource(
        "wfm://executions/{handle_id}/logs{?after_seq,before_seq}",
        name="execution_logs",
        description="A page of an execution's log (without arguments: the last page), with "
        "the URIs of the pages before and after it.",
        mime_type=MIME,
    )
    async def execution_logs(
        handle_id: str, after_seq: int | None = None, before_seq: int | None = None
    ) -> str:
        try:
            page = await get_logs(
                bridge,
                limits,
                handle_id,
                limit=LOG_PAGE,
                after_seq=after_seq,
                before_seq=before_seq,
                types=None,
            )
        except WfmError as err:
            raise await failed(err, handle_id) from None
        document: dict[str, Any] = dict(page)
        if page["has_more"] or not page["finished"]:
            document["next_page"] = logs_uri(handle_id, after_seq=page["next_after_seq"])
        if page["next_before_seq"] is not None:
            document["previous_page"] = logs_uri(handle_id, before_seq=page["next_before_seq"])
        return encode(shrink(document, limits.max_output)).decode()
