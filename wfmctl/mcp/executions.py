"""The tools that start, stop, wait for and look at one execution: execute_workflow,
get_workflow_status, cancel_workflow, get_execution_params, wait_for_workflow.

Annotations here are evaluated (no `from __future__ import annotations`): the SDK reads the
tools' signatures to build their JSON schemas.
"""

import contextlib
import time
from collections.abc import Mapping
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field
from typing_extensions import TypedDict

from wfmctl import protocol
from wfmctl.client import WfmError
from wfmctl.mcp.results import (
    StatusResult,
    cut,
)
from wfmctl.mcp.toolkit import HandleId, ParamValue, ToolBase, WorkflowId
from wfmctl.protocol import FINISHED_STATUSES, Execution, LogEntry

MAX_WAIT = 300.0  # seconds a tool call may wait for an execution to end
DEFAULT_WAIT = 60.0

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


class ExecutionResult(StatusResult):
    message: str


class WaitResult(StatusResult):
    ended: bool
    waited_seconds: float
    message: str


class ParamsResult(TypedDict):
    handle_id: str
    workflow_id: str
    params: dict[str, str]


class ExecutionTools(ToolBase):
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
