"""Recovery of executions left Running by a daemon that died.

Such an execution is marked Failed with a reason that says so, and an end time that is the
last moment it was known alive: its last log entry or the dead daemon's last heartbeat,
whichever is later, never earlier than its start. Any of its processes still alive are killed
first, found by their WFM_EXECUTION_ID rather than by a pid that may have been reused.
"""

from __future__ import annotations

import logging
from collections.abc import Container

import apsw
import trio

from wfmd.runs import process
from wfmd.store import Finish, Store, StoredExecution, executions, last_beat, logs

log = logging.getLogger(__name__)

DIED_REASON = "interrupted: the daemon supervising it died"


def _orphans(conn: apsw.Connection) -> list[StoredExecution]:
    return [s for s in executions.active(conn) if s.info.status == "Running"]


def _finish_orphan(
    conn: apsw.Connection, orphan: StoredExecution, beat: int | None, killed: int
) -> None:
    next_seq, last_ts = logs.last_entry(conn, orphan.id)
    started = int((orphan.info.started_at or orphan.info.created_at) * 1000)
    ended = max(started, last_ts or 0, beat or 0)
    reason = DIED_REASON + (f"; killed {killed} leftover process(es)" if killed else "")
    with conn:
        executions.apply_finishes(conn, [Finish(orphan.id, "Failed", reason, ended, next_seq)])


async def recover(store: Store, *, supervised: Container[int], after_crash: bool) -> int:
    """Recover every Running execution not in `supervised`; returns how many.

    `after_crash`: this runs at start-up, so the heartbeat in the database is the dead
    daemon's and bounds how long its executions were alive.

    Cancellation: each execution is recovered in its own database call; one interrupted
    midway is simply recovered again by the next run.
    """
    beat = await store.call(last_beat) if after_crash else None
    count = 0
    for orphan in await store.call(_orphans):
        if orphan.id in supervised:
            continue
        killed = await trio.to_thread.run_sync(process.kill_execution_processes, orphan.info.handle)
        await store.call(_finish_orphan, orphan, beat, killed)
        log.warning(
            "recovered execution %s (%s): %s",
            orphan.info.handle,
            orphan.info.workflow_id,
            DIED_REASON,
        )
        count += 1
    return count
