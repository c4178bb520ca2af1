"""Retention: keep history bounded by age, count and size, in the background and on demand.

A run picks the finished executions the policy removes (on the reader), removes them in
small transactions on the writer (`store.retention`), then gives the freed pages back with
incremental vacuum, and records what it did. Each writer call is sized to take about
STEP_SECONDS, so a log line waiting for its group commit waits behind one step at most.
Runs never overlap: scheduled runs, `prune` and `delete` take turns.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from wfmd.housekeeping.archive import Archive
from wfmd.housekeeping.compression import Compressor
from wfmd.housekeeping.policy import Settings
from wfmd.store import Store, now_ms, retention, upkeep
from wfmd.store.retention import Candidate
from wfmd.store.upkeep import Pages, RunRecord

log = logging.getLogger(__name__)

# Time one writer call of retention aims at: a log line waits behind at most one such call,
# well inside the 50 ms a line may wait for its commit.
STEP_SECONDS = 0.01

# A step this long (a checkpoint inside it, a slow disk) is logged: log lines waited for it.
SLOW_STEP = 0.1

# Log rows per deleting call and free pages per vacuum call to start from; each grows or
# shrinks to take about STEP_SECONDS.
FIRST_ROWS = 64
FIRST_PAGES = 64
MAX_ROWS = 8192
MAX_PAGES = 8192

# Executions removed per transaction of `begin_delete` (each is a few index updates): the
# first step's, and the most; steps grow or shrink to take about STEP_SECONDS.
FIRST_BEGIN = 8
BEGIN_BATCH = 50

# While over max_db_bytes, the oldest finished executions go this many at a time before the
# size is looked at again.
SIZE_BATCH = 20

# Executions chosen per page (per limit) of a prune: a first run over a huge history holds
# a page at a time, not the whole of what it removes.
PAGE = 1_000

# Executions an outcome lists (the protocol's MAX_REMOVED_LISTED); it counts them all.
LISTED = 1_000

# Longest time between two compression passes: history turns cold within minutes.
COMPRESS_CHECK = 60.0


@dataclass(frozen=True, slots=True)
class Request:
    """One prune: explicit limits (`older_than_ms`, `keep`) replace the configured policy;
    without them the policy applies, size limit included. `workflow_id` narrows either."""

    dry_run: bool = False
    older_than_ms: int | None = None
    keep: int | None = None
    workflow_id: str | None = None


@dataclass(slots=True)
class Outcome:
    """What a run removed (or, dry, would remove): how many, and the first LISTED."""

    removed: list[Candidate] = field(default_factory=list)
    count: int = 0
    log_entries: int = 0
    bytes_freed: int = 0  # dry: the log bytes the removed executions hold
    bytes_compressed: int = 0  # log bytes (as printed) compressed
    duration: float = 0.0
    dry_run: bool = False

    def add(self, removed: list[Candidate], log_entries: int | None = None) -> None:
        """`log_entries`: as the deletion counted them (else the candidates' counts)."""
        self.removed += removed[: max(0, LISTED - len(self.removed))]
        self.count += len(removed)
        if log_entries is None:
            log_entries = sum(c.log_count for c in removed)
        self.log_entries += log_entries


class Retention:
    """`clock` gives now in ms: tests pass their own, the daemon the wall clock."""

    def __init__(self, store: Store, settings: Settings, clock: Callable[[], int] = now_ms) -> None:
        self._store = store
        self.settings = settings
        self._clock = clock
        self._turn = trio.Lock()
        self.next_run_at: float | None = None  # seconds since the epoch
        self.compressor = Compressor(store, settings.compress_after, clock)
        self._archive = (
            None if settings.archive_dir is None else Archive(store, settings.archive_dir)
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The schedule: a run right after start-up (in the background), then one every
        interval. Without an interval, only what an earlier deletion left pending is done.
        Reports started once the archive files are repaired (`Archive.repair`).

        Cancellation: a run stops between two writer calls; what it began is carried on by
        the next (pending deletions are in the database).
        """
        if self._archive is not None:
            await self._archive.repair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._compress_often)
            task_status.started()
            await self._schedule()

    async def _compress_often(self) -> None:
        """Cold executions are compressed every COMPRESS_CHECK (or compress_after, if
        shorter) between retention runs, so history turns cold within minutes, not hours."""
        if self.settings.compress_after is None:
            return
        while True:
            await trio.sleep(min(COMPRESS_CHECK, max(self.settings.compress_after, 1.0)))
            try:
                async with self._turn:
                    started = time.monotonic()
                    started_ms = self._clock()
                    before = await self._store.call(upkeep.pages)
                    compressed = await self.compressor.run_pass()
                    if not compressed.rows:
                        continue
                    await self._vacuum()
                    after = await self._store.call(upkeep.pages)
                    outcome = Outcome(
                        bytes_freed=max(0, before.in_use - after.in_use),
                        bytes_compressed=compressed.bytes_before,
                        duration=time.monotonic() - started,
                    )
                    await self._record("compress", started_ms, outcome)
            except Exception as exc:  # a storage error, or a bug: the next pass tries again
                log.error("compression pass failed: %s", exc)

    async def _schedule(self) -> None:
        interval = self.settings.interval
        if interval is not None:
            self.next_run_at = time.time()  # the first: right now, in the background
        while True:
            try:
                if interval is None:
                    async with self._turn:
                        await self._drain()
                    return
                await self.scheduled()
            except Exception as exc:  # a storage error, or a bug: the next run tries again
                log.error("retention run failed: %s", exc)
            assert interval is not None
            self.next_run_at = time.time() + interval
            await trio.sleep(interval)

    async def scheduled(self) -> Outcome:
        outcome = await self.prune(Request(), trigger="schedule")
        if outcome.count:
            log.info(
                "retention removed %d execution(s), %d log entries, freed %d bytes in %.2f s",
                outcome.count,
                outcome.log_entries,
                outcome.bytes_freed,
                outcome.duration,
            )
        return outcome

    async def prune(self, request: Request, trigger: str = "prune") -> Outcome:
        """One run: drain what an earlier run left pending, remove what `request` (or the
        policy) chooses a page at a time, compress what is cold, vacuum, record it.

        Cancellation: stops between two writer steps; executions already begun are gone,
        their log rows stay listed in `pending_deletions` for the next run. An unfinished
        run is not recorded.
        """
        async with self._turn:
            started = time.monotonic()
            started_ms = self._clock()
            before = await self._store.call(upkeep.pages)
            await self._drain()
            policy = self.settings.policy
            if request.workflow_id is not None:
                policy = dataclasses.replace(policy, workflow_id=request.workflow_id)
            found = await self._store.read(
                retention.rules,
                policy,
                started_ms,
                older_than_ms=request.older_than_ms,
                keep=request.keep,
            )
            outcome = Outcome(dry_run=request.dry_run)
            after_id = 0
            while True:  # a page at a time: a first run on a huge history stays small
                chosen, cut = await self._store.read(retention.page, found, after_id, PAGE)
                if request.dry_run:
                    outcome.add(chosen)
                    ids = [c.id for c in chosen]
                    outcome.bytes_freed += await self._store.read(retention.log_bytes, ids)
                else:
                    await self._remove(chosen, outcome)
                if cut is None:
                    break
                after_id = cut
            if request.dry_run:
                await self._over_size_dry(request, before, found, outcome)
            else:
                if self._size_applies(request):
                    await self._remove_over_size(request.workflow_id, outcome)
                compressed = await self.compressor.run_pass()
                outcome.bytes_compressed = compressed.bytes_before
                await self._vacuum()
                after = await self._store.call(upkeep.pages)
                outcome.bytes_freed = max(0, before.in_use - after.in_use)
            outcome.duration = time.monotonic() - started
            if not request.dry_run:
                await self._record(trigger, started_ms, outcome)
            return outcome

    async def delete(self, ids: Sequence[int]) -> Outcome:
        """Remove these executions (the finished ones among them) now.

        Cancellation: as for `prune`.
        """
        async with self._turn:
            started = time.monotonic()
            started_ms = self._clock()
            before = await self._store.call(upkeep.pages)
            outcome = Outcome()
            await self._store.read(retention.warm, list(ids))
            begun, _ = await self._begin_delete(list(ids))
            await self._drain()
            outcome.add([Candidate(i, "", "", 0, 0) for i in begun.ids], begun.log_entries)
            await self._vacuum()
            after = await self._store.call(upkeep.pages)
            outcome.bytes_freed = max(0, before.in_use - after.in_use)
            outcome.duration = time.monotonic() - started
            await self._record("delete", started_ms, outcome)
            return outcome

    # ----------------------------------------------------------------- choosing

    def _size_applies(self, request: Request) -> bool:
        explicit = request.older_than_ms is not None or request.keep is not None
        return not explicit and self.settings.max_db_bytes is not None

    async def _over_size_dry(
        self, request: Request, before: Pages, found: list[retention.Rule], outcome: Outcome
    ) -> None:
        """What the size limit would remove after the rules' choice, estimated from log
        bytes, added to `outcome`."""
        limit = self.settings.max_db_bytes
        if limit is None or not self._size_applies(request):
            return
        excess = before.in_use - limit - outcome.bytes_freed
        after_id = 0
        while excess > 0:
            batch = await self._store.read(
                retention.oldest_finished, SIZE_BATCH, request.workflow_id, after_id
            )
            if not batch:
                return
            after_id = batch[-1].id
            taken = await self._store.read(retention.matching, found, [c.id for c in batch])
            for c in batch:
                if c.id in taken:
                    continue
                size = await self._store.read(retention.log_bytes, [c.id])
                outcome.add([c])
                outcome.bytes_freed += size
                excess -= size
                if excess <= 0:
                    return

    # ----------------------------------------------------------------- removing

    async def _remove(self, chosen: Sequence[Candidate], outcome: Outcome) -> None:
        start = 0
        size = FIRST_BEGIN
        while start < len(chosen):
            batch = chosen[start : start + size]
            start += len(batch)
            ids = [c.id for c in batch]
            # The reader reads what the deletion will touch first: a cold page read inside
            # the writer's step (a 10 GB history does not fit the page cache) would hold
            # every running workflow's group commit behind it.
            await self._store.read(retention.warm, ids)
            begun, elapsed = await self._begin_delete(ids)
            _slow("removing", len(ids), "executions", elapsed)
            size = _resize(size, elapsed, BEGIN_BATCH)
            gone = set(begun.ids)
            outcome.add([c for c in batch if c.id in gone], begun.log_entries)
            await self._drain()

    async def _remove_over_size(self, workflow_id: str | None, outcome: Outcome) -> None:
        """The oldest finished executions, until the pages in use fit max_db_bytes: as many
        at a time as their log bytes say are needed, then measured again."""
        limit = self.settings.max_db_bytes
        assert limit is not None
        while (excess := (await self._store.call(upkeep.pages)).in_use - limit) > 0:
            batch = await self._store.read(retention.oldest_finished, SIZE_BATCH, workflow_id)
            if not batch:
                log.warning(
                    "the database is over max_db_bytes (%d) but has no finished execution left"
                    " to remove",
                    limit,
                )
                return
            chosen = []
            for c in batch:
                chosen.append(c)
                excess -= await self._store.read(retention.log_bytes, [c.id])
                if excess <= 0:
                    break
            await self._remove(chosen, outcome)

    async def _begin_delete(self, ids: list[int]) -> tuple[retention.Begun, float]:
        """Archived first (if on) and synced, then removed: never one without the other.
        Returns what was removed, and how long the writer took."""
        archived = None if self._archive is None else await self._archive.write(ids)
        return await self._store.call(upkeep.timed, retention.begin_delete, ids, archived)

    async def _drain(self) -> None:
        """Delete the log rows of every pending deletion, a step at a time."""
        rows = FIRST_ROWS
        done = False
        while not done:
            (_, done), elapsed = await self._store.call(
                upkeep.timed, retention.delete_pending_logs, rows
            )
            _slow("deleting", rows, "log rows", elapsed)
            rows = _resize(rows, elapsed, MAX_ROWS)

    async def _vacuum(self) -> None:
        """Give the free pages back to the file system, a step at a time."""
        if (await self._store.call(upkeep.auto_vacuum)) != "incremental":
            return  # an old database: free pages are reused, but the file does not shrink
        pages = FIRST_PAGES
        left = 1
        while left:
            left, elapsed = await self._store.call(upkeep.timed, upkeep.incremental_vacuum, pages)
            _slow("incremental vacuum of", pages, "pages", elapsed)
            pages = _resize(pages, elapsed, MAX_PAGES)

    async def _record(self, trigger: str, started_ms: int, outcome: Outcome) -> None:
        record = RunRecord(
            started_ms=started_ms,
            duration_ms=math.ceil(outcome.duration * 1000),
            trigger=trigger,
            executions_removed=outcome.count,
            log_entries_removed=outcome.log_entries,
            bytes_freed=outcome.bytes_freed,
            bytes_compressed=outcome.bytes_compressed,
        )
        await self._store.call(upkeep.record_run, record)


def _slow(what: str, size: int, unit: str, elapsed: float) -> None:
    """Say so when one step held the writer long enough for a log line to notice."""
    if elapsed > SLOW_STEP:
        log.warning("retention: %s %d %s took %.0f ms", what, size, unit, elapsed * 1000)


def _resize(size: int, elapsed: float, largest: int) -> int:
    """The next step's size: about STEP_SECONDS of work."""
    if elapsed > STEP_SECONDS:
        return max(1, size // 2)
    if elapsed < STEP_SECONDS / 2:
        return min(largest, size * 2)
    return size
