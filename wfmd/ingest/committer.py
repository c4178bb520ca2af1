"""The log writer: one ordered stream of chunks and endings, group-committed to the store.

The pipe reader thread (`pipes.py`) reads children's output; here, in the Trio thread,
the committer takes what it has read, in read order, gives each chunk its sequence numbers
(the one place where log order is decided), and commits the batch together with the endings
queued meanwhile. Each commit returns its bytes to the reader's
budget: while MAX_PENDING_BYTES are read but not committed the reader stops reading, the
pipes fill, and back-pressure reaches the children.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import trio

from wfmd.ingest.lines import MAX_CHUNK, Chunk
from wfmd.ingest.logcap import Cap, CappedLog
from wfmd.ingest.pipes import PipeReader
from wfmd.store import Finish, LogRow, StorageError, Store, now_ms, write_batch
from wfmd.store.logs import row_key, split_key

log = logging.getLogger(__name__)

# Commit right away (without waiting for the commit interval) once this much is pending:
# large enough for ~10k lines per transaction, small enough to commit in a few ms.
BATCH_BYTES = 1024 * 1024

# Stop reading children's pipes while this much is read but not committed (a slow or failing
# disk): bounds memory.
MAX_PENDING_BYTES = 16 * 1024 * 1024

# No log cap: every line is kept.
NO_CAP = Cap(None, None)

# After a failed commit (disk full, I/O error) wait this long before trying the same batch
# again; nothing is dropped.
RETRY_DELAY = 1.0


@dataclass(slots=True)
class _FinishRequest:
    finish: Finish
    committed: trio.Event = field(default_factory=trio.Event)


@dataclass(slots=True)
class _Batch:
    rows: list[LogRow] = field(default_factory=list)
    finishes: list[_FinishRequest] = field(default_factory=list)
    starts: list[tuple[int, int]] = field(default_factory=list)  # (execution id, started at)
    started: list[trio.Event] = field(default_factory=list)  # set once `starts` are committed
    pids: list[tuple[int, int]] = field(default_factory=list)  # (execution id, pid)
    size: int = 0
    first_at: float = 0.0
    tail: dict[int, LogRow] = field(default_factory=dict)  # last row of each execution
    # The log cap (logcap.py): key ranges [lo, hi) to drop (rows of this batch in them are
    # not written, committed ones are deleted), and each capped execution's marker.
    drops: list[tuple[int, int]] = field(default_factory=list)
    markers: dict[int, LogRow] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.rows or self.finishes or self.drops or self.starts or self.pids)


class LogWriter:
    def __init__(
        self,
        store: Store,
        *,
        commit_interval: float,
        on_failure: Callable[[BaseException], None] | None = None,
        cap: Cap = NO_CAP,
    ) -> None:
        """`on_failure` is called (once, in the Trio thread) if the pipe reader thread fails,
        after everything it had read is committed; the writer then goes on committing
        endings until `close`, so the daemon can end the running executions (whose pipes
        have all finished by then). Without it, `run` raises instead, once that is committed.
        """
        self._store = store
        self._commit_interval = commit_interval
        self._cap = cap
        self._capped: dict[int, CappedLog] = {}  # executions being written, if capped
        self._on_failure = on_failure
        # The pipe reader's failure, once everything it read is committed and it is reported.
        self.failure: BaseException | None = None
        self.pipes = PipeReader(self._woken, budget=MAX_PENDING_BYTES, urgent_bytes=BATCH_BYTES)
        self._next_seq: dict[int, int] = {}  # executions being written: next seq to assign
        self._committed: dict[int, int] = {}  # executions being written: entries committed
        self._watchers: dict[int, trio.Event] = {}
        self._end_watchers: dict[int, trio.Event] = {}
        self._batch = _Batch()
        self._has_data = trio.Event()
        self._urgent = trio.Event()
        self._closed = False
        self.storage_error: str | None = None
        self.storage_failing_since: float | None = None  # trio clock
        self.rows_committed = 0  # log rows committed since start (the search backlog's inflow)

    # ----------------------------------------------------------------- used by the supervisor

    def begin(self, execution_id: int) -> None:
        """Start accepting lines for an execution."""
        self._next_seq[execution_id] = 0
        self._committed[execution_id] = 0
        if self._cap.enabled:
            self._capped[execution_id] = CappedLog(self._cap, execution_id)

    def start(self, execution_id: int) -> trio.Event:
        """Queue the execution's start (Running, now) for the next commit, which it hurries;
        returns an event set once that is committed. Starts and endings of executions
        running side by side share commits."""
        committed = trio.Event()
        self._batch.starts.append((execution_id, now_ms()))
        self._batch.started.append(committed)
        self._grew(0)
        self._urgent.set()
        return committed

    def record_pid(self, execution_id: int, pid: int) -> None:
        """Queue the execution's process id for the next commit (only people look at it:
        it does not hurry the commit)."""
        self._batch.pids.append((execution_id, pid))
        self._grew(0)

    async def finish(self, finish: Finish) -> None:
        """Queue the execution's ending behind its lines and wait until it is committed.

        Call it only once the execution's pipes have finished: `finish.log_count` is filled
        in here, from the lines received so far. Cancellation: the ending stays queued and
        will be committed; only the wait is abandoned.
        """
        request = _FinishRequest(finish)
        self._add_finish(request)
        await request.committed.wait()

    def committed_count(self, execution_id: int) -> int | None:
        """Entries committed so far for an execution being written, else None."""
        return self._committed.get(execution_id)

    def progress_event(self, execution_id: int) -> trio.Event:
        """An event set at the next commit touching this execution (or when it ends)."""
        event = self._watchers.get(execution_id)
        if event is None:
            event = self._watchers[execution_id] = trio.Event()
        return event

    def end_event(self, execution_id: int) -> trio.Event:
        """An event set once the execution's ending has been committed."""
        event = self._end_watchers.get(execution_id)
        if event is None:
            event = self._end_watchers[execution_id] = trio.Event()
        return event

    def close(self) -> None:
        """No more executions (their pipes have all finished): `run` returns once everything
        pending is committed."""
        self._closed = True
        self._has_data.set()
        self._urgent.set()

    # ----------------------------------------------------------------- collecting, committing

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read pipes and commit until `close` was called and everything is committed.

        Cancellation: whatever is pending is lost from memory but never half-written; call
        `close` and let this return to commit everything.
        """
        self.pipes.start()
        try:
            task_status.started()
            await self._commit_loop()
        finally:
            self.pipes.stop()

    def _woken(self) -> None:
        """The reader has something: take it now if it cannot wait for the commit (a pipe's
        end, which its supervisor awaits, or a batch's worth), else start the commit clock."""
        if self.pipes.failure is not None:
            if self.failure is None:  # the commit loop commits what was read, then reports
                self._has_data.set()
                self._urgent.set()
            return
        ready_bytes, ends = self.pipes.waiting()
        if ends or ready_bytes >= BATCH_BYTES:
            self._take()
        elif ready_bytes:
            self._grew(0)

    def _take(self) -> None:
        for item in self.pipes.take():
            if isinstance(item, Chunk):
                self._add_chunk(item)
            else:
                item.finished.set()

    def _add_chunk(self, chunk: Chunk) -> None:
        batch = self._batch
        eid = chunk.execution_id
        seq = self._next_seq.get(eid)
        if seq is None:  # only if the supervisor gave up waiting for a stuck reader
            log.error("dropped %d line(s) of execution %d read after its end", chunk.lines, eid)
            self.pipes.release(len(chunk.data))
            return
        self._next_seq[eid] = seq + chunk.lines
        last = batch.tail.get(eid)
        # Reads of the same stream within one millisecond become one row: fewer rows for a
        # chatty child, and every line keeps its exact (millisecond) receive time.
        if (
            last is not None
            and chunk.event is None
            and last.event is None
            and last.stream == chunk.stream
            and last.ts == chunk.ts
            and len(last.data) + len(chunk.data) <= MAX_CHUNK
            and last.data.endswith(b"\n")
        ):
            if not isinstance(last.data, bytearray):
                last.data = bytearray(last.data)
            last.data += chunk.data
            last.lines += chunk.lines
            row, new_row = last, False
        else:
            row = LogRow(
                row_key(eid, seq), chunk.stream, chunk.ts, chunk.lines, chunk.event, chunk.data
            )
            batch.rows.append(row)
            batch.tail[eid] = row
            new_row = True
        capped = self._capped.get(eid)
        if capped is not None:
            dropped = capped.added(row, new_row, chunk.lines, len(chunk.data))
            if dropped:
                # Pending rows in these ranges are not written, committed ones are deleted
                # in the next commit, with the marker as it now stands.
                batch.drops += [(row_key(eid, lo), row_key(eid, hi)) for lo, hi in dropped]
                batch.markers[eid] = capped.marker(chunk.ts)
        self._grew(len(chunk.data))

    def _add_finish(self, request: _FinishRequest) -> None:
        eid = request.finish.execution_id
        count = self._next_seq.pop(eid, 0)
        self._capped.pop(eid, None)
        ended_at = request.finish.ended_at
        request.finish = dataclasses.replace(
            request.finish, log_count=count, ended_at=now_ms() if ended_at is None else ended_at
        )
        self._batch.finishes.append(request)
        self._grew(0)
        # Endings do not wait for the commit interval: the execution's slot (and whoever
        # waits for it to end) is held until its ending is committed.
        self._urgent.set()

    def _grew(self, size: int) -> None:
        batch = self._batch
        if not self._has_data.is_set():
            batch.first_at = trio.current_time()
            self._has_data.set()
        batch.size += size
        if batch.size >= BATCH_BYTES:
            self._urgent.set()

    async def _commit_loop(self) -> None:
        while True:
            await self._has_data.wait()
            with trio.move_on_at(self._batch.first_at + self._commit_interval):
                await self._urgent.wait()
            # Looked at before taking: the reader sets it only after handing over everything
            # it read, so this take gets all of that.
            failure = self.pipes.failure
            self._take()
            batch = self._batch
            if batch:
                self._batch = _Batch()
                self._has_data = trio.Event()
                self._urgent = trio.Event()
                if self._closed:
                    self._has_data.set()
                    self._urgent.set()
                await self._commit(batch)
            elif not self._closed:
                # Woken for nothing (the data was taken by an earlier commit): wait afresh.
                self._has_data = trio.Event()
                self._urgent = trio.Event()
            if failure is not None and self.failure is None:
                self._report(failure)
            if self._closed and not batch:
                return

    def _report(self, failure: BaseException) -> None:
        """Everything the failed reader read is committed: say so."""
        self.failure = failure
        if self._on_failure is None:
            raise RuntimeError("the pipe reader thread failed") from failure
        log.error("the pipe reader failed; everything it read is committed")
        self._on_failure(failure)

    async def _commit(self, batch: _Batch) -> None:
        finishes = [r.finish for r in batch.finishes]
        rows = batch.rows
        if batch.drops:
            rows = [r for r in rows if not any(lo <= r.key < hi for lo, hi in batch.drops)]
        markers = list(batch.markers.values())
        while True:
            try:
                await self._store.call(
                    write_batch,
                    rows,
                    finishes,
                    starts=batch.starts,
                    pids=batch.pids,
                    drops=batch.drops,
                    markers=markers,
                )
                break
            except StorageError as exc:
                if self.storage_error is None:
                    log.error("cannot commit log lines, will retry: %s", exc.detail)
                    self.storage_failing_since = trio.current_time()
                self.storage_error = exc.detail
                await trio.sleep(RETRY_DELAY)
        if self.storage_error is not None:
            log.warning("storage is writable again")
            self.storage_error = None
            self.storage_failing_since = None
        self.pipes.release(batch.size)
        for committed in batch.started:
            committed.set()
        self._published(batch.rows, batch.finishes)

    def _published(self, rows: Iterable[LogRow], finishes: list[_FinishRequest]) -> None:
        touched: set[int] = set()
        for row in rows:
            self.rows_committed += 1
            eid, first_seq = split_key(row.key)
            if eid in self._committed:
                self._committed[eid] = first_seq + row.lines
            touched.add(eid)
        for request in finishes:
            eid = request.finish.execution_id
            self._committed.pop(eid, None)
            touched.add(eid)
            request.committed.set()
            ended = self._end_watchers.pop(eid, None)
            if ended is not None:
                ended.set()
        for eid in touched:
            event = self._watchers.pop(eid, None)
            if event is not None:
                event.set()
