"""`wfmctl search --regex`: a regular expression over the logs, evaluated here, in wfmctl.

The daemon never runs a pattern it is given: one that backtracks for minutes slows only the
command that asked for it. wfmctl reads the selected executions' logs in bulk (`log_rows`),
newest execution first, and stops at a bound, which it reports.
"""

from __future__ import annotations

import re

from wfmctl.client import Client
from wfmctl.protocol import Execution, LogEntry, SearchHit, Status

# Executions one regex search looks at, newest first (with --handle: that one).
MAX_EXECUTIONS = 200

# Log text one regex search reads: a few seconds of reading at most.
MAX_BYTES = 256 * 1024 * 1024


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The pattern; raises ValueError saying what is wrong with it."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid --regex {pattern!r}: {exc}") from None


def regex_search(
    client: Client,
    pattern: re.Pattern[str],
    *,
    workflow_id: str | None,
    status: Status | None,
    since: float | None,
    until: float | None,
    handle: str | None,
    limit: int,
    context: int,
) -> tuple[list[SearchHit], str | None]:
    """Matching lines, newest first, at most `limit`; and why it stopped early, if it did."""
    if handle is not None:
        executions: list[Execution] = [client.status(handle)]
        more = False
    else:
        page = client.history(
            limit=MAX_EXECUTIONS, workflow_id=workflow_id, status=status, since=since, until=until
        )
        executions, more = page.executions, page.next_before is not None
    hits: list[SearchHit] = []
    read = 0
    for execution in executions:
        found: list[LogEntry] = []
        for rows in client.log_row_pages(execution.handle):
            for row in rows.rows:
                read += len(row.data)
                lines = row.data.decode("utf-8", "replace").split("\n")
                if lines[-1] == "":
                    lines.pop()
                found.extend(
                    LogEntry(
                        seq=row.seq + k,
                        ts=row.ts,
                        stream=row.stream,
                        type=row.type,
                        line=line,
                        event=row.event,
                    )
                    for k, line in enumerate(lines)
                    if pattern.search(line)
                )
            if read >= MAX_BYTES:
                break
        for entry in reversed(found):
            hits.append(_hit(client, execution, entry, context))
            if len(hits) >= limit:
                return hits, None
        if read >= MAX_BYTES:
            return hits, f"stopped after reading {MAX_BYTES >> 20} MiB of logs"
    if more:
        return hits, f"looked at the newest {MAX_EXECUTIONS} executions only"
    return hits, None


def _hit(client: Client, execution: Execution, entry: LogEntry, context: int) -> SearchHit:
    before: list[LogEntry] = []
    after: list[LogEntry] = []
    if context:
        around = client.logs(
            execution.handle, after=max(-1, entry.seq - context - 1), limit=2 * context + 1
        ).entries
        before = [e for e in around if e.seq < entry.seq]
        after = [e for e in around if e.seq > entry.seq]
    # No cursor: a regex search is bounded rather than paged.
    return SearchHit(execution.handle, execution.workflow_id, entry, -1, before, after)
