"""Compression of cold history: log rows in SQLite's sqlar format (schema/0009_compression.sql).

A row's `data` is zlib-compressed (`zlib.compress`, as sqlar's own `sqlar_compress`) only
when that makes it smaller; `raw_size` is then its length as printed, and equals
`length(data)` when it was kept as is. The stock `sqlite3` shell reads either with its
built-in `sqlar_uncompress(data, raw_size)`; `sqlar.unpack` is the same for wfmd's readers.
Rows of finished executions never change, so compressing one is a single UPDATE that
either happened or did not: readers never see anything in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import apsw

from wfmd.store.database import transaction
from wfmd.store.logs import key_range


def due(conn: apsw.Connection, ended_before_ms: int, limit: int) -> list[int]:
    """Finished executions that ended before `ended_before_ms` and are not compressed yet,
    those that ended first first."""
    return [
        cast(int, eid)
        for (eid,) in conn.execute(
            "SELECT id FROM executions WHERE logs_compressed = 0 AND ended_at < ?"
            " AND status IN ('Completed', 'Failed', 'Cancelled') ORDER BY ended_at LIMIT ?",
            (ended_before_ms, limit),
        )
    ]


def rows_to_pack(
    conn: apsw.Connection, ids: Sequence[int], limit: int, max_bytes: int
) -> tuple[list[tuple[int, bytes]], list[int]]:
    """Up to `limit` rows (key, data) never looked at, of these executions in turn, and no
    more once they hold `max_bytes` (a row can be megabytes); and the executions all of whose
    rows are among them (or were looked at before)."""
    rows: list[tuple[int, bytes]] = []
    done: list[int] = []
    size = 0
    for eid in ids:
        lo, hi = key_range(eid)
        cursor = conn.execute(
            "SELECT id, data FROM execution_logs WHERE id BETWEEN ? AND ?"
            " AND raw_size IS NULL AND typeof(data) = 'blob' ORDER BY id",
            (lo, hi),
        )
        for key, data in cursor:
            if len(rows) >= limit or (rows and size >= max_bytes):
                return rows, done  # this execution has rows left: not done
            rows.append((cast(int, key), bytes(cast(bytes, data))))
            size += len(data)
        done.append(eid)
    return rows, done


def store_packed(
    conn: apsw.Connection, packed: Sequence[tuple[int, bytes, int]], done: Sequence[int]
) -> None:
    """Replace rows' data by what `sqlar.pack` made of it, and mark the executions `done`,
    in one transaction."""
    with transaction(conn):
        conn.executemany(
            "UPDATE execution_logs SET data = ?, raw_size = ? WHERE id = ? AND raw_size IS NULL",
            ((data, size, key) for key, data, size in packed),
        )
        conn.executemany(
            "UPDATE executions SET logs_compressed = 1 WHERE id = ?", ((eid,) for eid in done)
        )
