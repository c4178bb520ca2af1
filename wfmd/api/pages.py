"""Followers of one execution share their reads: one database read, and one encoded frame,
per page, however many clients follow it."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from wfmctl import protocol
from wfmctl.protocol import Execution, LogBatch
from wfmd.api.server import Encoded
from wfmd.store import Store, status_and_logs

# Entries per page of a follow stream: large enough to keep up with a fast workflow, small
# enough that one frame stays far below the frame limit at typical line lengths.
FOLLOW_PAGE = 2_000


@dataclass(frozen=True)
class Page:
    """An execution's status and the entries after a position, read from one snapshot."""

    info: Execution
    batch: Encoded | None  # the entries as one LogBatch frame; None if there are none
    last_seq: int  # of the last entry in `batch`


@dataclass
class _Read:
    done: trio.Event = field(default_factory=trio.Event)
    page: Page | None = None
    error: Exception | None = None


class SharedPages:
    """Followers at the same position (the usual case: the same commit wakes them all) wait
    for one read of the page instead of each making their own."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._reading: dict[tuple[int, int], _Read] = {}

    async def after(self, execution_id: int, after: int) -> Page:
        """The page of up to FOLLOW_PAGE entries after `after`. Raises what the read raises.

        Cancellation: a cancelled reader leaves the page to the next caller; those waiting for
        its read then read it themselves.
        """
        key = (execution_id, after)
        while True:
            read = self._reading.get(key)
            if read is None:
                return await self._read(key)
            await read.done.wait()
            if read.page is not None:
                return read.page
            if read.error is not None:
                raise read.error

    async def _read(self, key: tuple[int, int]) -> Page:
        read = self._reading[key] = _Read()
        try:
            info, entries = await self._store.read(status_and_logs, *key, FOLLOW_PAGE)
            if entries:
                frame = protocol.encode_frame(LogBatch(entries=entries))
                read.page = Page(info, Encoded(frame), entries[-1].seq)
            else:
                read.page = Page(info, None, key[1])
            return read.page
        except Exception as exc:
            read.error = exc
            raise
        finally:
            del self._reading[key]
            read.done.set()
