"""Retention's requests: prune, delete, info."""

from __future__ import annotations

import os

import trio

from wfmctl.protocol import (
    FINISHED_STATUSES,
    MAX_REMOVED_LISTED,
    Delete,
    ErrorCode,
    GetInfo,
    InfoReply,
    Prune,
    PruneReply,
    Removed,
    RetentionRun,
)
from wfmd.api.context import Services
from wfmd.errors import Refused
from wfmd.housekeeping.retention import Outcome, Request, Retention
from wfmd.store import executions, upkeep


def _retention(s: Services) -> Retention:
    if s.retention is None:
        raise Refused(ErrorCode.INTERNAL, "retention is not running in this daemon")
    return s.retention


def _reply(outcome: Outcome, listed: list[Removed]) -> PruneReply:
    return PruneReply(
        dry_run=outcome.dry_run,
        executions_removed=outcome.count,
        log_entries_removed=outcome.log_entries,
        bytes_freed=outcome.bytes_freed,
        duration=outcome.duration,
        executions=listed[:MAX_REMOVED_LISTED],
    )


async def prune(s: Services, request: Prune) -> PruneReply:
    outcome = await _retention(s).prune(
        Request(
            dry_run=request.dry_run,
            older_than_ms=None if request.older_than is None else int(request.older_than * 1000),
            keep=request.keep,
            workflow_id=request.workflow_id,
        )
    )
    listed = [
        Removed(
            handle=c.handle,
            workflow_id=c.workflow_id,
            ended_at=c.ended_ms / 1000.0,
            log_count=c.log_count,
        )
        for c in outcome.removed[:MAX_REMOVED_LISTED]
    ]
    return _reply(outcome, listed)


async def delete(s: Services, request: Delete) -> PruneReply:
    found = {}
    for handle in request.handles:
        stored = await s.resolve(handle)
        if stored.info.status not in FINISHED_STATUSES:
            raise Refused(
                ErrorCode.NOT_RUNNABLE,
                f"execution {stored.info.handle} is {stored.info.status}: only finished"
                " executions can be deleted (cancel it first); nothing was deleted",
            )
        found[stored.id] = stored.info
    outcome = await _retention(s).delete(list(found))
    listed = [
        Removed(
            handle=found[c.id].handle,
            workflow_id=found[c.id].workflow_id,
            ended_at=found[c.id].ended_at,
            log_count=found[c.id].log_count,
        )
        for c in outcome.removed
    ]
    return _reply(outcome, listed)


async def info(s: Services, request: GetInfo) -> InfoReply:
    pages = await s.store.lookup(upkeep.pages)
    counts = await s.store.read(upkeep.counts_by_status)
    oldest_id = await s.store.lookup(upkeep.oldest_id)
    oldest = None
    if oldest_id is not None:
        oldest = s.live(await s.store.lookup(executions.get_by_id, oldest_id))
    last = await s.store.lookup(upkeep.last_run)
    mode = await s.store.lookup(upkeep.auto_vacuum)
    wal = await trio.to_thread.run_sync(_size, f"{s.store.path}-wal")
    main = await trio.to_thread.run_sync(_size, str(s.store.path))
    policy: dict[str, object] = {}
    next_at = None
    if s.retention is not None:
        settings = s.retention.settings
        policy = settings.describe()
        next_at = s.retention.next_run_at
    return InfoReply(
        database=str(s.store.path),
        file_bytes=main + wal,
        wal_bytes=wal,
        page_size=pages.page_size,
        page_count=pages.page_count,
        free_pages=pages.freelist,
        bytes_in_use=pages.in_use,
        auto_vacuum=mode,
        counts=counts,
        oldest=oldest,
        last_retention=None
        if last is None
        else RetentionRun(
            started_at=last.started_ms / 1000.0,
            duration=last.duration_ms / 1000.0,
            trigger=last.trigger,
            executions_removed=last.executions_removed,
            log_entries_removed=last.log_entries_removed,
            bytes_freed=last.bytes_freed,
            bytes_compressed=last.bytes_compressed,
        ),
        next_retention_at=next_at,
        policy=policy,
    )


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
