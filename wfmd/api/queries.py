"""Read-only requests: ping, workflows, status, logs, history, params."""

from __future__ import annotations

import time

from wfmctl.protocol import (
    FINISHED_STATUSES,
    ErrorCode,
    GetLogs,
    GetParams,
    GetStatus,
    History,
    HistoryPage,
    ListWorkflows,
    LogPage,
    ParamHistory,
    ParamHistoryReply,
    ParamsReply,
    Pong,
    StatusReply,
    WorkflowList,
)
from wfmd.api.context import RequestFailed, Services
from wfmd.store import HistoryFilter, LookupFailed, executions
from wfmd.store import logs as log_rows

# Upper bounds on what one reply may carry, so that a request cannot make the daemon build
# a reply larger than a frame (and a client cannot ask it to hold millions of rows).
MAX_LOG_PAGE = 10_000
MAX_HISTORY_PAGE = 1_000


async def ping(s: Services) -> Pong:
    error = s.writer.storage_error
    return Pong(
        daemon_version=s.version,
        pid=s.pid,
        uptime=time.monotonic() - s.started,
        database=str(s.store.path),
        socket=str(s.socket_path),
        running=s.supervisor.running_count,
        queued=s.supervisor.queued_count,
        storage_ok=error is None,
        storage_error=error,
    )


async def workflows(s: Services, request: ListWorkflows) -> WorkflowList:
    catalog = await s.catalog.rescan() if request.rescan else s.catalog.current
    found = list(catalog.workflows.values())
    if request.workflow_id is not None:
        found = [w for w in found if w.id == request.workflow_id]
        if not found:
            raise RequestFailed(ErrorCode.NOT_FOUND, f"no workflow {request.workflow_id!r}")
    return WorkflowList(workflows=found, skipped=catalog.skipped, conflicts=catalog.conflicts)


async def status(s: Services, request: GetStatus) -> StatusReply:
    return StatusReply(execution=s.live(await s.resolve(request.handle)))


async def logs(s: Services, request: GetLogs) -> LogPage:
    stored = await s.resolve(request.handle)
    limit = max(0, min(request.limit, MAX_LOG_PAGE))
    after = -1 if request.after is None else request.after
    if request.tail is not None:
        entries = await s.store.read(log_rows.read_tail, stored.id, min(request.tail, MAX_LOG_PAGE))
    else:
        entries = await s.store.read(log_rows.read_after, stored.id, after, limit)
    next_after = entries[-1].seq if entries else after
    info = s.live(stored)
    finished = info.status in FINISHED_STATUSES and next_after + 1 >= info.log_count
    return LogPage(entries=entries, next_after=next_after, finished=finished)


async def history(s: Services, request: History) -> HistoryPage:
    query = HistoryFilter(
        limit=max(0, min(request.limit, MAX_HISTORY_PAGE)),
        offset=max(0, request.offset),
        before=request.before,
        workflow_id=request.workflow_id,
        status=request.status,
        since_ms=None if request.since is None else int(request.since * 1000),
        until_ms=None if request.until is None else int(request.until * 1000),
    )
    try:
        page, next_before = await s.store.read(executions.history, query)
    except LookupFailed as exc:
        raise RequestFailed(exc.code, f"'before': {exc}") from exc
    return HistoryPage(executions=page, next_before=next_before)


async def params(s: Services, request: GetParams) -> ParamsReply:
    stored = await s.resolve(request.handle)
    info = stored.info
    return ParamsReply(handle=info.handle, workflow_id=info.workflow_id, params=info.params)


async def param_history(s: Services, request: ParamHistory) -> ParamHistoryReply:
    limit = max(1, min(request.limit, 100))
    values = await s.store.read(
        executions.param_history, request.workflow_id, request.field_name, limit
    )
    return ParamHistoryReply(workflow_id=request.workflow_id, values=values)
