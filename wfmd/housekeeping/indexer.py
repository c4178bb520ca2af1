"""The search indexer: makes committed log rows searchable, in the background.

Inserting a log row only queues its key (a trigger, in the same transaction); this task
indexes queued rows in small batches on the writer's thread. It gives way to ingestion:
while a workflow's output is held back because the writer is behind, it waits, and each
batch is small enough that a log line never waits long behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from wfmd.store import StorageError, Store, search

log = logging.getLogger(__name__)

# Text per batch: one batch holds the writer for roughly 10 ms (bench_ingest), so a log
# line's commit waits at most that long behind the indexer.
BATCH_BYTES = 512 * 1024

# How long the indexer waits before looking again when there is nothing to index, or while
# ingestion is held back: the lag a search sees on a quiet daemon.
IDLE_POLL = 0.2

# Seconds between counts of the backlog while indexing (the count reads up to 100,000 keys);
# in between, it is kept up to date from the rows committed and indexed.
BACKLOG_REFRESH = 1.0

# After another call on the writer (a commit, a retention step, a new run), the indexer waits
# until the writer has had none for this long: back-to-back work such as a prune goes first,
# and the indexer takes the gaps between group commits.
QUIET = 0.005

# While workflows' output is being committed, the indexer works at most this share of the
# time (after a batch of t seconds it rests t * (1 / SHARE - 1)): on 2 cores, ingestion at
# full speed uses every cycle, and the indexer catches up once it eases (bench_ingest).
BUSY_SHARE = 0.1

# With nothing queued and nothing committed since, the queue is looked at only this often:
# rows can also come from elsewhere (an import, a daemon stopped before indexing them).
IDLE_RECOUNT = 5.0

# After a storage error (full disk), the indexer tries again this much later.
RETRY_DELAY = 5.0


class SearchIndexer:
    """`held_back()`: whether ingestion waits for the writer; `committed()`: log rows the
    committer has committed so far (each of which the queue gains)."""

    def __init__(
        self, store: Store, held_back: Callable[[], bool], committed: Callable[[], int]
    ) -> None:
        self._store = store
        self._held_back = held_back
        self._committed = committed
        self._counted = 0  # the queue's length at the last count (capped)
        self._committed_at_count = 0
        self._indexed_since_count = 0

    @property
    def backlog(self) -> int:
        """Rows not searchable yet: the last count, plus rows committed since, minus rows
        indexed since (rows that other writers queue show up at the next count)."""
        inflow = self._committed() - self._committed_at_count
        return max(0, self._counted + inflow - self._indexed_since_count)

    async def _quiet(self) -> bool:
        """Wait QUIET; whether no one else used the writer meanwhile."""
        before = self._store.writer_calls
        await trio.sleep(QUIET)
        return self._store.writer_calls == before

    async def _count(self) -> None:
        committed = self._committed()
        self._counted = await self._store.read(search.backlog)
        self._committed_at_count = committed
        self._indexed_since_count = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Index until cancelled.

        Cancellation: a batch that has started commits (or rolls back) whole; its rows stay
        queued until indexed, so nothing is lost.
        """
        await self._count()
        task_status.started()
        counted_at = trio.current_time()
        mine = self._store.writer_calls  # the writer's calls as of the end of our last one
        while True:
            idle = self.backlog == 0 and trio.current_time() - counted_at < IDLE_RECOUNT
            if self._held_back() or idle:
                await trio.sleep(IDLE_POLL)
                continue
            if self._store.writer_calls != mine and not await self._quiet():
                continue
            committed = self._committed()
            began = trio.current_time()
            try:
                done = await self._store.call(search.index_batch, BATCH_BYTES)
                mine = self._store.writer_calls
                self._indexed_since_count += done
                if not done or trio.current_time() - counted_at >= BACKLOG_REFRESH:
                    await self._count()
                    counted_at = trio.current_time()
            except StorageError as exc:
                log.error("search indexing failed, will retry: %s", exc.detail)
                await trio.sleep(RETRY_DELAY)
                continue
            if not done:
                await trio.sleep(IDLE_POLL)
            elif self._committed() != committed:  # output arrived meanwhile: give way
                await trio.sleep((trio.current_time() - began) * (1 / BUSY_SHARE - 1))
