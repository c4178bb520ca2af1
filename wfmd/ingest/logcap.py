"""The per-execution log cap: one runaway workflow cannot fill the disk.

While an execution's log is within half the cap (lines or bytes, whichever comes first) its
rows are kept: that is the head. Rows after it form a window holding at most the other half:
once the window is over it, its oldest rows are dropped (deleted if already committed) and
one marker entry takes the place of the first dropped line, saying how many lines and bytes
were dropped between which sequence numbers. So the log keeps its first and its last part.

The window is remembered as a queue of segments (consecutive rows, each segment about
1/SEGMENTS of the cap), not row by row, so its memory stays bounded whatever the rows' sizes;
segments are dropped whole. Sequence numbers are contiguous, so a dropped segment is a key
range. The cap is exact to within a segment, plus one row (at most 64 KiB, or one long line).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from wfmd.store.logs import STDERR, LogRow, row_key, split_key

# Bytes kept free in the window for the marker entry (its text is about 200 bytes).
MARKER_BYTES = 256

# Segments per half of the cap: the window's memory (a few hundred KiB at most) against the
# cap's precision (0.2% of it).
SEGMENTS = 512


@dataclass(frozen=True, slots=True)
class Cap:
    """The cap; None disables one of its two limits."""

    max_lines: int | None
    max_bytes: int | None

    @property
    def enabled(self) -> bool:
        return self.max_lines is not None or self.max_bytes is not None


@dataclass(slots=True)
class _Segment:
    first_seq: int
    lines: int
    size: int


@dataclass(slots=True)
class CappedLog:
    """One execution's log under the cap, as the committer assigns its rows."""

    cap: Cap
    execution_id: int
    head_lines: int = 0
    head_bytes: int = 0
    in_tail: bool = False
    window: deque[_Segment] = field(default_factory=deque)
    window_lines: int = 0
    window_bytes: int = 0
    dropped_lines: int = 0
    dropped_bytes: int = 0
    first_dropped: int | None = None  # the seq the marker takes
    last_dropped: int = 0
    _tail_from: int | None = None  # the first seq after the head, once it is full

    def _head_full(self) -> bool:
        cap = self.cap
        return (cap.max_lines is not None and self.head_lines >= cap.max_lines // 2) or (
            cap.max_bytes is not None and self.head_bytes >= cap.max_bytes // 2
        )

    def _window_over(self) -> bool:
        """The window holds more than the other half, less the marker's room."""
        cap = self.cap
        if cap.max_lines is not None and self.window_lines > cap.max_lines - cap.max_lines // 2 - 1:
            return True
        room = (cap.max_bytes or 0) - (cap.max_bytes or 0) // 2 - MARKER_BYTES
        return cap.max_bytes is not None and self.window_bytes > room

    def _segment_full(self, segment: _Segment) -> bool:
        cap = self.cap
        lines = cap.max_lines is not None and segment.lines >= cap.max_lines // 2 // SEGMENTS
        size = cap.max_bytes is not None and segment.size >= cap.max_bytes // 2 // SEGMENTS
        return lines or size

    def added(self, row: LogRow, new_row: bool, lines: int, size: int) -> list[tuple[int, int]]:
        """`lines` lines of `size` bytes went into `row` (a new row or one they merged
        into). Returns the seq ranges [first, end) to drop now, oldest first."""
        if not self.in_tail:
            self.head_lines += lines
            self.head_bytes += size
            # The head is full: every later row goes to the window.
            self.in_tail = self._head_full()
            self._tail_from = None if not self.in_tail else split_key(row.key)[1] + row.lines
            return []
        first_seq = split_key(row.key)[1]
        if first_seq < (self._tail_from or 0):  # more lines merged into the head's last row
            self.head_lines += lines
            self.head_bytes += size
            return []
        if new_row and (not self.window or self._segment_full(self.window[-1])):
            self.window.append(_Segment(first_seq, 0, 0))
        last = self.window[-1]
        last.lines += lines
        last.size += size
        self.window_lines += lines
        self.window_bytes += size
        dropped: list[tuple[int, int]] = []
        while len(self.window) > 1 and self._window_over():
            old = self.window.popleft()
            end = self.window[0].first_seq
            self.window_lines -= old.lines
            self.window_bytes -= old.size
            self.dropped_lines += end - old.first_seq
            self.dropped_bytes += old.size
            if self.first_dropped is None:
                self.first_dropped = old.first_seq
            self.last_dropped = end - 1
            dropped.append((old.first_seq, end))
        return dropped

    def marker(self, ts: int) -> LogRow:
        """The marker entry as it stands: it takes the first dropped line's seq."""
        assert self.first_dropped is not None
        limits = []
        if self.cap.max_lines is not None:
            limits.append(f"{self.cap.max_lines} lines")
        if self.cap.max_bytes is not None:
            limits.append(f"{self.cap.max_bytes} bytes")
        text = (
            f"wfmd: dropped {self.dropped_lines} lines ({self.dropped_bytes} bytes) of output,"
            f" seq {self.first_dropped} to {self.last_dropped}, to keep this execution's log"
            f" within its cap ({' or '.join(limits)}); this line takes seq {self.first_dropped}\n"
        )
        key = row_key(self.execution_id, self.first_dropped)
        return LogRow(key, STDERR, ts, 1, None, text.encode())
