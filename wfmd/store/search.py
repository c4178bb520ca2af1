"""Full-text search over the logs: indexing queued rows, and finding matching lines.

Indexing (on the writer's thread, in small batches: see housekeeping/indexer.py) takes keys
from `log_search_queue`, which a trigger fills as rows are inserted, and records each row's
words in `log_search` (schema/0007_search.sql).

A search walks the index's candidate rows newest first (row keys follow executions, then
sequence numbers), checks each line against the terms, and stops at the page's size or after
MAX_CANDIDATE_ROWS rows, whichever comes first; the cursor it returns continues from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import apsw

from wfmctl.protocol import LogEntry
from wfmd.events import EVENT_MARKER, event_fields
from wfmd.store import logs
from wfmd.store.database import transaction
from wfmd.store.search_terms import Terms
from wfmd.store.sqlar import unpack

# Candidate rows one search request looks at before it returns what it found with a cursor:
# bounds a request's time whatever the query (a word in every row, filters that exclude most).
MAX_CANDIDATE_ROWS = 2_000

# A row's data as printed, in SQL: compressed rows (see sqlar.py) through sqlar_uncompress,
# which wfmd defines on its connections; the others as they are, without a call.
_UNPACKED = (
    "CASE WHEN l.raw_size IS NULL OR l.raw_size = length(l.data) THEN l.data"
    " ELSE sqlar_uncompress(l.data, l.raw_size) END"
)

# The backlog is counted up to this many rows: beyond, "more than" is all anyone needs.
BACKLOG_COUNT_CAP = 100_000


def searchable_text(event: str | None, data: bytes) -> str:
    """A row's text as it is indexed and matched: raw lines as printed; an event as its type
    and the values of its fields (not the JSON's keys, which every event repeats)."""
    text = data.decode("utf-8", "replace")
    if event is None:
        return text
    return "\n".join(_event_text(event, line) for line in text.split("\n") if line)


def _event_text(event: str, line: str) -> str:
    fields = event_fields(line.encode()[len(EVENT_MARKER) :]) if line.startswith("__WF_") else None
    if fields is None:
        return line
    values = [event] + [str(v) for k, v in fields.items() if k != "type" and v is not None]
    return " ".join(values)


def index_batch(conn: apsw.Connection, max_bytes: int) -> int:
    """Index the queued rows with the lowest keys, up to about `max_bytes` of data, in one
    transaction. Returns how many rows it took from the queue.

    Plain rows go from the table to the index in one statement, inside SQLite (FTS5 works
    per statement: a statement per row is several times slower); event rows go through
    `searchable_text`.
    """
    first = last = None
    taken = 0
    events: list[int] = []
    size = 0
    with transaction(conn):
        queued = conn.execute(
            "SELECT q.key, l.event IS NOT NULL, length(l.data)"
            " FROM log_search_queue AS q LEFT JOIN execution_logs AS l ON l.id = q.key"
            " ORDER BY q.key"
        )
        for key, is_event, length in queued:
            first = key if first is None else first
            last = key
            taken += 1
            if is_event:
                events.append(key)
            size += length or 0  # a key without its row (deleted by hand) is dropped below
            if size >= max_bytes:
                break
        if first is None:
            return 0
        conn.execute(
            "INSERT INTO log_search (rowid, text)"
            f" SELECT l.id, CAST({_UNPACKED} AS TEXT) FROM log_search_queue AS q"
            " JOIN execution_logs AS l ON l.id = q.key"
            " WHERE q.key BETWEEN ? AND ? AND l.event IS NULL",
            (first, last),
        )
        for key in events:
            event, data, raw_size = conn.execute(
                "SELECT event, data, raw_size FROM execution_logs WHERE id = ?", (key,)
            ).get
            text = searchable_text(event, unpack(logs.as_bytes(data), raw_size))
            conn.execute("INSERT INTO log_search (rowid, text) VALUES (?, ?)", (key, text))
        conn.execute("DELETE FROM log_search_queue WHERE key BETWEEN ? AND ?", (first, last))
    return taken


def backlog(conn: apsw.Connection) -> int:
    """Rows not indexed yet, counted up to BACKLOG_COUNT_CAP."""
    value = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM log_search_queue LIMIT ?)", (BACKLOG_COUNT_CAP,)
    ).get
    return int(value)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which lines a search looks at. Positions are `execution_id << 32 | seq`."""

    lowest: int  # the first position in scope
    before: int  # positions below this one
    workflow_id: str | None = None
    status: str | None = None


@dataclass(slots=True)
class Hit:
    execution_id: int
    handle: str
    workflow_id: str
    entry: LogEntry


@dataclass(slots=True)
class Found:
    hits: list[Hit] = field(default_factory=list)
    next_before: int | None = None  # pass as `before` to go on; None: nothing more
    candidate_rows: int = 0


def search(conn: apsw.Connection, terms: Terms, scope: Scope, limit: int) -> Found:
    """Matching lines, newest first, at most `limit`."""
    found = Found()
    needle = terms.needle()  # see _lines_to_check
    # execution id -> (handle, workflow id), or None if outside the workflow/status filters
    executions: dict[int, tuple[str, str] | None] = {}
    candidates = conn.execute(
        "SELECT rowid FROM log_search WHERE log_search MATCH ? AND rowid BETWEEN ? AND ?"
        " ORDER BY rowid DESC",
        (terms.fts_query(), scope.lowest, scope.before - 1),
    )
    for (key,) in candidates:
        found.candidate_rows += 1
        if found.candidate_rows > MAX_CANDIDATE_ROWS:  # go on from this row's last line
            lines = conn.execute("SELECT lines FROM execution_logs WHERE id = ?", (key,)).get
            found.next_before = min(scope.before, key + int(lines or 1))
            break
        eid, _first = logs.split_key(key)
        if eid not in executions:
            executions[eid] = _in_filters(conn, eid, scope)
        wanted = executions[eid]
        if wanted is None:
            continue
        row = conn.execute(f"{logs.SELECT} WHERE id = ?", (key,)).get
        if row is None:  # deleted since the index said so
            continue
        event = row[4]
        data = unpack(logs.as_bytes(row[5]), row[6])
        lines = logs.split_lines(data)
        entries: list[LogEntry] | None = None
        for offset in reversed(_lines_to_check(data, lines, needle if event is None else None)):
            position = key + offset
            if position >= scope.before:
                continue
            raw = lines[offset]
            text = searchable_text(event, raw) if event else raw.decode("utf-8", "replace")
            if not terms.matches(text):
                continue
            entries = entries if entries is not None else logs.row_entries(row)
            found.hits.append(Hit(eid, *wanted, entries[offset]))
            if len(found.hits) >= limit:
                found.next_before = position
                return found
    return found


def _lines_to_check(data: bytes, lines: list[bytes], needle: bytes | None) -> list[int]:
    """Offsets of the lines that may match, ascending: in an ASCII row, those that contain
    the needle (found in the whole row at once, then mapped to lines); else every line.
    Not for events, whose JSON may spell a letter as an escape."""
    if needle is None or not data.isascii():
        return list(range(len(lines)))
    hay = data.lower()
    found: list[int] = []
    line = 0
    scanned = 0
    at = hay.find(needle)
    while at >= 0:
        line += hay.count(b"\n", scanned, at)
        scanned = at
        if not found or found[-1] != line:
            found.append(line)
        at = hay.find(needle, at + 1)
    return found


def _in_filters(conn: apsw.Connection, execution_id: int, scope: Scope) -> tuple[str, str] | None:
    """The execution's (handle, workflow id) if it is within the scope's filters."""
    row: Any = conn.execute(
        "SELECT handle, workflow_id, status FROM executions WHERE id = ?", (execution_id,)
    ).get
    if row is None:
        return None
    handle, workflow_id, status = row
    if scope.workflow_id not in (None, workflow_id) or scope.status not in (None, status):
        return None
    return handle, workflow_id
