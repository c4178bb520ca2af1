"""Searching the logs: matching lines across executions, with their context."""

from __future__ import annotations

from wfmctl.protocol import LogEntry, Search, SearchHit, SearchPage
from wfmd.api.context import Services
from wfmd.store import executions, logs, search
from wfmd.store.search_terms import parse

_LOWEST = -(2**63)
_HIGHEST = 2**63 - 1


async def find(s: Services, request: Search) -> SearchPage:
    terms = parse(request.query)
    scope = await _scope(s, request)
    if scope is None:
        return SearchPage(hits=[], backlog=_backlog(s))
    found = await s.store.read(search.search, terms, scope, request.limit)
    hits = []
    for hit in found.hits:
        before: list[LogEntry] = []
        after: list[LogEntry] = []
        if request.context:
            n = request.context
            around = await s.store.read(
                logs.read_after, hit.execution_id, max(-1, hit.entry.seq - n - 1), 2 * n + 1
            )
            before = [e for e in around if e.seq < hit.entry.seq]
            after = [e for e in around if e.seq > hit.entry.seq]
        position = logs.row_key(hit.execution_id, hit.entry.seq)
        hits.append(SearchHit(hit.handle, hit.workflow_id, hit.entry, position, before, after))
    return SearchPage(hits=hits, next_before=found.next_before, backlog=_backlog(s))


async def _scope(s: Services, request: Search) -> search.Scope | None:
    """The positions the request looks at, or None if no execution can match."""
    lowest, before = _LOWEST, _HIGHEST
    if request.handle is not None:
        stored = await s.resolve(request.handle)
        lowest, end = logs.key_range(stored.id)
        before = end + 1
    if request.since is not None:
        first = await s.store.lookup(executions.first_id_at_or_after, int(request.since * 1000))
        if first is None:
            return None
        lowest = max(lowest, first << logs.SEQ_BITS)
    if request.until is not None:
        end_id = await s.store.lookup(executions.first_id_at_or_after, int(request.until * 1000))
        if end_id is not None:
            before = min(before, end_id << logs.SEQ_BITS)
    if request.before is not None:
        before = min(before, request.before)
    if lowest >= before:
        return None
    return search.Scope(lowest, before, request.workflow_id, request.status)


def _backlog(s: Services) -> int:
    return 0 if s.indexer is None else s.indexer.backlog
