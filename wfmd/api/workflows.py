"""What can be run: workflows, the values their parameters had before, how they fare."""

from __future__ import annotations

from pathlib import Path

import trio

from wfmctl.protocol import (
    ErrorCode,
    ListWorkflows,
    ParamHistory,
    ParamHistoryReply,
    Stats,
    StatsReply,
    WorkflowDirectory,
    WorkflowList,
)
from wfmd.api.context import Services
from wfmd.errors import Refused, did_you_mean
from wfmd.store import executions, stats

# Distinct values per field that one `param_history` reply may carry.
MAX_PARAM_VALUES = 100


async def workflows(s: Services, request: ListWorkflows) -> WorkflowList:
    catalog = await s.catalog.rescan() if request.rescan else s.catalog.current
    found = list(catalog.workflows.values())
    if request.workflow_id is not None:
        found = [w for w in found if w.id == request.workflow_id]
        if not found:
            close = did_you_mean(request.workflow_id, catalog.workflows)
            raise Refused(ErrorCode.NOT_FOUND, f"no workflow {request.workflow_id!r}{close}")
    directories = await trio.to_thread.run_sync(_directories, s.catalog.dirs)
    return WorkflowList(
        workflows=found,
        skipped=catalog.skipped,
        conflicts=catalog.conflicts,
        directories=directories,
    )


def _directories(dirs: list[Path]) -> list[WorkflowDirectory]:
    return [WorkflowDirectory(path=str(d), exists=d.is_dir()) for d in dirs]


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
