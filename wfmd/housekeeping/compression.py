"""Compression of cold history: the log rows of executions that ended more than
`compress_after` ago, a few rows at a time, in the background (`store.compression`).

Rows are read on the reader, compressed in a worker thread, and written back on the writer
in one short transaction per step, sized like retention's (about STEP_SECONDS each), so
ingestion never waits behind it. An execution is marked done once every row of it has been
looked at; one interrupted (a kill, a shutdown) is simply taken up again by the next pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from wfmd.store import Store, compression, upkeep
from wfmd.store.sqlar import pack

log = logging.getLogger(__name__)

# Executions fetched per query of those due.
DUE_BATCH = 200

# Rows per step to start from; each step doubles or halves it to take about STEP_SECONDS.
FIRST_ROWS = 64
MAX_ROWS = 4096
# ... and no more data than this per step: rows of huge lines are megabytes each, and a
# step's rows are held in memory twice (as read, and compressed).
MAX_STEP_BYTES = 8 * 1024 * 1024
STEP_SECONDS = 0.01
SLOW_STEP = 0.1  # a step this long is logged: log lines waited for it


@dataclass(slots=True)
class Compressed:
    rows: int = 0
    bytes_before: int = 0  # the rows' data as printed
    bytes_after: int = 0  # as stored now


class Compressor:
    """`compress_after` in seconds (None: never); `clock` gives now in ms."""

    def __init__(
        self, store: Store, compress_after: float | None, clock: Callable[[], int]
    ) -> None:
        self._store = store
        self.compress_after = compress_after
        self._clock = clock

    async def run_pass(self) -> Compressed:
        """Compress every execution that is due now. The caller holds retention's turn.

        Rows of several executions go in one step: a slow workflow's log is a few small
        rows, and a step per execution would be mostly overhead.

        Cancellation: stops between two steps; each step is committed or not at all.
        """
        done = Compressed()
        if self.compress_after is None:
            return done
        cutoff = self._clock() - int(self.compress_after * 1000)
        size = FIRST_ROWS
        while ids := await self._store.read(compression.due, cutoff, DUE_BATCH):
            while ids:
                rows, finished = await self._store.read(
                    compression.rows_to_pack, ids, size, MAX_STEP_BYTES
                )
                packed = await trio.to_thread.run_sync(_pack_all, rows) if rows else []
                _, elapsed = await self._store.call(
                    upkeep.timed, compression.store_packed, packed, finished
                )
                done.rows += len(rows)
                done.bytes_before += sum(raw for _, _, raw in packed)
                done.bytes_after += sum(len(data) for _, data, _ in packed)
                gone = set(finished)
                ids = [eid for eid in ids if eid not in gone]
                if elapsed > SLOW_STEP:
                    log.warning(
                        "compression: writing %d rows took %.0f ms", len(packed), elapsed * 1000
                    )
                if elapsed > STEP_SECONDS:
                    size = max(1, size // 2)
                elif elapsed < STEP_SECONDS / 2:
                    size = min(MAX_ROWS, size * 2)
        return done


def _pack_all(rows: list[tuple[int, bytes]]) -> list[tuple[int, bytes, int]]:
    out = []
    for key, data in rows:
        stored, raw = pack(data)
        out.append((key, stored, raw))
    return out
