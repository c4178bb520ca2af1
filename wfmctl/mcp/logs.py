"""get_workflow_logs: one page of an execution's log, within the output bound.

A page is read forward (the entries after `after_seq`) or backward (the last entries, or
the last before `before_seq`); sequence numbers run 0, 1, 2, ... with no gap, so any range
is one daemon request. Without a type filter a page takes one request, of no more entries
than the bound can hold. With one, the log is scanned in chunks of the daemon's largest page
until `limit` entries match, the log ends, or `SCAN_LIMIT` entries have been looked at; the
result then says how far it looked and where to go on, so that no call over a 10-million-line
log runs for long.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import partial
from typing import Any

from typing_extensions import TypedDict

from wfmctl.client import Client
from wfmctl.mcp.bridge import Bridge
from wfmctl.mcp.results import Limits, fitting, log_entry, room_for_list, shrink
from wfmctl.protocol import LogEntry, LogPage

SCAN_LIMIT = 100_000  # entries looked at by one filtered call
CHUNK = 10_000  # entries per daemon request while scanning: the daemon's largest page
# The JSON of the smallest entry (an empty line): a page never asks for more than fit.
MIN_ENTRY_BYTES = 90
# Past this much text a daemon page may have been cut short of its `limit` (it cuts at 8 MiB).
BIG_PAGE_TEXT = 4 * 1024 * 1024


class LogsResult(TypedDict):
    handle_id: str
    entries: list[dict[str, Any]]
    next_after_seq: int
    next_before_seq: int | None
    has_more: bool
    finished: bool
    scanned_from_seq: int | None
    scanned_to_seq: int | None
    hint: str


class _Scan:
    """What a read found: the matching entries, in order, and the range it looked at."""

    def __init__(self) -> None:
        self.matches: list[LogEntry] = []
        self.low: int | None = None  # lowest seq looked at
        self.high: int | None = None  # highest seq looked at
        self.more_after = False  # entries exist after `high`
        self.finished = False  # the execution has ended and nothing follows `high`
        self.stopped_early = False  # the scan limit ended a filtered scan
        self.count = 0  # entries looked at

    def saw(self, entry: LogEntry) -> None:
        self.count += 1
        self.low = entry.seq if self.low is None else min(self.low, entry.seq)
        self.high = entry.seq if self.high is None else max(self.high, entry.seq)


def _short(page: LogPage) -> bool:
    """The daemon may have cut this page by size rather than reached the log's end."""
    return sum(len(e.line) for e in page.entries) >= BIG_PAGE_TEXT


async def read_forward(
    bridge: Bridge,
    handle: str,
    after: int,
    before: int | None,
    limit: int,
    types: Collection[str] | None,
    limits: Limits,
) -> _Scan:
    scan = _Scan()
    # One less than the daemon's page: each request asks for one more than it wants.
    ask = min(CHUNK if types else min(limit, limits.max_output // MIN_ENTRY_BYTES), CHUNK - 1)
    while True:
        want = ask if before is None else min(ask, before - 1 - after)
        if want <= 0:
            scan.more_after = True  # `before` exists, or was asked for
            return scan
        if types:
            want = min(want, SCAN_LIMIT - scan.count)
        # One more than wanted: whether it comes says whether more entries exist.
        page = await bridge.call(partial(Client.logs, handle=handle, after=after, limit=want + 1))
        entries = page.entries[:want]
        for entry in entries:
            scan.saw(entry)
            if types is None or entry.type in types:
                scan.matches.append(entry)
                if len(scan.matches) >= limit:
                    scan.more_after = entry is not page.entries[-1] or _short(page)
                    return scan
        scan.more_after = len(page.entries) > want or (bool(entries) and _short(page))
        scan.finished = page.finished and not scan.more_after
        if not scan.more_after or not types:
            return scan
        after = entries[-1].seq
        if scan.count >= SCAN_LIMIT:
            scan.stopped_early = True
            return scan


async def read_backward(
    bridge: Bridge,
    handle: str,
    before: int | None,
    limit: int,
    types: Collection[str] | None,
    limits: Limits,
) -> _Scan:
    scan = _Scan()
    scan.more_after = before is not None  # `before` exists, or was asked for
    ask = CHUNK if types else min(limit, limits.max_output // MIN_ENTRY_BYTES)
    ask = min(ask, CHUNK)
    found: list[LogEntry] = []  # newest first
    high = before  # exclusive upper end of the next chunk; None: the log's end
    while True:
        if high is None:
            page = await bridge.call(lambda c: c.logs(handle, tail=ask))
            scan.finished = page.finished
        else:
            low = max(0, high - min(ask, SCAN_LIMIT - scan.count))
            if high <= low:
                return _done(scan, found)
            page = await bridge.call(
                partial(Client.logs, handle=handle, after=low - 1, limit=high - low)
            )
        if not page.entries:
            return _done(scan, found)
        for entry in reversed(page.entries):
            scan.saw(entry)
            if types is None or entry.type in types:
                found.append(entry)
                if len(found) >= limit:
                    return _done(scan, found)
        high = page.entries[0].seq
        if not types or high == 0:
            return _done(scan, found)
        if scan.count >= SCAN_LIMIT:
            scan.stopped_early = True
            return _done(scan, found)


def _done(scan: _Scan, found: list[LogEntry]) -> _Scan:
    scan.matches = found[::-1]
    return scan


async def get_logs(
    bridge: Bridge,
    limits: Limits,
    handle: str,
    *,
    limit: int,
    after_seq: int | None,
    before_seq: int | None,
    types: Collection[str] | None,
) -> LogsResult:
    """The page the arguments ask for, as a `LogsResult` within the output bound."""
    forward = after_seq is not None
    if after_seq is not None:
        scan = await read_forward(bridge, handle, after_seq, before_seq, limit, types, limits)
    else:
        scan = await read_backward(bridge, handle, before_seq, limit, types, limits)
    shaped = [log_entry(e, limits.line_cap) for e in scan.matches]
    result: LogsResult = {
        "handle_id": handle,
        "entries": [],
        "next_after_seq": 0,
        "next_before_seq": None,
        "has_more": False,
        "finished": False,
        "scanned_from_seq": scan.low if types else None,
        "scanned_to_seq": scan.high if types else None,
        "hint": "",
    }
    room = room_for_list(result, limits)
    if forward:  # keep the oldest that fit
        kept = shaped[: max(1, fitting(shaped, room))] if shaped else []
    else:  # keep the newest that fit
        kept = shaped[len(shaped) - max(1, fitting(reversed(shaped), room)) :] if shaped else []
    if len(kept) == 1 and fitting(kept, room) == 0:  # one entry alone too large: cut harder
        kept = [shrink(kept[0], room)]
    dropped = len(shaped) - len(kept)
    result["entries"] = kept

    first_seq = kept[0]["seq"] if kept else None
    last_seq = kept[-1]["seq"] if kept else None
    if forward:
        assert after_seq is not None
        if dropped:
            next_after = int(last_seq) if last_seq is not None else after_seq
        else:
            next_after = scan.high if scan.high is not None else after_seq
        more = bool(dropped) or scan.more_after
        result["next_after_seq"] = next_after
        result["has_more"] = more
        result["finished"] = scan.finished and not more
        low = after_seq + 1
    else:
        if dropped and first_seq is not None:
            earlier: int | None = int(first_seq)
        else:
            earlier = scan.low if scan.low else None  # None at seq 0, or an empty log
        result["next_before_seq"] = earlier
        end = before_seq - 1 if before_seq is not None else scan.high
        result["next_after_seq"] = end if end is not None else -1
        result["has_more"] = scan.more_after
        result["finished"] = scan.finished
        low = scan.low if scan.low is not None else 0
    result["hint"] = _hint(result, scan, types, forward, low)
    return result


def _hint(
    result: LogsResult,
    scan: _Scan,
    types: Collection[str] | None,
    forward: bool,
    low: int,
) -> str:
    parts: list[str] = []
    entries = result["entries"]
    if types:
        looked = "nothing" if scan.high is None else f"seq {low:,}-{scan.high:,}"
        parts.append(f"Looked at {looked} for {', '.join(sorted(types))}: {len(entries)} shown.")
        if scan.stopped_early:
            go = "after_seq" if forward else "before_seq"
            where = result["next_after_seq"] if forward else result["next_before_seq"]
            parts.append(
                f"Stopped after {SCAN_LIMIT:,} entries; to look further call again with "
                f"{go}={where}."
            )
    elif entries:
        parts.append(f"Entries seq {entries[0]['seq']:,}-{entries[-1]['seq']:,}.")
    else:
        parts.append("No entries in this range.")
    if not forward and result["next_before_seq"] is not None and not scan.stopped_early:
        parts.append(f"Earlier entries: call again with before_seq={result['next_before_seq']}.")
    if result["has_more"] and not (types and scan.stopped_early and forward):
        parts.append(f"More entries follow: call again with after_seq={result['next_after_seq']}.")
    elif result["finished"]:
        parts.append("That is the end of the log: the execution has ended.")
    elif not result["has_more"]:
        parts.append(
            "No more entries yet; the execution has not ended. For new output call again "
            f"later with after_seq={result['next_after_seq']}, or use wait_for_workflow."
        )
    return " ".join(parts)
