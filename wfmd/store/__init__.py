"""The store: the only code that imports apsw.

`Store` runs plain functions over a connection (`executions`, `logs`, `heartbeat`) on the
database's own threads; callers import what they pass to it from here.
"""

from __future__ import annotations

from wfmd.store import compression, executions, heartbeat, logs, retention, search, upkeep
from wfmd.store.database import DatabaseError
from wfmd.store.executions import Finish, HistoryFilter, StoredExecution
from wfmd.store.logs import LogRow
from wfmd.store.store import StorageError, Store, now_ms, status_and_logs, write_batch

__all__ = [
    "DatabaseError",
    "Finish",
    "HistoryFilter",
    "LogRow",
    "StorageError",
    "Store",
    "StoredExecution",
    "compression",
    "executions",
    "heartbeat",
    "logs",
    "now_ms",
    "retention",
    "search",
    "status_and_logs",
    "upkeep",
    "write_batch",
]
