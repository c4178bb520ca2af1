"""Execution rows: create, start, finish, look up, list.

Plain functions over an open connection; the `Store` runs them on the database thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import apsw
import msgspec

from wfmctl.protocol import LAST_HANDLE, EndedBy, ErrorCode, Execution, Status
from wfmd.errors import Refused
from wfmd.store import logs
from wfmd.store.database import DatabaseFile, transaction

# How many of a workflow's most recent executions `param_history` looks at. Bounded so the
# query costs the same with ten runs in history or ten million.
PARAM_HISTORY_SCAN = 200

# Handles are UUIDs: hex digits and dashes, all below "~" in ASCII, so `prefix + "~"` is an
# exclusive upper bound for an index range scan of every handle starting with `prefix`.
_PREFIX_END = "~"

_COLUMNS = (
    "id, handle, workflow_id, status, reason, created_at, started_at, ended_at, "
    "exit_code, signal, timeout_ms, log_count, ended_by, workflow_name, argv"
    # Added by later migrations, read after the others:
    ", rerun_of, cwd, env"
)

# One-off commands (`wfmctl run -- CMD`) are executions of this pseudo-workflow id prefix.
COMMAND_PREFIX = "cmd:"
_env_json = msgspec.json.Decoder(dict[str, str])


@dataclass(frozen=True, slots=True)
class StoredExecution:
    """An execution as stored, with the internal fields the daemon needs."""

    id: int
    started_ms: int | None  # as stored, for recovery's arithmetic
    argv_json: str
    info: Execution

    @property
    def argv(self) -> list[str]:
        """What to execute; parsed only when needed (status queries never need it)."""
        argv: list[str] = json.loads(self.argv_json)
        return argv


@dataclass(frozen=True, slots=True)
class Finish:
    """How an execution ended; written in the same transaction as its last log lines.

    The committer fills in what only it knows when it queues the ending: `log_count` (the
    lines received) and, unless given, `ended_at` (now).
    """

    execution_id: int
    status: Status
    ended_by: EndedBy
    reason: str
    exit_code: int | None = None
    signal: int | None = None
    ended_at: int | None = None
    log_count: int | None = None


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000.0


def _from_row(row: Sequence[Any], params: dict[str, str] | None = None) -> StoredExecution:
    (eid, handle, workflow_id, status, reason, created, started, ended) = row[:8]
    (exit_code, signal, timeout_ms, log_count, ended_by, workflow_name, argv) = row[8:15]
    (rerun_of, cwd, env) = row[15:]
    # A command's argv is what the user typed: shown with it. A workflow's holds no more
    # than its parameters, and is parsed only when it runs.
    command = json.loads(argv) if workflow_id.startswith(COMMAND_PREFIX) else None
    info = Execution(
        handle=handle,
        workflow_id=workflow_id,
        status=status,
        created_at=created / 1000.0,
        started_at=_seconds(started),
        ended_at=_seconds(ended),
        exit_code=exit_code,
        signal=signal,
        reason=reason,
        log_count=log_count,
        timeout=_seconds(timeout_ms),
        params=params or {},
        ended_by=ended_by,
        workflow_name=workflow_name,
        rerun_of=rerun_of,
        command=command,
        cwd=cwd,
        env={} if env is None else _env_json.decode(env),
    )
    return StoredExecution(id=eid, started_ms=started, argv_json=argv, info=info)


def create(
    conn: apsw.Connection,
    *,
    handle: str,
    workflow_id: str,
    workflow_name: str | None = None,
    params: Sequence[tuple[int, str, str]],
    argv: Sequence[str],
    timeout_ms: int | None,
    now: int,
    rerun_of: str | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    database_file: DatabaseFile | None = None,
) -> StoredExecution:
    """Record an accepted run (NotStarted). Given `database_file`, refused if the file is no
    longer the one opened: a run accepted into a deleted file would be gone after the next
    start. Checked here, on the writer's thread just before the write, not only at the
    heartbeat."""
    problem = None if database_file is None else database_file.check()
    if problem is not None:
        raise Refused(ErrorCode.STORAGE, f"storage error: {problem}")
    with transaction(conn):
        # created_at never decreases with id (a clock stepped back does not reorder history),
        # so a time range is an id range: see first_id_at_or_after.
        conn.execute(
            # The id is chosen here, not by SQLite, which would reuse a deleted largest one
            # (retention_state; the log rows' keys are derived from it).
            "INSERT INTO executions (id, handle, workflow_id, workflow_name, status, reason,"
            " created_at, timeout_ms, argv, rerun_of, cwd, env) VALUES (1 + max("
            "coalesce((SELECT max(id) FROM executions), 0),"
            " coalesce((SELECT max_deleted_id FROM retention_state), 0)),"
            " ?, ?, ?, 'NotStarted',"
            " 'waiting for a free slot',"
            " max(?, coalesce((SELECT max(created_at) FROM executions), 0)), ?, ?, ?, ?, ?)",
            (
                handle,
                workflow_id,
                workflow_name,
                now,
                timeout_ms,
                json.dumps(list(argv)),
                rerun_of,
                cwd,
                json.dumps(dict(env)) if env else None,
            ),
        )
        eid = conn.last_insert_rowid()
        conn.executemany(
            "INSERT INTO execution_params (execution_id, position, name, value)"
            " VALUES (?, ?, ?, ?)",
            [(eid, pos, name, value) for pos, name, value in params],
        )
    return get_by_id(conn, eid)


def mark_running(conn: apsw.Connection, execution_id: int, now: int) -> None:
    """Record that an execution started. One statement: alone, or in the caller's transaction
    (the log writer commits starts with its batches: see `write_batch`)."""
    conn.execute(
        "UPDATE executions SET status = 'Running', reason = NULL, started_at = ? WHERE id = ?",
        (now, execution_id),
    )


def set_pid(conn: apsw.Connection, execution_id: int, pid: int) -> None:
    """Record an execution's process id; one statement, as `mark_running`."""
    conn.execute("UPDATE executions SET pid = ? WHERE id = ?", (pid, execution_id))


def apply_finishes(conn: apsw.Connection, finishes: Sequence[Finish]) -> None:
    """Record how executions ended. The caller holds the transaction."""
    conn.executemany(
        "UPDATE executions SET status = ?, ended_by = ?, reason = ?, ended_at = ?,"
        " exit_code = ?, signal = ?, log_count = coalesce(?, log_count), pid = NULL"
        " WHERE id = ?",
        [
            (
                f.status,
                f.ended_by,
                f.reason,
                f.ended_at,
                f.exit_code,
                f.signal,
                f.log_count,
                f.execution_id,
            )
            for f in finishes
        ],
    )


# An execution's parameters as one JSON object, in field order, read in the same statement
# as its row: a status request is then one statement (see Store.lookup). The order comes from
# a subquery that the primary key already returns in position order: `json_group_object(...
# ORDER BY position)` would sort them again in a temporary b-tree.
_WITH_PARAMS = (
    f"{_COLUMNS}, (SELECT json_group_object(name, value) FROM (SELECT name, value"
    " FROM execution_params WHERE execution_id = executions.id ORDER BY position))"
)
_params_json = msgspec.json.Decoder(dict[str, str])


def _from_row_with_params(row: Sequence[Any]) -> StoredExecution:
    return _from_row(row[:-1], _params_json.decode(cast(str, row[-1])))


def get_by_id(conn: apsw.Connection, execution_id: int) -> StoredExecution:
    row = conn.execute(f"SELECT {_WITH_PARAMS} FROM executions WHERE id = ?", (execution_id,)).get
    if row is None:
        raise Refused(ErrorCode.NOT_FOUND, f"no execution with internal id {execution_id}")
    return _from_row_with_params(cast(Sequence[Any], row))


def resolve(conn: apsw.Connection, handle: str) -> StoredExecution:
    """Find an execution by its full handle, a unique prefix of it, or `@last[:WORKFLOW]`,
    in one statement."""
    if not handle:
        raise Refused(ErrorCode.NOT_FOUND, "empty handle")
    if handle.startswith(LAST_HANDLE):
        return _resolve_last(conn, handle)
    rows = conn.execute(
        f"SELECT {_WITH_PARAMS} FROM executions WHERE handle >= ? AND handle < ?"
        " ORDER BY handle LIMIT ?",
        (handle, handle + _PREFIX_END, AMBIGUOUS_SHOWN + 1),
    ).fetchall()
    exact = [r for r in rows if r[1] == handle]
    if exact:
        rows = exact
    if not rows:
        raise Refused(ErrorCode.NOT_FOUND, f"no execution with handle {handle!r}")
    if len(rows) > 1:
        raise Refused(ErrorCode.AMBIGUOUS, _ambiguous(handle, rows))
    return _from_row_with_params(rows[0])


# ------------------------------------------------------------ handles: @last, ambiguity

# How many of the executions an ambiguous prefix matches the refusal lists: enough to pick
# from, few enough for one screen.
AMBIGUOUS_SHOWN = 5


def _resolve_last(conn: apsw.Connection, handle: str) -> StoredExecution:
    """`@last`: the newest execution; `@last:WORKFLOW`: the newest of that workflow."""
    rest = handle[len(LAST_HANDLE) :]
    if rest and not rest.startswith(":"):
        raise Refused(
            ErrorCode.NOT_FOUND, f"unknown handle {handle!r} (did you mean @last or @last:ID?)"
        )
    workflow_id = rest[1:]
    if workflow_id:
        sql = f"SELECT {_WITH_PARAMS} FROM executions WHERE workflow_id = ?"
        sql += " ORDER BY id DESC LIMIT 1"
        row = conn.execute(sql, (workflow_id,)).get
        missing = f"no execution of workflow {workflow_id!r} yet"
    else:
        row = conn.execute(f"SELECT {_WITH_PARAMS} FROM executions ORDER BY id DESC LIMIT 1").get
        missing = "no execution yet"
    if row is None:
        raise Refused(ErrorCode.NOT_FOUND, f"{handle}: {missing}")
    return _from_row_with_params(cast(Sequence[Any], row))


def _ambiguous(prefix: str, rows: Sequence[Sequence[Any]]) -> str:
    """The refusal of an ambiguous prefix: the first matches, one per line."""
    lines = [f"handle prefix {prefix!r} matches more than one execution:"]
    for row in rows[:AMBIGUOUS_SHOWN]:
        info = _from_row(row[:-1]).info
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created_at))
        lines.append(f"  {info.handle}  {info.workflow_id}  {info.status}  {created}")
    if len(rows) > AMBIGUOUS_SHOWN:
        lines.append("  ... and more: type more of the handle")
    return "\n".join(lines)


def orphans(conn: apsw.Connection) -> list[StoredExecution]:
    """Executions recorded Running: after a crash, those the dead daemon was running."""
    return [s for s in active(conn) if s.info.status == "Running"]


def active(conn: apsw.Connection) -> list[StoredExecution]:
    """Executions that are Running or NotStarted, oldest first (an index range, not a scan)."""
    rows = conn.execute(
        f"SELECT {_WITH_PARAMS} FROM executions WHERE status IN ('NotStarted', 'Running')"
        " ORDER BY id"
    ).fetchall()
    return [_from_row_with_params(r) for r in rows]


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    limit: int = 50
    offset: int = 0
    before: str | None = None
    workflow_id: str | None = None
    status: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


def history(conn: apsw.Connection, f: HistoryFilter) -> tuple[list[Execution], str | None]:
    """Newest first. Returns the page and the handle to pass as `before` for the next one."""
    found = _matching(conn, f)
    if found is None:
        return [], None
    where, args = found
    if f.before is not None:
        try:
            before = resolve(conn, f.before)
        except Refused as exc:
            raise Refused(exc.code, f"'before': {exc}") from exc
        where.append("id < ?")
        args.append(before.id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM executions {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
        (*args, f.limit + 1, f.offset),
    ).fetchall()
    page = [_from_row(r).info for r in rows[: f.limit]]
    next_before = page[-1].handle if len(rows) > f.limit and page else None
    return page, next_before


def count(conn: apsw.Connection, f: HistoryFilter) -> int:
    """How many executions match `f`'s workflow, status and time filters (not `before`)."""
    found = _matching(conn, f)
    if found is None:
        return 0
    where, args = found
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return cast(int, conn.execute(f"SELECT count(*) FROM executions {clause}", args).get)


def _matching(conn: apsw.Connection, f: HistoryFilter) -> tuple[list[str], list[object]] | None:
    """The WHERE terms of `f`'s filters, or None if nothing can match."""
    where: list[str] = []
    args: list[object] = []
    if f.workflow_id is not None:
        where.append("workflow_id = ?")
        args.append(f.workflow_id)
    if f.status is not None:
        where.append("status = ?")
        args.append(f.status)
    # Time bounds become id bounds: the (workflow_id, status, id) index then serves any
    # window at any depth, instead of opening every newer row to read its created_at.
    if f.since_ms is not None:
        first = first_id_at_or_after(conn, f.since_ms)
        if first is None:
            return None
        where.append("id >= ?")
        args.append(first)
    if f.until_ms is not None:
        end = first_id_at_or_after(conn, f.until_ms)
        if end is not None:
            where.append("id < ?")
            args.append(end)
    return where, args


def first_id_at_or_after(conn: apsw.Connection, ms: int) -> int | None:
    """The first execution accepted at or after `ms` (created_at never decreases with id)."""
    value = conn.execute(
        "SELECT id FROM executions WHERE created_at >= ? ORDER BY created_at, id LIMIT 1", (ms,)
    ).get
    return None if value is None else cast(int, value)


def param_history(
    conn: apsw.Connection, workflow_id: str, field_name: str | None, limit: int
) -> dict[str, list[str]]:
    """Distinct recent values of each parameter of a workflow, newest first."""
    sql = (
        "SELECT p.name, p.value FROM ("
        "  SELECT id FROM executions WHERE workflow_id = ? ORDER BY id DESC LIMIT ?"
        ") AS e JOIN execution_params AS p ON p.execution_id = e.id"
    )
    args: list[object] = [workflow_id, PARAM_HISTORY_SCAN]
    if field_name is not None:
        sql += " WHERE p.name = ?"
        args.append(field_name)
    values: dict[str, list[str]] = {}
    for name, value in conn.execute(sql + " ORDER BY e.id DESC, p.position", args):
        seen = values.setdefault(name, [])
        if value not in seen and len(seen) < limit:
            seen.append(value)
    return values


def finish_orphan(
    conn: apsw.Connection, orphan: StoredExecution, last_alive: int | None, reason: str
) -> None:
    """Record an execution left Running by a dead daemon as Failed, ended at the last moment
    it was known alive: its last log entry or `last_alive`, whichever is later, never earlier
    than its start."""
    with transaction(conn):
        next_seq, last_ts = logs.last_entry(conn, orphan.id)
        started = orphan.started_ms or int(orphan.info.created_at * 1000)
        ended = max(started, last_ts or 0, last_alive or 0)
        finish = Finish(
            orphan.id, "Failed", "daemon_died", reason, ended_at=ended, log_count=next_seq
        )
        apply_finishes(conn, [finish])
