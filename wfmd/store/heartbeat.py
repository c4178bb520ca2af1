"""The daemon's heartbeat row: when a daemon was last known alive.

Recovery after a crash uses it to bound how long the dead daemon's executions ran.
"""

from __future__ import annotations

import apsw

from wfmd.store.database import transaction


def beat(conn: apsw.Connection, pid: int, started_at: int, now: int) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO daemon_heartbeat (id, pid, started_at, beat_at) VALUES (1, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET pid = ?, started_at = ?, beat_at = ?",
            (pid, started_at, now, pid, started_at, now),
        )


def last_beat(conn: apsw.Connection) -> int | None:
    value = conn.execute("SELECT beat_at FROM daemon_heartbeat WHERE id = 1").get
    return None if value is None else int(value)
