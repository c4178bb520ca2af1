"""The MCP server `workflow_manager`: wfmd's operations as the original tool's MCP tools.

Tool names and arguments are the original workflow-manager's, so prompts written for it keep
working; results keep its keys and add some. Each tool returns one JSON document, as
structured content (described by the tool's output schema) and as text, within the output
bound (`results.Limits`). Failures are tool errors (`isError`) whose text tells the model
what to do next (`errors`); only a bug in this module reaches the SDK's own handler.

Annotations here are evaluated (no `from __future__ import annotations`): the SDK reads the
tools' signatures to build their JSON schemas.
"""

import contextlib
import inspect
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, NotRequired

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field
from typing_extensions import TypedDict

from wfmctl import __version__, protocol
from wfmctl.client import WfmError
from wfmctl.mcp import resources
from wfmctl.mcp.bridge import Bridge
from wfmctl.mcp.errors import ToolFailure, explain
from wfmctl.mcp.logs import LogsResult, get_logs
from wfmctl.mcp.results import (
    HistoryItem,
    Limits,
    StatusResult,
    cut,
    encode,
    fitting,
    history_item,
    room_for_list,
    shrink,
    status_result,
    workflow_info,
)
from wfmctl.mcp.times import FORMS, parse_time
from wfmctl.protocol import FINISHED_STATUSES, Execution, LogEntry

SERVER_NAME = "workflow_manager"
MAX_WAIT = 300.0  # seconds a tool call may wait for an execution to end
DEFAULT_WAIT = 60.0
HISTORY_PAGE_MAX = 1000  # the daemon's largest history page

INSTRUCTIONS = """\
wfm runs workflows (programs that report progress as phases, tasks and agents) under a
local daemon, wfmd, and keeps every execution's status, parameters and full log forever.
Find workflows with list_workflows, start one with execute_workflow, then follow it with
get_workflow_status, get_workflow_logs or wait_for_workflow. Every execution stays
readable by its handle_id (or a unique prefix of it), also long after it ended and across
daemon restarts: list_execution_history finds past ones. Results are bounded in size;
a result cut short says how to get the rest."""

# Event types that move a run forward: wait_for_workflow reports them as progress.
PROGRESS_TYPES = frozenset(
    {
        "phase_started",
        "phase_completed",
        "phase_failed",
        "task_started",
        "task_completed",
        "task_failed",
    }
)

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


# --------------------------------------------------------------------------- result types


class WorkflowsResult(TypedDict):
    workflows: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    conflicts: list[str]
    hint: NotRequired[str]


class ExecutionResult(StatusResult):
    message: str


class WaitResult(StatusResult):
    ended: bool
    waited_seconds: float
    message: str


class HistoryResult(TypedDict):
    total: int | None
    limit: int
    offset: int
    executions: list[HistoryItem]
    next_offset: int | None
    hint: str


class ParamsResult(TypedDict):
    handle_id: str
    workflow_id: str
    params: dict[str, str]


class FieldHistoryResult(TypedDict):
    workflow_id: str
    field_history: dict[str, list[str]]
    hint: NotRequired[str]


# --------------------------------------------------------------------------- the tools


class Tools:
    """The tools, over one bridge to wfmd and one output bound."""

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

    async def status(self, execution: Execution) -> StatusResult:
        name = execution.workflow_name
        if name is None:  # recorded before the daemon kept names: ask discovery
            name = (await self.bridge.workflow_names()).get(execution.workflow_id)
        return status_result(execution, name, self.limits.line_cap)

    # ------------------------------------------------------------------ tools

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

    async def execute_workflow(
        self,
        workflow_id: WorkflowId,
        parameters: Annotated[
            dict[str, ParamValue] | None,
            Field(
                description="Field name -> value. Strings, numbers and booleans are accepted "
                "(numbers and booleans are passed as text); null or absent means not given. "
                "list_workflows shows each field's constraints."
            ),
        ] = None,
        wait_seconds: Annotated[
            float | None,
            Field(
                ge=0,
                le=MAX_WAIT,
                description="Wait up to this many seconds (at most 300) for the run to end "
                "and return its final status and exit code. Omit to return at once.",
            ),
        ] = None,
    ) -> Annotated[CallToolResult, ExecutionResult]:
        """Start a workflow with parameters; returns its handle_id and status at once (or,
        with wait_seconds, once it ended or the wait ran out). Parameters are checked
        against the workflow's fields first: an invalid one starts nothing and the error
        lists every problem. Runs beyond the daemon's concurrency limit wait as NotStarted.
        Follow a run with get_workflow_status, get_workflow_logs or wait_for_workflow."""

        async def body() -> CallToolResult:
            params = parameters or {}
            execution = await self.bridge.call(lambda c: c.run(workflow_id, params), once=True)
            note = ""
            if wait_seconds:
                try:
                    with anyio.move_on_after(wait_seconds):
                        execution = await self._wait(execution.handle)
                    if execution.status not in FINISHED_STATUSES:
                        execution = await self.bridge.call(lambda c: c.status(execution.handle))
                except WfmError as err:  # it was accepted: never lose its handle
                    note = f" Waiting for it failed ({err.message}); it may still run."
            result: ExecutionResult = {**await self.status(execution), "message": ""}
            result["message"] = _started_message(execution, wait_seconds) + note
            return self.ok(result)

        return await self.attempt(body, workflow_id=workflow_id)

    async def get_workflow_status(
        self, handle_id: HandleId
    ) -> Annotated[CallToolResult, StatusResult]:
        """An execution's status (NotStarted, Running, Completed, Failed or Cancelled) with
        its workflow, accepted/start/end times (RFC 3339), exit code, how it ended
        (ended_by: exit, signal, timeout, cancelled, daemon_died, spawn_error, ...) and
        why (reason), its number of log entries, and its place in the queue while
        NotStarted. Works for any execution ever run, by handle_id or a unique prefix."""

        async def body() -> CallToolResult:
            execution = await self.bridge.call(lambda c: c.status(handle_id))
            return self.ok(await self.status(execution))

        return await self.attempt(body, handle=handle_id)

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

    async def cancel_workflow(
        self, handle_id: HandleId
    ) -> Annotated[CallToolResult, ExecutionResult]:
        """Stop a running or queued execution. A queued one is cancelled at once; a running
        one gets SIGTERM, then SIGKILL after the daemon's grace period, and its status turns
        Cancelled once it has stopped (wait_for_workflow shows when)."""

        async def body() -> CallToolResult:
            execution = await self.bridge.call(lambda c: c.cancel(handle_id), once=True)
            if execution.status in FINISHED_STATUSES:
                message = f"Cancelled: it is now {execution.status}."
            else:
                message = (
                    "Cancel requested: it is being stopped (SIGTERM, then SIGKILL after the "
                    "grace period). wait_for_workflow shows when it has stopped."
                )
            result: ExecutionResult = {**await self.status(execution), "message": message}
            return self.ok(result)

        return await self.attempt(body, handle=handle_id)

    async def list_execution_history(
        self,
        limit: Annotated[
            int, Field(ge=1, le=HISTORY_PAGE_MAX, description="Executions per page (10).")
        ] = 10,
        offset: Annotated[int, Field(ge=0, le=2**31, description="Skip this many (0).")] = 0,
        workflow_id: Annotated[
            str | None, Field(max_length=200, description="Only this workflow's executions.")
        ] = None,
        status: Annotated[
            protocol.Status | None, Field(description="Only executions with this status.")
        ] = None,
        since: Annotated[
            str | None,
            Field(max_length=64, description=f"Accepted at or after this time: {FORMS}."),
        ] = None,
        until: Annotated[
            str | None,
            Field(max_length=64, description=f"Accepted before this time: {FORMS}."),
        ] = None,
    ) -> Annotated[CallToolResult, HistoryResult]:
        """Past and present executions, newest first, with optional filters: each one's
        handle_id, workflow, status, times and exit code. `total` is the number of every
        match; page on with offset (next_offset). Use a handle_id with get_workflow_status,
        get_workflow_logs or get_execution_params."""

        async def body() -> CallToolResult:
            try:
                since_s = _clamp_time(parse_time(since)) if since else None
                until_s = _clamp_time(parse_time(until)) if until else None
            except ValueError as exc:
                raise ToolFailure(str(exc)) from None
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

    async def get_execution_params(
        self, handle_id: HandleId
    ) -> Annotated[CallToolResult, ParamsResult]:
        """The parameters an execution was started with (as text, as the workflow got
        them), by handle_id or a unique prefix."""

        async def body() -> CallToolResult:
            reply = await self.bridge.call(lambda c: c.params(handle_id))
            cap = self.limits.line_cap
            result: ParamsResult = {
                "handle_id": reply.handle,
                "workflow_id": reply.workflow_id,
                "params": {k: cut(v, cap) for k, v in reply.params.items()},
            }
            return self.ok(result)

        return await self.attempt(body, handle=handle_id)

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

    async def wait_for_workflow(
        self,
        handle_id: HandleId,
        ctx: Context[Any, Any],
        timeout_seconds: Annotated[
            float,
            Field(ge=0, le=MAX_WAIT, description="Wait at most this long (60; at most 300)."),
        ] = DEFAULT_WAIT,
    ) -> Annotated[CallToolResult, WaitResult]:
        """Wait until an execution ends, up to timeout_seconds; returns its final status and
        exit code, or its current status if it is still going (ended: false; call again to
        keep waiting). While it runs, its phase and task events are sent as progress
        notifications when the client asks for progress."""

        async def body() -> CallToolResult:
            began = time.monotonic()
            execution = await self.bridge.call(lambda c: c.status(handle_id))
            if execution.status not in FINISHED_STATUSES:
                with anyio.move_on_after(timeout_seconds):
                    execution = await self._wait(execution.handle, ctx, execution.log_count)
                if execution.status not in FINISHED_STATUSES:
                    execution = await self.bridge.call(lambda c: c.status(execution.handle))
            ended = execution.status in FINISHED_STATUSES
            waited = round(time.monotonic() - began, 3)
            if ended:
                message = (
                    f"It has ended: {execution.status} ({execution.reason or 'no reason given'})."
                )
            else:
                message = (
                    f"Still {execution.status} after {waited:g} s. Call wait_for_workflow "
                    "again to keep waiting, or get_workflow_logs to see its output."
                )
            result: WaitResult = {
                **await self.status(execution),
                "ended": ended,
                "waited_seconds": waited,
                "message": message,
            }
            return self.ok(result)

        return await self.attempt(body, handle=handle_id)

    async def _wait(
        self, handle: str, ctx: Context[Any, Any] | None = None, log_count: int = 0
    ) -> Execution:
        """The execution once it has ended. With a context whose client asked for progress,
        follow its log from `log_count` on and report each phase and task event."""
        meta = ctx.request_context.meta if ctx is not None else None
        if ctx is None or not meta or meta.get("progress_token") is None:
            reply = await self.bridge.stream(protocol.Wait(handle=handle))
        else:
            reply = await self.bridge.stream(
                protocol.Follow(handle=handle, after=log_count - 1),
                on_entries=_Progress(ctx, self.limits.line_cap).entries,
            )
        if not isinstance(reply, protocol.Finished):
            raise WfmError("unexpected_reply", f"expected finished from wfmd, got {type(reply)}")
        return reply.execution


class _Progress:
    """MCP progress notifications from an execution's phase and task events: progress counts
    the events (it must only grow), the message says what happened."""

    def __init__(self, ctx: Context[Any, Any], cap: int) -> None:
        self.ctx = ctx
        self.cap = min(cap, 200)
        self.count = 0
        self.total_phases: int | None = None

    async def entries(self, entries: list[LogEntry]) -> None:
        for entry in entries:
            if entry.type not in PROGRESS_TYPES or entry.event is None:
                continue
            self.count += 1
            total = entry.event.get("total_phases")
            if isinstance(total, int):
                self.total_phases = total
            message = cut(_describe_event(entry.type, entry.event, self.total_phases), self.cap)
            with contextlib.suppress(Exception):  # a client gone away must not end the wait
                await self.ctx.report_progress(self.count, None, message)


def _describe_event(kind: str, event: Mapping[str, Any], total_phases: int | None) -> str:
    """`phase 2/3 started: Research`, `task p1-t2 failed (no result)`."""
    subject, _, verb = kind.partition("_")
    if subject == "phase":
        of = f"/{total_phases}" if total_phases else ""
        text = f"phase {event.get('phase')}{of} {verb}: {event.get('name', '')}"
    else:
        text = f"task {event.get('task_id')} {verb}"
    key = {"started": "description", "completed": "result", "failed": "error"}.get(verb, "")
    detail = event.get(key) if subject == "task" or verb == "failed" else None
    if isinstance(detail, str) and detail:
        text += f" ({detail})"
    return text


def _started_message(execution: Execution, wait_seconds: float | None) -> str:
    status = execution.status
    if status in FINISHED_STATUSES:
        return f"It has ended: {status} ({execution.reason or 'no reason given'})."
    follow = "Follow it with wait_for_workflow, get_workflow_status or get_workflow_logs."
    if wait_seconds:
        return f"Still {status} after waiting {wait_seconds:g} s. {follow}"
    if status == "NotStarted":
        place = execution.queue_position
        queue = f" (place {place} in the queue)" if place and place > 1 else ""
        return f"Accepted; it starts as soon as a run slot is free{queue}. {follow}"
    return f"Running. {follow}"


def _clamp_time(seconds: float) -> float:
    return max(0.0, min(seconds, 1e10))


# --------------------------------------------------------------------------- the server

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
TOOLS: tuple[tuple[str, ToolAnnotations], ...] = (
    ("list_workflows", READ_ONLY),
    (
        "execute_workflow",
        ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False),
    ),
    ("get_workflow_status", READ_ONLY),
    ("get_workflow_logs", READ_ONLY),
    (
        "cancel_workflow",
        ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False),
    ),
    ("list_execution_history", READ_ONLY),
    ("get_execution_params", READ_ONLY),
    ("get_workflow_history", READ_ONLY),
    ("wait_for_workflow", READ_ONLY),
)


def build_server(bridge: Bridge, limits: Limits) -> MCPServer[Any]:
    tools = Tools(bridge, limits)
    server: MCPServer[Any] = resources.ExecutionResources(
        bridge,
        limits,
        SERVER_NAME,
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    for name, annotations in TOOLS:
        fn = getattr(tools, name)
        description = inspect.cleandoc(fn.__doc__ or "")
        server.add_tool(fn, name=name, description=description, annotations=annotations)
    resources.add_templates(server, bridge, limits)
    return server


def serve(socket_path: str | None) -> int:
    """Serve on stdin and stdout until the client goes away; the exit code."""
    try:
        limits = Limits.from_env()
    except ValueError as exc:
        print(f"wfmctl: error: {exc}", file=sys.stderr)
        return 2
    build_server(Bridge(socket_path), limits).run("stdio")
    return 0
