"""Importing history from the original workflow-manager."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import trio

from wfmctl.protocol import ErrorCode, ImportHistory, ImportReport
from wfmd.api.context import Services
from wfmd.errors import Refused
from wfmd.store import now_ms, workflow_manager


async def import_history(s: Services, request: ImportHistory) -> ImportReport:
    """Copy every execution the database lacks, newest first, each in its own transaction.

    Cancellation: an execution being copied is copied whole or not at all; the executions
    copied before stay, and importing again copies the rest.
    """
    path = Path(request.path)
    if not path.is_absolute():
        raise Refused(ErrorCode.BAD_REQUEST, f"the path must be absolute, not {str(path)!r}")
    src = await trio.to_thread.run_sync(workflow_manager.open_source, path)
    try:
        source = await trio.to_thread.run_sync(workflow_manager.read_history, src)
        handles = [e.handle for e in source.executions]
        present = await s.store.read(workflow_manager.present, handles)
        oldest = await s.store.read(workflow_manager.oldest_created)
        new = [e for e in source.executions if e.handle not in present]
        report = ImportReport(
            path=str(path),
            dry_run=request.dry_run,
            found=len(source.executions) + len(source.unmapped),
            imported=len(new),
            already_present=len(present),
            unmapped=source.unmapped,
            log_entries=sum(source.log_entries.get(e.handle, 0) for e in new),
            unfinished=sum(e.source_status in ("Running", "NotStarted") for e in new),
            out_of_order=sum(oldest is not None and e.created_ms > oldest for e in new),
            retention_removes=await _retention_removes(s, new),
        )
        if request.dry_run:
            return report
        imported = entries = kept_as_raw = 0
        for execution in reversed(new):  # newest first: see workflow_manager.insert
            copied = await trio.to_thread.run_sync(
                workflow_manager.read_log, src, execution.source_id, execution.created_ms
            )
            if await s.store.call(workflow_manager.insert, execution, copied):
                imported += 1
                entries += copied.entries
                kept_as_raw += copied.kept_as_raw
        return ImportReport(
            path=report.path,
            dry_run=False,
            found=report.found,
            imported=imported,
            already_present=report.found - len(source.unmapped) - imported,
            unmapped=report.unmapped,
            log_entries=entries,
            kept_as_raw=kept_as_raw,
            unfinished=report.unfinished,
            out_of_order=report.out_of_order,
            retention_removes=report.retention_removes,
        )
    finally:
        src.close()


async def _retention_removes(
    s: Services, new: list[workflow_manager.SourceExecution]
) -> dict[str, int]:
    """How many of `new`, by workflow, retention's age and count limits remove at its next
    run (the size limit aside: that depends on the database as a whole)."""
    if s.retention is None or not new:
        return {}
    policy = s.retention.settings.policy
    existing = await s.store.read(workflow_manager.counts_by_workflow)
    groups: dict[str | None, list[workflow_manager.SourceExecution]] = {}
    for e in new:  # None: the workflows held to the default limits, together
        groups.setdefault(e.workflow_id if e.workflow_id in policy.workflows else None, []).append(
            e
        )
    now = now_ms()
    removed: Counter[str] = Counter()
    for key, group in groups.items():
        limits = policy.default if key is None else policy.workflows[key]
        gone: set[str] = set()
        if limits.max_age_ms is not None:
            cutoff = now - limits.max_age_ms
            gone.update(e.handle for e in group if (e.ended_ms or e.created_ms) < cutoff)
        if limits.max_executions is not None:
            present = (
                existing.get(key, 0)
                if key is not None
                else sum(n for w, n in existing.items() if w not in policy.workflows)
            )
            newest_first = sorted(group, key=lambda e: e.created_ms, reverse=True)
            room = max(0, limits.max_executions - present)  # what is here now is newer
            gone.update(e.handle for e in newest_first[room:])
        removed.update(e.workflow_id for e in group if e.handle in gone)
    return dict(removed)
