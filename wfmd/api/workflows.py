"""What can be run: workflows, the values their parameters had before, how they fare."""

from __future__ import annotations

from wfmctl.protocol import (
    ErrorCode,
    ListWorkflows,
    ParamHistory,
    ParamHistoryReply,
    Stats,
    StatsReply,
    WorkflowList,
)
from wfmd.api.context import Services
from wfmd.errors import Refused
from wfmd.store import executions, stats

# Distinct values per field that one `param_history` reply may carry.
MAX_PARAM_VALUES = 100


async def workflows(s: Services, request: ListWorkflows) -> WorkflowList:
    catalog = await s.catalog.rescan() if request.rescan else s.catalog.current
    found = list(catalog.workflows.values())
    if request.workflow_id is not None:
        found = [w for w in found if w.id == request.workflow_id]
        if not found:
            raise Refused(ErrorCode.NOT_FOUND, f"no workflow {request.workflow_id!r}")
    return WorkflowList(workflows=found, skipped=catalog.skipped, conflicts=catalog.conflicts)


async def param_history(s: Services, request: ParamHistory) -> ParamHistoryReply:
    limit = max(1, min(request.limit, MAX_PARAM_VALUES))
    values = await s.store.read(
        executions.param_history, request.workflow_id, request.field_name, limit
    )
    return ParamHistoryReply(workflow_id=request.workflow_id, values=values)


async def workflow_stats(s: Services, request: Stats) -> StatsReply:
    since_ms = None if request.since is None else int(request.since * 1000)
    found = await s.store.read(stats.workflow_stats, request.workflow_id, since_ms)
    return StatsReply(workflows=found, since=request.since)
