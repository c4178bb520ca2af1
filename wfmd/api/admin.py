"""The daemon itself: ping, shutdown."""

from __future__ import annotations

import time

from wfmctl.protocol import Pong, Stopping
from wfmd.api.context import Services
from wfmd.runs import containment


async def ping(s: Services) -> Pong:
    error = s.storage_problem()
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
        containment=containment.mode(),
        search_backlog=None if s.indexer is None else s.indexer.backlog,
    )


def shutdown(s: Services) -> Stopping:
    """What a Shutdown request is told; the dispatcher stops the daemon once it is sent."""
    return Stopping(pid=s.pid, running=s.supervisor.running_count, queued=s.supervisor.queued_count)
