"""Importing the original workflow-manager's history (`~/.workflow-manager/executions.db`).

Its schema: `executions` (a UUID `id`, `workflow_id`, `workflow_name`, `status`, RFC 3339
`start_time` / `end_time`, `exit_code`, `binary_path`), `execution_params` (name, value) and
`execution_logs` (`sequence`, `timestamp`, CamelCase `log_type`, and the entry as JSON in
`log_data`, tagged by a snake_case `type`; raw lines carry `stream` and `line`).

The source is opened read-only and never written. Each execution is copied in one
transaction, so an interrupted import leaves every execution either whole or absent, and
importing again skips the handles already present.

Imported executions take ids below every existing one, oldest lowest: history lists newest
first by id, and time filters turn times into id ranges (see `executions.first_id_at_or_after`),
both of which need ids to follow creation times.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import apsw

from wfmctl.protocol import EndedBy, ErrorCode, Status
from wfmd.errors import Refused
from wfmd.events import EVENT_MARKER, event_type
from wfmd.store import logs
from wfmd.store.database import transaction

# Why an execution that was still going in the original tool is recorded as Failed here.
UNFINISHED_REASON = "imported unfinished from workflow-manager: it was {status} there"

_TABLES = {"executions", "execution_params", "execution_logs"}


@dataclass(slots=True)
class SourceExecution:
    """One execution of the source, mapped to wfm's columns."""

    handle: str
    source_id: str  # the source's own id (the handle, maybe spelt otherwise)
    workflow_id: str
    workflow_name: str | None
    status: Status
    ended_by: EndedBy | None
    reason: str
    created_ms: int
    ended_ms: int | None
    exit_code: int | None
    argv: list[str]
    params: list[tuple[str, str]] = field(default_factory=list)
    source_status: str = ""


@dataclass(slots=True)
class SourceHistory:
    executions: list[SourceExecution]  # oldest first
    unmapped: list[str]  # "<id>: why", one per execution that cannot be mapped
    log_entries: dict[str, int]  # the source's log entries per handle


@dataclass(slots=True)
class CopiedLog:
    rows: list[tuple[int, int, int, int, str | None, bytes]]  # seq, stream, ts, lines, event, data
    entries: int
    kept_as_raw: int  # entries whose JSON could not be mapped: kept as the text they were


def open_source(path: Path) -> apsw.Connection:
    """The source database, read-only. Without a `-wal` file beside it nothing is pending, and
    it is opened immutable, so that not even a `-shm` file is created next to it."""
    if not path.is_file():
        raise Refused(ErrorCode.NOT_FOUND, f"no workflow-manager database at {path}")
    mode = "mode=ro" if os.path.exists(f"{path}-wal") else "mode=ro&immutable=1"
    uri = f"file:{quote(str(path.resolve()))}?{mode}"
    try:
        conn = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_schema")}
    except apsw.Error as exc:
        raise Refused(ErrorCode.BAD_SOURCE, f"cannot read {path}: {exc}") from None
    if missing := _TABLES - tables:
        conn.close()
        raise Refused(
            ErrorCode.BAD_SOURCE,
            f"{path} is not a workflow-manager history database"
            f" (no table {', '.join(sorted(missing))})",
        )
    return conn


def read_history(src: apsw.Connection) -> SourceHistory:
    """Every execution of the source with its params (logs are read one execution at a time)."""
    found: list[SourceExecution] = []
    unmapped: list[str] = []
    by_id: dict[str, SourceExecution] = {}
    rows = src.execute(
        "SELECT id, workflow_id, workflow_name, status, start_time, end_time, exit_code,"
        " binary_path FROM executions"
    )
    for row in rows:
        try:
            execution = _map_execution(row)
        except ValueError as exc:
            unmapped.append(f"{row[0]}: {exc}")
            continue
        found.append(execution)
        by_id[str(row[0])] = execution
    for eid, name, value in src.execute(
        "SELECT execution_id, param_name, param_value FROM execution_params ORDER BY id"
    ):
        if str(eid) in by_id:
            by_id[str(eid)].params.append((str(name), "" if value is None else str(value)))
    counts: dict[str, int] = {}
    for eid, n in src.execute(
        "SELECT execution_id, count(*) FROM execution_logs GROUP BY execution_id"
    ):
        if str(eid) in by_id:
            counts[by_id[str(eid)].handle] = n
    found.sort(key=lambda e: (e.created_ms, e.handle))
    return SourceHistory(found, unmapped, counts)


def _map_execution(row: tuple[Any, ...]) -> SourceExecution:
    sid, workflow_id, workflow_name, status, start, end, exit_code, binary = row
    try:
        handle = str(uuid.UUID(str(sid)))
    except ValueError:
        raise ValueError("its id is not a UUID") from None
    if not isinstance(workflow_id, str) or not workflow_id:
        raise ValueError("it has no workflow id")
    created = parse_time(start)
    if created is None:
        raise ValueError(f"its start time {start!r} is not a time")
    ended = parse_time(end)
    if exit_code is not None and not isinstance(exit_code, int):
        raise ValueError(f"its exit code {exit_code!r} is not a number")
    mapped_status, ended_by, reason = _map_status(status, exit_code)
    return SourceExecution(
        handle=handle,
        source_id=str(sid),
        workflow_id=workflow_id,
        workflow_name=workflow_name if isinstance(workflow_name, str) else None,
        status=mapped_status,
        ended_by=ended_by,
        reason=reason,
        created_ms=created,
        ended_ms=ended,
        exit_code=exit_code,
        argv=[binary] if isinstance(binary, str) and binary else [],
        source_status=str(status),
    )


def _map_status(status: object, exit_code: int | None) -> tuple[Status, EndedBy | None, str]:
    """wfm's status, ended_by and reason for the source's status. Raises ValueError."""
    exited = f"exited with status {exit_code}" if exit_code is not None else None
    match status:
        case "Completed":
            return "Completed", "exit" if exited else None, exited or "completed"
        case "Failed":
            reason = exited or "failed (workflow-manager recorded no exit code)"
            return "Failed", "exit" if exited else None, reason
        case "Cancelled":
            return "Cancelled", "cancelled", "cancelled"
        case "Running" | "NotStarted":
            return "Failed", "daemon_died", UNFINISHED_REASON.format(status=status)
    raise ValueError(f"its status {status!r} is not one workflow-manager writes")


def parse_time(text: object) -> int | None:
    """Milliseconds since the epoch of an RFC 3339 time (any fraction of a second), or of
    SQLite's `CURRENT_TIMESTAMP` form (UTC, no offset); None if it is neither."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def read_log(src: apsw.Connection, source_id: str, fallback_ms: int) -> CopiedLog:
    """The execution's log entries as wfm log rows, in the source's sequence order, numbered
    from 0. Every entry is kept: one whose JSON cannot be mapped is stored as its text."""
    rows: list[tuple[int, int, int, int, str | None, bytes]] = []
    seq = 0
    kept_as_raw = 0
    for _seq, ts, log_type, data in src.execute(
        "SELECT sequence, timestamp, log_type, log_data FROM execution_logs"
        " WHERE execution_id = ? ORDER BY sequence, id",
        (source_id,),
    ):
        ms = parse_time(ts) or fallback_ms
        stream, event, text, mapped = _map_entry(log_type, data)
        kept_as_raw += not mapped
        lines = text.count(b"\n")
        rows.append((seq, stream, ms, lines, event, text))
        seq += lines
    return CopiedLog(rows, seq, kept_as_raw)


def _map_entry(log_type: object, data: object) -> tuple[int, str | None, bytes, bool]:
    """(stream, event type or None, the row's data, mapped) for one source entry."""
    text = data if isinstance(data, str) else "" if data is None else str(data)
    try:
        entry = json.loads(text)
    except ValueError:
        entry = None
    if not isinstance(entry, dict):
        return logs.STDERR, None, _as_lines(text), False
    kind = entry.get("type")
    if kind == "raw_output" and isinstance(entry.get("line"), str):
        stream = logs.STDERR if entry.get("stream") == "stderr" else logs.STDOUT
        return stream, None, _as_lines(entry["line"]), True
    for candidate in _event_lines(entry):
        found = event_type(candidate)
        if found is not None:
            return logs.STDERR, found, candidate + b"\n", True
    return logs.STDERR, None, _as_lines(text), False


def _event_lines(entry: dict[str, Any]) -> Iterator[bytes]:
    """The entry as wfm stores an event line: as it was, then without its null fields (the
    original wrote `null` for an absent optional field; wfm's events leave it out)."""
    yield EVENT_MARKER + _utf8(json.dumps(entry, ensure_ascii=False))
    present = {k: v for k, v in entry.items() if v is not None}
    if len(present) < len(entry):
        yield EVENT_MARKER + _utf8(json.dumps(present, ensure_ascii=False))


def _as_lines(text: str) -> bytes:
    """Text as one or more stored lines, each ending in a newline."""
    return _utf8(text).rstrip(b"\n") + b"\n"


def _utf8(text: str) -> bytes:
    """UTF-8; a lone surrogate (JSON can spell one) becomes "?", as no UTF-8 can hold it."""
    return text.encode("utf-8", "replace")


def present(conn: apsw.Connection, handles: list[str]) -> set[str]:
    """Which of `handles` this database already holds."""
    found: set[str] = set()
    for start in range(0, len(handles), 500):
        chunk = handles[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(
            h
            for (h,) in conn.execute(
                f"SELECT handle FROM executions WHERE handle IN ({marks})", chunk
            )
        )
    return found


def _lowest_id(conn: apsw.Connection) -> int:
    """The lowest execution id in use (1 when none is): by an execution, or by log rows
    whose deletion retention has yet to finish (their keys hold the id)."""
    lowest = conn.execute(
        "SELECT min(1, coalesce((SELECT min(id) FROM executions), 1),"
        " coalesce((SELECT min(execution_id) FROM pending_deletions), 1),"
        " coalesce((SELECT min(id) >> 32 FROM execution_logs), 1))"
    ).get
    return int(lowest)


def counts_by_workflow(conn: apsw.Connection) -> dict[str, int]:
    """How many executions each workflow has in this database."""
    rows = conn.execute("SELECT workflow_id, count(*) FROM executions GROUP BY workflow_id")
    return {str(w): int(n) for w, n in rows}


def oldest_created(conn: apsw.Connection) -> int | None:
    """When the oldest execution of this database was created (ids follow creation times)."""
    value = conn.execute("SELECT created_at FROM executions ORDER BY id LIMIT 1").get
    return None if value is None else int(value)


def insert(conn: apsw.Connection, execution: SourceExecution, copied: CopiedLog) -> bool:
    """Copy one execution in one transaction, under an id below every existing one: copy the
    newest first, so that ids follow creation times. False if its handle is already there
    (imported before, or concurrently)."""
    with transaction(conn):
        if conn.execute("SELECT 1 FROM executions WHERE handle = ?", (execution.handle,)).get:
            return False
        eid = _lowest_id(conn) - 1
        last_ts = copied.rows[-1][2] if copied.rows else None
        ended = execution.ended_ms or max(execution.created_ms, last_ts or 0)
        conn.execute(
            "INSERT INTO executions (id, handle, workflow_id, workflow_name, status, reason,"
            " created_at, started_at, ended_at, exit_code, log_count, ended_by, argv)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                eid,
                execution.handle,
                execution.workflow_id,
                execution.workflow_name,
                execution.status,
                execution.reason,
                execution.created_ms,
                execution.created_ms,
                ended,
                execution.exit_code,
                copied.entries,
                execution.ended_by,
                json.dumps(execution.argv),
            ),
        )
        conn.executemany(
            "INSERT INTO execution_params (execution_id, position, name, value)"
            " VALUES (?, ?, ?, ?)",
            [(eid, pos, name, value) for pos, (name, value) in enumerate(execution.params)],
        )
        logs.insert_rows(
            conn,
            (
                logs.LogRow(logs.row_key(eid, seq), stream, ts, lines, event, data)
                for seq, stream, ts, lines, event, data in copied.rows
            ),
        )
    return True
