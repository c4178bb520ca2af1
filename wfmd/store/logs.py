"""Log rows: writing batches and reading entries back by sequence number.

A row holds consecutive lines of one stream received together, or one structured event (see
schema/0001_initial.sql). Its key is `(execution_id << SEQ_BITS) | first_seq`, so one
execution's log is one contiguous key range in sequence order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import apsw

from wfmctl.protocol import ExportRow, LogEntry
from wfmd.events import EVENT_MARKER, EVENT_TYPES, event_fields
from wfmd.store.sqlar import unpack

SEQ_BITS = 32
SEQ_MASK = (1 << SEQ_BITS) - 1

STDOUT = 1
STDERR = 2
_STREAM_NAMES: dict[int, Literal["stdout", "stderr"]] = {STDOUT: "stdout", STDERR: "stderr"}

# Text per page of entries: keeps every reply well inside protocol.MAX_FRAME (16 MiB) even
# when the lines are maximal (1 MiB); a page always holds at least one entry.
MAX_PAGE_BYTES = 8 * 1024 * 1024


def row_key(execution_id: int, seq: int) -> int:
    return (execution_id << SEQ_BITS) | seq


def split_key(key: int) -> tuple[int, int]:
    """`(execution_id, first_seq)` of a row key."""
    return key >> SEQ_BITS, key & SEQ_MASK


def key_range(execution_id: int) -> tuple[int, int]:
    return execution_id << SEQ_BITS, (execution_id << SEQ_BITS) | SEQ_MASK


@dataclass(slots=True)
class LogRow:
    """One row to insert. `data` may grow while the writer merges later reads into it."""

    key: int
    stream: int
    ts: int
    lines: int
    event: str | None
    data: bytes | bytearray


def insert_rows(conn: apsw.Connection, rows: Iterable[LogRow]) -> None:
    """The caller holds the transaction."""
    conn.executemany(
        "INSERT INTO execution_logs (id, stream, ts, lines, event, data) VALUES (?, ?, ?, ?, ?, ?)",
        ((r.key, r.stream, r.ts, r.lines, r.event, bytes(r.data)) for r in rows),
    )


def delete_ranges(conn: apsw.Connection, ranges: Iterable[tuple[int, int]]) -> None:
    """Delete the rows with keys in each [lo, hi). The caller holds the transaction."""
    conn.executemany("DELETE FROM execution_logs WHERE id >= ? AND id < ?", ranges)


def replace_rows(conn: apsw.Connection, rows: Iterable[LogRow]) -> None:
    """Insert, replacing a row of the same key (the log cap's marker). The caller holds the
    transaction."""
    conn.executemany(
        "INSERT OR REPLACE INTO execution_logs (id, stream, ts, lines, event, data)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        ((r.key, r.stream, r.ts, r.lines, r.event, bytes(r.data)) for r in rows),
    )


def _wire_size(line: str) -> int:
    """Bytes the line takes in a reply (UTF-8): invalid bytes became 3-byte U+FFFD."""
    return len(line) if line.isascii() else len(line.encode())


def split_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def as_bytes(data: object) -> bytes:
    """A row's data as bytes: wfmd stores a BLOB, but a row written by hand (`sqlite3`, the
    database is a product surface) may hold TEXT, a number or NULL."""
    if isinstance(data, bytes):
        return data
    if data is None:
        return b""
    return str(data).encode("utf-8", "replace")


def row_entries(row: Sequence[Any]) -> list[LogEntry]:
    """A row's entries (the row as SELECT reads it). Never fails on what the row holds: an
    event whose fields cannot be decoded or served (rows stored before events were bounded:
    1e400, an integer beyond 64 bits, deep nesting) is served as the raw stderr line it was
    printed as."""
    key, stream, ts, _count, event, data, raw_size = row
    if raw_size is not None and isinstance(data, bytes):
        data = unpack(data, raw_size)
    first = key & SEQ_MASK
    stream_name = _STREAM_NAMES.get(stream, "stderr")
    seconds = ts / 1000.0 if isinstance(ts, int | float) else 0.0
    if event is not None and event not in EVENT_TYPES:
        event = None  # not wfmd's (a row written by hand): served as raw output
    out = []
    for offset, raw in enumerate(split_lines(as_bytes(data))):
        kind, fields = "raw_output", None
        if event is not None and raw.startswith(EVENT_MARKER):
            fields = event_fields(raw[len(EVENT_MARKER) :].rstrip(b"\r"))
            if fields is not None:
                fields.pop("type", None)
                kind = event
        out.append(
            LogEntry(
                seq=first + offset,
                ts=seconds,
                stream=stream_name,
                type=kind,
                line=raw.decode("utf-8", "replace"),
                event=fields,
            )
        )
    return out


# A stored row as `row_entries` takes it; `raw_size` says whether `data` is compressed.
SELECT = "SELECT id, stream, ts, lines, event, data, raw_size FROM execution_logs"


def _start(conn: apsw.Connection, execution_id: int, after: int) -> tuple[int, int]:
    """Where reading the entries after `after` begins: (the key of the row holding the
    first of them, which may start before it; the key that entry would have)."""
    lo, _hi = key_range(execution_id)
    first_wanted = row_key(execution_id, after + 1) if after >= 0 else lo
    start = conn.execute(
        "SELECT max(id) FROM execution_logs WHERE id BETWEEN ? AND ?", (lo, first_wanted)
    ).get
    return (lo if start is None else int(start)), first_wanted


def read_after(conn: apsw.Connection, execution_id: int, after: int, limit: int) -> list[LogEntry]:
    """Up to `limit` entries with seq > `after`, in order."""
    _lo, hi = key_range(execution_id)
    start, _first_wanted = _start(conn, execution_id, after)
    out: list[LogEntry] = []
    size = 0
    for row in conn.execute(f"{SELECT} WHERE id BETWEEN ? AND ? ORDER BY id", (start, hi)):
        for entry in row_entries(row):
            if entry.seq <= after:
                continue
            size += _wire_size(entry.line)
            if len(out) >= limit or (out and size > MAX_PAGE_BYTES):
                return out
            out.append(entry)
    return out


def read_tail(conn: apsw.Connection, execution_id: int, count: int) -> list[LogEntry]:
    """The last `count` entries, in order."""
    lo, hi = key_range(execution_id)
    rows = []
    lines = 0
    for row in conn.execute(f"{SELECT} WHERE id BETWEEN ? AND ? ORDER BY id DESC", (lo, hi)):
        rows.append(row)
        lines += row[3]
        if lines >= count:
            break
    entries: list[LogEntry] = []
    for row in reversed(rows):
        entries.extend(row_entries(row))
    out: list[LogEntry] = []
    size = 0
    for entry in reversed(entries[-count:] if count else []):
        size += _wire_size(entry.line)
        if out and size > MAX_PAGE_BYTES:
            break
        out.append(entry)
    out.reverse()
    return out


def read_rows(
    conn: apsw.Connection, execution_id: int, after_key: int, max_bytes: int
) -> list[tuple[int, int, int, int, str | None, bytes]]:
    """Stored rows (key, stream, ts, lines, event, data) with keys above `after_key`, in
    order, up to about `max_bytes` of data (at least one row): what export streams."""
    lo, hi = key_range(execution_id)
    out = []
    size = 0
    for key, stream, ts, lines, event, data, raw_size in conn.execute(
        f"{SELECT} WHERE id BETWEEN ? AND ? ORDER BY id", (max(lo, after_key + 1), hi)
    ):
        data = unpack(as_bytes(data), raw_size)
        out.append((key, stream, ts if isinstance(ts, int) else 0, lines, event, data))
        size += len(data)
        if size >= max_bytes:
            break
    return out


def read_rows_after(
    conn: apsw.Connection, execution_id: int, after: int, max_bytes: int
) -> list[tuple[int, int, int, int, str | None, bytes]]:
    """`read_rows` from the entry after `after`: the row holding it may start before it, and
    is cut to begin there."""
    start, first_wanted = _start(conn, execution_id, after)
    rows = read_rows(conn, execution_id, start - 1, max_bytes)
    if rows and rows[0][0] < first_wanted:
        key, stream, ts, lines, event, data = rows[0]
        skip = first_wanted - key
        kept = split_lines(data)[skip:]
        tail = b"\n".join(kept) + (b"\n" if data.endswith(b"\n") else b"")
        rows[0] = (first_wanted, stream, ts, lines - skip, event, tail)
        if not kept:
            rows.pop(0)
    return rows


def export_rows(rows: Sequence[tuple[int, int, int, int, str | None, bytes]]) -> list[ExportRow]:
    """Rows from `read_rows` as export sends and archives them: raw rows as stored, an
    event decoded (or not) exactly as every log reader serves it."""
    out = []
    for row in rows:
        key, stream, ts, _lines, event, data = row
        if event is None:
            out.append(
                ExportRow(
                    seq=key & SEQ_MASK,
                    ts=ts / 1000.0,
                    stream=_STREAM_NAMES.get(stream, "stderr"),
                    data=data,
                )
            )
            continue
        for entry in row_entries((*row, None)):  # already unpacked
            out.append(
                ExportRow(
                    seq=entry.seq,
                    ts=entry.ts,
                    stream=entry.stream,
                    data=entry.line.encode() + b"\n",
                    type=entry.type,
                    event=entry.event,
                )
            )
    return out


def last_entry(conn: apsw.Connection, execution_id: int) -> tuple[int, int | None]:
    """(next sequence number, receive time of the last entry in ms) of an execution's log."""
    lo, hi = key_range(execution_id)
    row = conn.execute(
        "SELECT id, lines, ts FROM execution_logs WHERE id BETWEEN ? AND ? ORDER BY id DESC"
        " LIMIT 1",
        (lo, hi),
    ).get
    if row is None:
        return 0, None
    key, lines, ts = row
    return (key & SEQ_MASK) + lines, ts
