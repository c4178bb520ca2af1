"""The tools that read across executions and workflows: list_workflows, get_workflow_logs,
list_execution_history, get_workflow_history.

Annotations here are evaluated (no `from __future__ import annotations`): the SDK reads the
tools' signatures to build their JSON schemas.
"""

from typing import Annotated, Any, Literal, NotRequired

from mcp.types import CallToolResult
from pydantic import Field
from typing_extensions import TypedDict

from wfmctl.mcp.logs import LogsResult, get_logs
from wfmctl.mcp.results import (
    HistoryItem,
    cut,
    fitting,
    history_item,
    room_for_list,
    workflow_info,
)
from wfmctl.mcp.toolkit import (
    HandleId,
    Since,
    StatusFilter,
    ToolBase,
    Until,
    WorkflowFilter,
    WorkflowId,
)

HISTORY_PAGE_MAX = 1000  # the daemon's largest history page

EntryType = Literal[
    "raw_output",
    "phase_started",
    "phase_completed",
    "phase_failed",
    "task_started",
    "task_progress",
    "task_completed",
    "task_failed",
    "agent_started",
    "agent_message",
    "agent_completed",
    "agent_failed",
    "state_file_created",
]


class WorkflowsResult(TypedDict):
    workflows: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    conflicts: list[str]
    hint: NotRequired[str]


class HistoryResult(TypedDict):
    total: int | None
    limit: int
    offset: int
    executions: list[HistoryItem]
    next_offset: int | None
    hint: str


class FieldHistoryResult(TypedDict):
    workflow_id: str
    field_history: dict[str, list[str]]
    hint: NotRequired[str]


class HistoryTools(ToolBase):
    async def list_workflows(
        self,
        workflow_id: Annotated[
            str | None,
            Field(max_length=200, description="Only this workflow (all of its fields)."),
        ] = None,
        rescan: Annotated[
            bool,
            Field(description="Scan the workflow directories first, to find new workflows."),
        ] = False,
    ) -> Annotated[CallToolResult, WorkflowsResult]:
        """List the workflows that can be run: each one's id, name, description and fields
        (the parameters execute_workflow takes: name, field_type with its constraints such
        as min/max or options, label, description, required, default). Files in the
        workflow directories that are not valid workflows are listed under `skipped`."""

        async def body() -> CallToolResult:
            reply = await self.bridge.call(lambda c: c.workflows(rescan, workflow_id))
            cap = self.limits.line_cap
            chosen = [w for w in reply.workflows if workflow_id in (None, w.id)]
            skipped = [
                {"path": cut(s.path, cap), "reason": cut(s.reason, cap)} for s in reply.skipped
            ]
            conflicts = [cut(c, cap) for c in reply.conflicts]
            result: WorkflowsResult = {"workflows": [], "skipped": [], "conflicts": []}
            quarter = self.limits.max_output // 4
            result["skipped"] = skipped[: fitting(skipped, quarter)]
            result["conflicts"] = conflicts[: fitting(conflicts, quarter)]
            room = room_for_list(result, self.limits)
            full = [workflow_info(w, cap) for w in chosen]
            if fitting(full, room) == len(full):
                result["workflows"] = full
                return self.ok(result)
            brief = [workflow_info(w, cap, fields=False) for w in chosen]
            shown = fitting(brief, room)
            result["workflows"] = brief[:shown]
            result["hint"] = (
                f"Too many to show every field here: {shown} of {len(chosen)} workflows "
                "listed without their fields. Call list_workflows with a workflow_id for "
                "one workflow's fields."
            )
            return self.ok(result)

        return await self.attempt(body, workflow_id=workflow_id)

    async def get_workflow_logs(
        self,
        handle_id: HandleId,
        limit: Annotated[
            int, Field(ge=1, le=10_000, description="At most this many entries (default 50).")
        ] = 50,
        after_seq: Annotated[
            int | None,
            Field(
                ge=-1,
                le=2**32,
                description="Read forward: the entries after this sequence number (-1: from "
                "the start). Pass a previous page's next_after_seq to read on.",
            ),
        ] = None,
        before_seq: Annotated[
            int | None,
            Field(
                ge=0,
                le=2**32,
                description="Without after_seq: the last entries before this sequence number. "
                "Pass a previous page's next_before_seq to read further back.",
            ),
        ] = None,
        types: Annotated[
            list[EntryType] | None,
            Field(
                max_length=20,
                description='Only entries of these types, e.g. ["phase_started", '
                '"phase_completed"] or ["raw_output"].',
            ),
        ] = None,
    ) -> Annotated[CallToolResult, LogsResult]:
        """An execution's log, page by page: by default its last `limit` entries; with
        after_seq, the entries after it (from -1: the whole log from the start). Each entry
        has its seq, timestamp and type; events (phase_started, task_progress,
        agent_message, ...) carry their fields, plain lines are
        {"type": "raw_output", "stream": "stdout"|"stderr", "line": ...}. A page is
        bounded in size (long lines are cut, with a marker giving their full length);
        next_after_seq, next_before_seq and the hint say how to read on. Logs are kept
        whole, also long after the execution ended."""

        async def body() -> CallToolResult:
            result = await get_logs(
                self.bridge,
                self.limits,
                handle_id,
                limit=limit,
                after_seq=after_seq,
                before_seq=before_seq,
                types=frozenset(types) if types else None,
            )
            return self.ok(result)

        return await self.attempt(body, handle=handle_id)

    async def list_execution_history(
        self,
        limit: Annotated[
            int, Field(ge=1, le=HISTORY_PAGE_MAX, description="Executions per page (10).")
        ] = 10,
        offset: Annotated[int, Field(ge=0, le=2**31, description="Skip this many (0).")] = 0,
        workflow_id: WorkflowFilter = None,
        status: StatusFilter = None,
        since: Since = None,
        until: Until = None,
    ) -> Annotated[CallToolResult, HistoryResult]:
        """Past and present executions, newest first, with optional filters: each one's
        handle_id, workflow, status, times and exit code. `total` is the number of every
        match; page on with offset (next_offset). Use a handle_id with get_workflow_status,
        get_workflow_logs or get_execution_params."""

        async def body() -> CallToolResult:
            since_s, until_s = self.window(since, until)
            page = await self.bridge.call(
                lambda c: c.history(
                    limit=limit,
                    offset=offset,
                    workflow_id=workflow_id,
                    status=status,
                    since=since_s,
                    until=until_s,
                    count=True,
                )
            )
            names: dict[str, str] = {}
            if any(e.workflow_name is None for e in page.executions):
                names = await self.bridge.workflow_names()
            cap = self.limits.line_cap
            items = [
                history_item(e, e.workflow_name or names.get(e.workflow_id), cap)
                for e in page.executions
            ]
            result: HistoryResult = {
                "total": page.total,
                "limit": limit,
                "offset": offset,
                "executions": [],
                "next_offset": None,
                "hint": "",
            }
            shown = fitting(items, room_for_list(result, self.limits))
            result["executions"] = items[:shown]
            end = offset + shown
            more = shown < len(items) or (
                page.total > end if page.total is not None else page.next_before is not None
            )
            result["next_offset"] = end if more else None
            total = f"{page.total:,}" if page.total is not None else "?"
            shown_range = f"{offset + 1:,}-{end:,}" if shown else "none"
            result["hint"] = f"Executions {shown_range} of {total}." + (
                f" Next page: offset={end}." if more else ""
            )
            if shown < len(items):
                result["hint"] += " (The page was cut to fit the output bound.)"
            return self.ok(result)

        return await self.attempt(body, workflow_id=workflow_id)

    async def get_workflow_history(
        self,
        workflow_id: WorkflowId,
        field_name: Annotated[
            str | None, Field(max_length=200, description="Only this field's values.")
        ] = None,
    ) -> Annotated[CallToolResult, FieldHistoryResult]:
        """The values a workflow's parameters were recently given, per field, newest first
        and without repeats (from its last 200 executions): good defaults for the next
        run."""

        async def body() -> CallToolResult:
            reply = await self.bridge.call(lambda c: c.param_history(workflow_id, field_name))
            cap = self.limits.line_cap
            history = {k: [cut(v, cap) for v in vs] for k, vs in reply.values.items()}
            result: FieldHistoryResult = {
                "workflow_id": reply.workflow_id,
                "field_history": history,
            }
            if not history:
                result["hint"] = (
                    "No recorded values: the workflow has no executions with parameters "
                    "(or no such workflow or field; list_workflows shows them)."
                )
            return self.ok(result)

        return await self.attempt(body, workflow_id=workflow_id)
