"""The Store: the writer connection and a read-only reader, each on its own thread.

Two connections, each with its own thread (`threads.py`), so the Trio loop never blocks on
SQLite and no connection is ever used from two threads:

- the writer: every write, through `Store.call`, in arrival order;
- a read-only reader: clients' queries, through `Store.read`, each in one read transaction.

In WAL mode the reader's snapshots never wait for the writer's commits and checkpoints, so a
status query never waits behind a group commit (see ARCHITECTURE.md). No transaction is ever
open across an `await`: each call is one synchronous function.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import apsw
import trio

from wfmctl.protocol import ErrorCode, Execution, LogEntry
from wfmd.errors import Refused
from wfmd.store import executions, logs
from wfmd.store.database import (
    close_database,
    open_database,
    open_reader,
    sync_wal,
    transaction,
)
from wfmd.store.executions import Finish
from wfmd.store.logs import LogRow
from wfmd.store.threads import DatabaseThread

P = ParamSpec("P")
T = TypeVar("T")

# Errors that mean "storage is in trouble, try again later" rather than "your bug".
STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    apsw.FullError,
    apsw.IOError,
    apsw.ReadOnlyError,
    apsw.BusyError,
    apsw.LockedError,
)


# The reader hands results back in batches held up to this long (the writer: threads.MAX_HOLD):
# fewer wake-ups of the event loop under load. Tuned with bench_scale (status throughput).
READER_MAX_HOLD = 0.003

# While a workflow's output is held back because the writer is behind, the reader waits this
# long before each batch of clients' reads: a workflow blocked in write() is a cost its user
# never chose. Keeps ingestion under status load near its solo rate (bench_scale throughput).
READ_YIELD = 0.002


def now_ms() -> int:
    """Now, in the store's unit of time: milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


class StorageError(Refused):
    """The database refused a call because of the storage (full disk, I/O error, read-only,
    locked): try again later."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.STORAGE, f"storage error: {detail}")
        self.detail = detail


class Store:
    """The writer connection and the reader connection, each with the one thread using it."""

    def __init__(
        self,
        path: Path,
        conn: apsw.Connection,
        thread: DatabaseThread,
        reader: apsw.Connection,
        reader_thread: DatabaseThread,
    ) -> None:
        self.path = path
        self._conn = conn
        self._thread = thread
        self._synced_at = 0  # the writer's call count at the last sync
        self._reader = reader
        self._reader_thread = reader_thread

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open and migrate. Raises DatabaseError without touching an unusable file."""
        thread = DatabaseThread()
        try:
            conn = await thread.run(functools.partial(open_database, path))
        except BaseException:
            thread.stop()
            raise
        reader_thread = DatabaseThread("wfmd-reader", READER_MAX_HOLD)
        try:
            reader = await reader_thread.run(functools.partial(open_reader, path))
        except BaseException:
            reader_thread.stop()
            with trio.CancelScope(shield=True):
                await thread.run(functools.partial(close_database, conn))
            thread.stop()
            raise
        return cls(path, conn, thread, reader, reader_thread)

    async def call(
        self,
        fn: Callable[Concatenate[apsw.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run `fn(conn, *args, **kwargs)` on the database thread.

        Storage failures come back as StorageError; lookups that find nothing as Refused.

        Cancellation: a call that has started runs to completion (SQLite cannot be interrupted
        safely mid-transaction); the cancellation is delivered when it returns.
        """
        return await _on(self._thread, functools.partial(fn, self._conn, *args, **kwargs))

    async def read(
        self,
        fn: Callable[Concatenate[apsw.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run `fn(conn, *args, **kwargs)` in one read transaction on the reader's thread: it
        sees everything committed before it began, and nothing committed while it runs.

        Cancellation: as for `call`.
        """
        bound = functools.partial(_in_transaction, fn, self._reader, *args, **kwargs)
        return await _on(self._reader_thread, bound)

    async def lookup(
        self,
        fn: Callable[Concatenate[apsw.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`read` for a function that runs a single SQL statement, which SQLite already reads
        from one snapshot: without the BEGIN and COMMIT around it, which each hand the GIL
        away and back (status requests are the busiest reads: see bench_scale).

        Cancellation: as for `call`.
        """
        bound = functools.partial(fn, self._reader, *args, **kwargs)
        return await _on(self._reader_thread, bound)

    async def sync(self) -> None:
        """Force the commits made since the last sync to disk, if there were any (see
        database.SYNC_INTERVAL)."""
        calls = self._thread.calls
        if calls != self._synced_at:
            await self.call(sync_wal)
            self._synced_at = calls + 1  # this sync's own call

    @property
    def writer_calls(self) -> int:
        """Calls made on the writer so far: a background task that must not delay others
        looks for a moment in which it did not grow."""
        return self._thread.calls

    def reads_yield_while(self, held_back: Callable[[], bool]) -> None:
        """Give ingestion priority over clients' reads: while `held_back()` (a workflow's output
        waits because the writer is behind), the reader waits READ_YIELD before each batch."""
        self._reader_thread.yield_while(held_back, READ_YIELD)

    async def close(self) -> None:
        """Close the reader, then checkpoint and close the writer.

        Cancellation: runs shielded, so the WAL is always checkpointed once started.
        """
        with trio.CancelScope(shield=True):
            try:
                try:
                    await self._reader_thread.run(self._reader.close)
                finally:
                    await self._thread.run(functools.partial(close_database, self._conn))
            finally:
                self._reader_thread.stop()
                self._thread.stop()


async def _on(thread: DatabaseThread, bound: Callable[[], T]) -> T:
    """`bound()` on `thread`, storage failures turned into StorageError."""
    try:
        result: T = await thread.run(bound)
        return result
    except STORAGE_ERRORS as exc:
        raise StorageError(f"{type(exc).__name__}: {exc}") from exc


def _in_transaction(
    fn: Callable[Concatenate[apsw.Connection, P], T],
    conn: apsw.Connection,
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    with transaction(conn):
        result = fn(conn, *args, **kwargs)
    return result


def write_batch(
    conn: apsw.Connection,
    rows: list[LogRow],
    finishes: list[Finish],
    *,
    starts: Sequence[tuple[int, int]] = (),
    pids: Sequence[tuple[int, int]] = (),
    drops: Sequence[tuple[int, int]] = (),
    markers: Sequence[LogRow] = (),
) -> None:
    """Commit log rows and the endings they lead to, in one transaction: nobody ever sees an
    execution finished without its last lines. The log cap's `drops` (key ranges [lo, hi)
    to delete) and `markers` (rows replacing any of the same key) go in the same one.

    `starts` (execution id, started at) and `pids` (execution id, pid) are recorded first:
    an execution's start and its ending may share a transaction, never swap."""
    with transaction(conn):
        for execution_id, started_at in starts:
            executions.mark_running(conn, execution_id, started_at)
        for execution_id, pid in pids:
            executions.set_pid(conn, execution_id, pid)
        if drops:
            logs.delete_ranges(conn, drops)
        logs.insert_rows(conn, rows)
        if markers:
            logs.replace_rows(conn, markers)
        executions.apply_finishes(conn, finishes)


def status_and_logs(
    conn: apsw.Connection, execution_id: int, after: int, limit: int
) -> tuple[Execution, list[LogEntry]]:
    """An execution's status and its entries after `after`, from one snapshot (`Store.read`):
    a status that says it has ended guarantees the entries are complete."""
    info = executions.get_by_id(conn, execution_id).info
    return info, logs.read_after(conn, execution_id, after, limit)
