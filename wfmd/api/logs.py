"""An execution's log: pages of it, and following it live."""

from __future__ import annotations

import trio

from wfmctl.protocol import (
    FINISHED_STATUSES,
    Finished,
    Follow,
    GetLogRows,
    GetLogs,
    LogBatch,
    LogPage,
    LogRows,
    PartialLine,
)
from wfmd.api.context import Services
from wfmd.api.server import Send
from wfmd.store import logs
from wfmd.store.logs import STDOUT

# Entries that one log page may carry, so that a request cannot make the daemon build a
# reply larger than a frame.
MAX_LOG_PAGE = 10_000

# How often a follower that asked for progress bars' states (`Follow.partial`) looks for a
# new one while no line is committed: a terminal redrawn 10 times a second looks live, and
# the look is a dictionary walk.
PARTIAL_POLL = 0.1
# A progress bar's state is shown on one line of a terminal: longer ones are cut.
MAX_PARTIAL = 4096


async def page(s: Services, request: GetLogs) -> LogPage:
    stored = await s.resolve(request.handle)
    after = -1 if request.after is None else request.after
    if request.tail is not None:
        entries = await s.store.read(logs.read_tail, stored.id, min(request.tail, MAX_LOG_PAGE))
    else:
        limit = min(request.limit, MAX_LOG_PAGE)
        entries = await s.store.read(logs.read_after, stored.id, after, limit)
    next_after = entries[-1].seq if entries else after
    info = s.live(stored)
    finished = info.status in FINISHED_STATUSES and next_after + 1 >= info.log_count
    return LogPage(entries=entries, next_after=next_after, finished=finished)


# Log data per `log_rows` reply: large enough that per-reply costs vanish, well below a frame.
ROWS_PAGE_BYTES = 4 * 1024 * 1024


async def rows(s: Services, request: GetLogRows) -> LogRows:
    stored = await s.resolve(request.handle)
    found = await s.store.read(logs.read_rows_after, stored.id, request.after, ROWS_PAGE_BYTES)
    next_after = request.after
    if found:
        key, _stream, _ts, lines, _event, _data = found[-1]
        next_after = (key & logs.SEQ_MASK) + lines - 1
    info = s.live(stored)
    finished = info.status in FINISHED_STATUSES and next_after + 1 >= info.log_count
    return LogRows(rows=logs.export_rows(found), next_after=next_after, finished=finished)


async def follow(s: Services, request: Follow, send: Send) -> None:
    """Stream committed entries after `request.after` until the execution has ended.

    Reads come from the database, so history and live output join with no gap and no
    duplicate, and a follower that reads slowly only delays itself. Followers at the same
    position share one read (`SharedPages`).
    """
    stored = await s.resolve(request.handle)
    after = request.after
    shown: list[PartialLine] = []  # the progress bars' states this follower last got
    while True:
        page = await s.follow_pages.after(stored.id, after)
        info = page.info
        if page.batch is not None:
            await send(page.batch)
            after = page.last_seq
            shown = []  # a finished line replaces a bar on the client's screen
            continue
        if info.status in FINISHED_STATUSES:
            await send(Finished(execution=info))
            return
        progress = s.writer.progress_event(stored.id)
        committed = s.writer.committed_count(stored.id)
        if committed is not None and committed > after + 1:
            continue  # committed after our read
        if committed is None and info.status == "Running":
            continue  # ended after our read
        if not request.partial:
            await progress.wait()
            continue
        # Looking every PARTIAL_POLL for the latest state of a progress bar between two
        # newlines: no commit announces it.
        while not progress.is_set():
            states = _partial_lines(s.writer.pipes.progress_states(stored.id))
            if states != shown:
                await send(LogBatch(entries=[], partial=states))
                shown = states
            with trio.move_on_after(PARTIAL_POLL):
                await progress.wait()


def _partial_lines(states: list[tuple[int, bytes]]) -> list[PartialLine]:
    return [
        PartialLine(
            stream="stdout" if stream == STDOUT else "stderr",
            text=state[:MAX_PARTIAL].decode(errors="replace"),
        )
        for stream, state in states
    ]
