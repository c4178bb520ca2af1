"""Recovery of executions left Running by a daemon that died.

Such an execution is marked Failed (`ended_by` "daemon_died") with a reason that says so, and
an end time that is the last moment it was known alive: its last log entry or the dead
daemon's last heartbeat, whichever is later, never earlier than its start. Any of its
processes still alive are killed first, by the mechanism that contained them
(runs/containment.py): its cgroup, left by the dead daemon, and every process carrying its
WFM_EXECUTION_ID; never by a pid that may have been reused. Whatever else dead daemons left
in cgroups (their probes, executions nobody supervises any more) is killed and removed too.
"""

from __future__ import annotations

import logging
from collections.abc import Container

from wfmd.runs import containment, process
from wfmd.store import Store, executions, heartbeat

log = logging.getLogger(__name__)

DIED_REASON = "interrupted: the daemon supervising it died"


async def recover(store: Store, *, supervised: Container[int], after_crash: bool) -> int:
    """Recover every Running execution not in `supervised`; returns how many.

    `after_crash`: this runs at start-up, so the heartbeat in the database is the dead
    daemon's and bounds how long its executions were alive. It is also the first thing the
    daemon does: containment is chosen (and logged) here, since recovery needs it.

    Cancellation: each execution is recovered in its own database call; one interrupted
    midway is simply recovered again by the next run.
    """
    if after_crash:
        await containment.setup(adopt_orphans=True)
    last_alive = await store.call(heartbeat.last_beat) if after_crash else None
    count = 0
    for orphan in await store.call(executions.orphans):
        if orphan.id in supervised:
            continue
        handle = orphan.info.handle
        name = containment.execution_box(handle)
        killed = await containment.kill_leftovers(process.EXECUTION_ENV, handle, name)
        reason = DIED_REASON + (f"; killed {killed} leftover process(es)" if killed else "")
        await store.call(executions.finish_orphan, orphan, last_alive, reason)
        log.warning("recovered execution %s (%s): %s", handle, orphan.info.workflow_id, reason)
        count += 1
    strays = await containment.sweep_dead_daemons()
    if strays:
        log.warning("killed %d process(es) left in cgroups by daemons that died", strays)
    return count
