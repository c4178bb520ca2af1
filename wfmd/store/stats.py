"""Per-workflow statistics over a window of history: outcomes, durations, last failure.

One grouped scan of the window (times are id ranges: see
`executions.first_id_at_or_after`), with SQLite's own `percentile` for the durations, then
one index probe per workflow for its last failure.
"""

from __future__ import annotations

from typing import Any

import apsw

from wfmctl.protocol import WorkflowStats
from wfmd.store.executions import first_id_at_or_after

# What one grouped scan computes per workflow; durations are those of completed runs.
_COLUMNS = """
SELECT workflow_id,
       count(*),
       sum(status = 'Completed'),
       sum(status = 'Failed'),
       sum(status = 'Cancelled'),
       sum(status IN ('NotStarted', 'Running')),
       percentile(CASE WHEN status = 'Completed' THEN ended_at - started_at END, 50),
       percentile(CASE WHEN status = 'Completed' THEN ended_at - started_at END, 95),
       max(created_at)
"""

_LAST_FAILURE = """
SELECT created_at, handle, reason FROM executions
WHERE workflow_id = ? AND status = 'Failed' AND id >= ?
ORDER BY id DESC LIMIT 1
"""


def workflow_stats(
    conn: apsw.Connection, workflow_id: str | None, since_ms: int | None
) -> list[WorkflowStats]:
    """Statistics per workflow of the executions created at or after `since_ms` (all if None),
    of one workflow or of all, ordered by workflow id. Durations are of completed runs."""
    where: list[str] = []
    args: list[object] = []
    # The whole history, or one workflow's, reads the narrow covering index; a window of
    # every workflow is a rowid range, which the planner would trade for a worse index.
    source = "executions INDEXED BY executions_outcomes"
    first = None
    if since_ms is not None:
        first = first_id_at_or_after(conn, since_ms)
        if first is None:
            return []
        where.append("id >= ?")
        args.append(first)
        if workflow_id is None:
            source = "executions NOT INDEXED"
    if workflow_id is not None:
        where.append("workflow_id = ?")
        args.append(workflow_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    sql = f"{_COLUMNS} FROM {source} {clause} GROUP BY workflow_id ORDER BY workflow_id"
    rows: list[tuple[Any, ...]] = conn.execute(sql, args).fetchall()
    lowest = -(2**63) if first is None else first
    out = []
    for row in rows:
        (wid, runs, completed, failed, cancelled, active, p50, p95, last_run) = row
        failure = conn.execute(_LAST_FAILURE, (wid, lowest)).get if failed else None
        when, handle, reason = failure if isinstance(failure, tuple) else (None, None, None)
        ended = completed + failed + cancelled
        out.append(
            WorkflowStats(
                workflow_id=wid,
                runs=runs,
                completed=completed,
                failed=failed,
                cancelled=cancelled,
                active=active,
                success_rate=completed / ended if ended else None,
                p50_duration=_seconds(p50),
                p95_duration=_seconds(p95),
                last_run=last_run / 1000.0,
                last_failure=_seconds(when),
                last_failure_handle=handle,
                last_failure_reason=reason,
            )
        )
    return out


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000.0
