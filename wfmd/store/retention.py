"""Retention's SQL: which finished executions a policy removes, deleting them a little at a
time, giving the space back (incremental vacuum), and the record of each run.

Deleting is two steps. `begin_delete` removes the executions' rows (their parameters go with
them) and lists their ids in `pending_deletions`, in one transaction: from then on they are
gone for every reader. `delete_pending_logs` then deletes their log rows a few hundred at a
time, each call one short transaction, so that the writer's group commits slip in between.
A daemon killed between the two finds the list and carries on (see schema/0008_retention.sql).
NotStarted and Running executions are never removed: every statement here checks the status.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import apsw

from wfmd.store.database import transaction
from wfmd.store.logs import key_range

FINISHED = "('Completed', 'Failed', 'Cancelled')"


@dataclass(frozen=True, slots=True)
class Limits:
    """Age and count limits of a set of executions; None disables one."""

    max_age_ms: int | None = None
    max_executions: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """`default` covers every workflow without an entry in `workflows`; each of those is held
    to its own limits only. `workflow_id` restricts the policy to one workflow."""

    default: Limits = Limits()
    workflows: dict[str, Limits] = field(default_factory=dict)
    workflow_id: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A finished execution a policy removes."""

    id: int
    handle: str
    workflow_id: str
    ended_ms: int
    log_count: int


_CANDIDATE = "SELECT id, handle, workflow_id, ended_at, log_count FROM executions"


def _candidates(conn: apsw.Connection, sql: str, args: Sequence[object]) -> list[Candidate]:
    return [Candidate(*row) for row in conn.execute(sql, args)]


# A rule: a WHERE clause on executions and its arguments. Each matches what one limit
# removes; `page` adds "finished" and the paging.
Rule = tuple[str, list[object]]


def select(conn: apsw.Connection, policy: Policy, now_ms: int) -> list[Candidate]:
    """Every finished execution that `policy` removes at `now_ms`, oldest first."""
    return choose(conn, policy, now_ms)


def choose(
    conn: apsw.Connection,
    policy: Policy,
    now_ms: int,
    *,
    older_than_ms: int | None = None,
    keep: int | None = None,
) -> list[Candidate]:
    """Every execution `rules` selects, oldest first (in pages, so large results cost
    memory only here)."""
    found = rules(conn, policy, now_ms, older_than_ms=older_than_ms, keep=keep)
    out: list[Candidate] = []
    after = 0
    while True:
        chosen, cut = page(conn, found, after, 1000)
        out += chosen
        if cut is None:
            return out
        after = cut


def rules(
    conn: apsw.Connection,
    policy: Policy,
    now_ms: int,
    *,
    older_than_ms: int | None = None,
    keep: int | None = None,
) -> list[Rule]:
    """What one prune removes: with `older_than_ms` or `keep`, those (either suffices) of
    `policy.workflow_id`'s executions, or everyone's; else what `policy` removes. Count
    limits are resolved to an id now: the newest executions are kept as of this moment."""
    if older_than_ms is not None or keep is not None:
        where, args = _workflow_where(policy.workflow_id)
        found = []
        if older_than_ms is not None:
            found.append(_age_rule(where, args, now_ms - older_than_ms))
        if keep is not None:
            found += _count_rule(conn, where, args, keep)
        return found
    if policy.workflow_id is not None:
        limits = policy.workflows.get(policy.workflow_id, policy.default)
        groups: list[tuple[str, list[object], Limits]] = [
            ("workflow_id = ?", [policy.workflow_id], limits)
        ]
    else:
        own = sorted(policy.workflows)
        marks = ", ".join("?" * len(own))
        others = f"workflow_id NOT IN ({marks})" if own else "1"
        groups = [(others, list(own), policy.default)]
        groups += [("workflow_id = ?", [w], policy.workflows[w]) for w in own]
    found = []
    for where, args, limits in groups:
        if limits.max_age_ms is not None:
            found.append(_age_rule(where, args, now_ms - limits.max_age_ms))
        if limits.max_executions is not None:
            found += _count_rule(conn, where, args, limits.max_executions)
    return found


def _age_rule(where: str, args: list[object], cutoff_ms: int) -> Rule:
    # ended_at >= created_at: the created_at index bounds the scan to old executions.
    return f"{where} AND created_at < ? AND ended_at < ?", [*args, cutoff_ms, cutoff_ms]


def _count_rule(conn: apsw.Connection, where: str, args: list[object], keep: int) -> list[Rule]:
    """Executions matching `where` older than the newest `keep` of them (of any status: a
    Running one counts toward `keep`, but is never removed)."""
    if keep == 0:
        return [(where, list(args))]
    cutoff = conn.execute(
        f"SELECT id FROM executions WHERE {where} ORDER BY id DESC LIMIT 1 OFFSET ?",
        (*args, keep - 1),
    ).get
    return [] if cutoff is None else [(f"{where} AND id < ?", [*args, cutoff])]


def page(
    conn: apsw.Connection, found: Sequence[Rule], after_id: int, limit: int
) -> tuple[list[Candidate], int | None]:
    """The finished executions any rule matches with ids above `after_id`, oldest first, at
    most about `limit` per rule; and the id to continue after, or None at the end."""
    chosen: dict[int, Candidate] = {}
    cut: int | None = None
    for where, args in found:
        rows = _candidates(
            conn,
            f"{_CANDIDATE} WHERE {where} AND id > ? AND status IN {FINISHED} ORDER BY id LIMIT ?",
            (*args, after_id, limit),
        )
        if len(rows) == limit:  # more beyond: this page ends where this rule's does
            cut = rows[-1].id if cut is None else min(cut, rows[-1].id)
        chosen.update((c.id, c) for c in rows)
    out = sorted((c for c in chosen.values() if cut is None or c.id <= cut), key=lambda c: c.id)
    return out, cut


def matching(conn: apsw.Connection, found: Sequence[Rule], ids: Sequence[int]) -> set[int]:
    """Which of `ids` a rule of `found` matches."""
    if not found or not ids:
        return set()
    either = " OR ".join(f"({where})" for where, _ in found)
    args = [a for _, rule_args in found for a in rule_args]
    marks = ", ".join("?" * len(ids))
    return {
        cast(int, eid)
        for (eid,) in conn.execute(
            f"SELECT id FROM executions WHERE id IN ({marks}) AND ({either})", (*ids, *args)
        )
    }


def oldest_finished(
    conn: apsw.Connection, limit: int, workflow_id: str | None, after_id: int = 0
) -> list[Candidate]:
    """The `limit` oldest finished executions with ids above `after_id`: the size limit
    removes these first."""
    where, args = _workflow_where(workflow_id)
    return _candidates(
        conn,
        f"{_CANDIDATE} WHERE {where} AND id > ? AND status IN {FINISHED} ORDER BY id LIMIT ?",
        (*args, after_id, limit),
    )


def _workflow_where(workflow_id: str | None) -> tuple[str, list[object]]:
    return ("1", []) if workflow_id is None else ("workflow_id = ?", [workflow_id])


def log_bytes(conn: apsw.Connection, ids: Iterable[int]) -> int:
    """Bytes of log data the executions hold (what a dry run of the size limit estimates)."""
    total = 0
    for eid in ids:
        lo, hi = key_range(eid)
        total += cast(
            int,
            conn.execute(
                "SELECT coalesce(sum(length(data)), 0) FROM execution_logs"
                " WHERE id BETWEEN ? AND ?",
                (lo, hi),
            ).get,
        )
    return total


# --------------------------------------------------------------------------- deleting

# What deleting an execution reads: its row through each index of executions (by name, as in
# schema/; an index not listed here is simply not warmed), its parameters.
_WARM = (
    "SELECT count(*) FROM executions WHERE handle = :handle",
    "SELECT count(*) FROM executions INDEXED BY executions_by_workflow"
    " WHERE workflow_id = :workflow AND id = :id",
    "SELECT count(*) FROM executions INDEXED BY executions_by_workflow_status"
    " WHERE workflow_id = :workflow AND status = :status AND id = :id",
    "SELECT count(*) FROM executions INDEXED BY executions_by_status"
    " WHERE status = :status AND id = :id",
    "SELECT count(*) FROM executions INDEXED BY executions_by_created WHERE created_at = :created",
    "SELECT count(*) FROM execution_params WHERE execution_id = :id",
)


def warm(conn: apsw.Connection, ids: Sequence[int]) -> None:
    """Read, on the reader, every page deleting these executions will touch (their rows,
    index entries, parameters and log rows, overflow pages included): the disk's latency is
    paid here, where nobody waits, rather than inside the writer's steps, where the group
    commits of running workflows wait behind them."""
    for eid in ids:
        row = conn.execute(
            "SELECT handle, workflow_id, id, status, created_at FROM executions WHERE id = ?",
            (eid,),
        ).get
        if not isinstance(row, tuple):
            continue
        names = dict(zip(("handle", "workflow", "id", "status", "created"), row, strict=True))
        for sql in _WARM:
            with contextlib.suppress(apsw.SQLError):  # an index this schema does not have
                conn.execute(sql, names).fetchall()
        lo, hi = key_range(eid)
        conn.execute(
            "SELECT max(substr(data, -1)) FROM execution_logs WHERE id BETWEEN ? AND ?", (lo, hi)
        ).fetchall()


@dataclass(frozen=True, slots=True)
class Begun:
    """What `begin_delete` removed."""

    ids: list[int]
    log_entries: int


def begin_delete(
    conn: apsw.Connection, ids: Sequence[int], archived: Mapping[str, int] | None = None
) -> Begun:
    """Remove the executions (if still there and finished) with their parameters, and list
    them for `delete_pending_logs`, in one transaction; with `archived` (archive file name ->
    its synced size, holding these executions), record the archive files' sizes in it too."""
    removed: list[int] = []
    entries = 0
    with transaction(conn):
        for name, size in (archived or {}).items():
            conn.execute(
                "INSERT INTO archive_files (name, size) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET size = excluded.size",
                (name, size),
            )
        for eid in ids:
            row = conn.execute(
                f"SELECT log_count FROM executions WHERE id = ? AND status IN {FINISHED}", (eid,)
            ).get
            if row is None:
                continue
            conn.execute("DELETE FROM execution_params WHERE execution_id = ?", (eid,))
            conn.execute("DELETE FROM executions WHERE id = ?", (eid,))
            conn.execute(
                "INSERT OR IGNORE INTO pending_deletions (execution_id) VALUES (?)", (eid,)
            )
            removed.append(eid)
            entries += cast(int, row)
        if removed:
            conn.execute(
                "UPDATE retention_state SET max_deleted_id = max(max_deleted_id, ?)",
                (max(removed),),
            )
    return Begun(removed, entries)


def archive_size(conn: apsw.Connection, name: str) -> int:
    """An archive file's size as of the last deletion that committed (0: none yet)."""
    value = conn.execute("SELECT size FROM archive_files WHERE name = ?", (name,)).get
    return 0 if value is None else cast(int, value)


def archive_sizes(conn: apsw.Connection) -> list[tuple[str, int]]:
    return [
        (cast(str, n), cast(int, s))
        for n, s in conn.execute("SELECT name, size FROM archive_files")
    ]


def pending(conn: apsw.Connection) -> int:
    """How many deleted executions still have log rows to delete."""
    return cast(int, conn.execute("SELECT count(*) FROM pending_deletions").get)


def delete_pending_logs(conn: apsw.Connection, max_rows: int) -> tuple[int, bool]:
    """Delete up to `max_rows` log rows of pending deletions, in one transaction, the first
    pending execution first. Returns (rows deleted, whether nothing is pending any more)."""
    deleted = 0
    with transaction(conn):
        while deleted < max_rows:
            eid = conn.execute(
                "SELECT execution_id FROM pending_deletions ORDER BY execution_id LIMIT 1"
            ).get
            if eid is None:
                return deleted, True
            lo, hi = key_range(cast(int, eid))
            end = conn.execute(
                "SELECT id FROM execution_logs WHERE id BETWEEN ? AND ? ORDER BY id"
                " LIMIT 1 OFFSET ?",
                (lo, hi, max_rows - deleted),
            ).get
            if end is not None:  # more than the step's rows left: part of them
                conn.execute("DELETE FROM execution_logs WHERE id >= ? AND id < ?", (lo, end))
                return deleted + conn.changes(), False
            conn.execute("DELETE FROM execution_logs WHERE id BETWEEN ? AND ?", (lo, hi))
            deleted += conn.changes()
            conn.execute("DELETE FROM pending_deletions WHERE execution_id = ?", (eid,))
        more = conn.execute("SELECT 1 FROM pending_deletions LIMIT 1").get is not None
        return deleted, not more
