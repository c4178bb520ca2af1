"""Cutting what a child prints into log chunks.

A chunk is what one pipe read delivered: the complete lines of that read as one piece of bytes
(cheap: no per-line Python work unless a structured event may be in it), or exactly one
structured event. The writer assigns sequence numbers; this module only decides boundaries, and
`pipes.py` does the reading.
"""

from __future__ import annotations

from dataclasses import dataclass

from wfmd.events import EVENT_MARKER, event_type
from wfmd.store.logs import STDERR

# A longer line is cut into pieces of this size, each its own log entry: a child that never
# prints a newline must not make the daemon buffer without bound.
MAX_LINE = 1024 * 1024

# A chunk (and so a stored row) holds at most this much, unless one line is longer: a read of
# a grown pipe can bring 1 MiB, and a query for a few lines decodes their whole row.
MAX_CHUNK = 64 * 1024


@dataclass(slots=True)
class Chunk:
    execution_id: int
    stream: int
    ts: int  # receive time, ms since the epoch
    data: bytes  # lines as printed; each ends in b"\n" except possibly the last
    lines: int
    event: str | None = None


def piece_size(line: bytes | bytearray) -> int:
    """Where to cut a line longer than MAX_LINE: at MAX_LINE, moved back to the start of a
    UTF-8 character so valid text stays valid in both pieces (at most 3 bytes back)."""
    size = MAX_LINE
    while size > MAX_LINE - 3 and line[size] & 0xC0 == 0x80:
        size -= 1
    return size if line[size] & 0xC0 != 0x80 else MAX_LINE


def _pieces(line: bytes) -> list[bytes]:
    """A line (with its newline) longer than MAX_LINE, as pieces; the last keeps the newline."""
    pieces = []
    while len(line) > MAX_LINE + 1:
        size = piece_size(line)
        pieces.append(line[:size])
        line = line[size:]
    pieces.append(line)
    return pieces


def cut(
    execution_id: int, stream: int, ts: int, data: bytes, *, events: bool = True
) -> list[Chunk]:
    """Chunks for `data`, which holds whole lines only.

    Every byte of `data` ends up in exactly one chunk, whatever it holds. Events are looked
    for (on stderr) only in whole lines of at most MAX_LINE bytes: the pieces of a longer line
    are not lines, so none of them is an event, wherever the marker sits. `events=False`: the
    first line of `data` is the last piece of a line cut earlier.
    """
    if len(data) > MAX_LINE + 1 and _longest_line(data) > MAX_LINE:
        return _cut_long(execution_id, stream, ts, data, events)
    return _cut_lines(execution_id, stream, ts, data, events)


def _cut_long(execution_id: int, stream: int, ts: int, data: bytes, events: bool) -> list[Chunk]:
    """`cut` for data holding a line longer than MAX_LINE: the pieces of each such line are
    raw entries, one each, and the lines between them are cut as usual."""
    chunks: list[Chunk] = []
    start = short = 0  # short: where the run of lines not yet cut begins
    while start < len(data):
        end = data.find(b"\n", start) + 1 or len(data)
        if end - start - (data[end - 1] == 0x0A) > MAX_LINE:
            if short < start:
                chunks += _cut_lines(
                    execution_id, stream, ts, data[short:start], events or short > 0
                )
            chunks += [Chunk(execution_id, stream, ts, p, 1) for p in _pieces(data[start:end])]
            short = end
        start = end
    if short < len(data):
        chunks += _cut_lines(execution_id, stream, ts, data[short:], events or short > 0)
    return chunks


def _longest_line(data: bytes) -> int:
    longest = start = 0
    while (end := data.find(b"\n", start)) != -1:
        longest = max(longest, end - start)
        start = end + 1
    return max(longest, len(data) - start)


def _cut_lines(execution_id: int, stream: int, ts: int, data: bytes, events: bool) -> list[Chunk]:
    # The hot path: a read without the marker is one chunk, with no per-line work.
    if stream != STDERR or EVENT_MARKER not in data:
        lines = data.count(b"\n") + (data[-1:] != b"\n")
        return [Chunk(execution_id, stream, ts, data, lines)]
    chunks: list[Chunk] = []
    raw: list[bytes] = []
    # Split on b"\n" only (bytes.splitlines would also split on \r, \f, ...), so that the
    # number of entries always equals the number of newlines (plus an unterminated piece).
    texts = data.split(b"\n")
    tail = texts.pop()  # b"" after the last newline, else an unterminated piece: raw
    for i, text in enumerate(texts):
        line = text + b"\n"
        kind = event_type(text.rstrip(b"\r")) if events or i else None
        if kind is None:
            raw.append(line)
            continue
        if raw:
            chunks.append(Chunk(execution_id, stream, ts, b"".join(raw), len(raw)))
            raw = []
        chunks.append(Chunk(execution_id, stream, ts, line, 1, kind))
    if tail:
        raw.append(tail)
    if raw:
        chunks.append(Chunk(execution_id, stream, ts, b"".join(raw), len(raw)))
    return chunks


def _split(data: bytes) -> list[bytes]:
    """`data` (whole lines) in pieces of at most MAX_CHUNK, cut after a newline; a line longer
    than that stays whole in its own piece."""
    if len(data) <= MAX_CHUNK:
        return [data]
    pieces = []
    start = 0
    while len(data) - start > MAX_CHUNK:
        end = data.rfind(b"\n", start, start + MAX_CHUNK) + 1
        if end <= start:
            end = data.find(b"\n", start + MAX_CHUNK) + 1 or len(data)
        pieces.append(data[start:end])
        start = end
    if start < len(data):
        pieces.append(data[start:])
    return pieces


class LineBuffer:
    """One pipe's reads turned into chunks: the complete lines of each read, the unterminated
    rest kept for the next read, and a line longer than MAX_LINE cut into pieces."""

    __slots__ = ("_cut", "_partial", "execution_id", "stream")

    def __init__(self, execution_id: int, stream: int) -> None:
        self.execution_id = execution_id
        self.stream = stream
        self._partial = bytearray()
        self._cut = False  # pieces of the partial line have gone: its rest is a piece too

    def take(self, data: bytes, ts: int) -> list[Chunk]:
        eid, stream, partial = self.execution_id, self.stream, self._partial
        end = data.rfind(b"\n") + 1
        chunks: list[Chunk] = []
        if end:
            complete = bytes(partial) + data[:end] if partial else data[:end]
            partial[:] = data[end:]
            events = not self._cut
            self._cut = False
            for piece in _split(complete):
                chunks += cut(eid, stream, ts, piece, events=events)
                events = True
        else:
            partial += data
        # Strictly longer: a line of exactly MAX_LINE bytes waits for its newline.
        while len(partial) > MAX_LINE:
            size = piece_size(partial)
            chunks.append(Chunk(eid, stream, ts, bytes(partial[:size]), 1))
            del partial[:size]
            self._cut = True
        return chunks

    def progress_state(self) -> bytes | None:
        """The latest state of an unterminated line rewritten with carriage returns (a
        progress bar between its newlines): what a terminal would show of it now. None for
        an ordinary line being written. Read from another thread: `bytes()` copies the
        buffer in one call, under the GIL. Nothing here is stored: the line is, once its
        newline comes."""
        partial = bytes(self._partial)
        if b"\r" not in partial:
            return None
        states = [state for state in partial.split(b"\r") if state]
        return states[-1] if states else b""

    def flush(self, ts: int) -> list[Chunk]:
        """The unterminated last line, if any, as an entry of its own (at EOF or abandon)."""
        self._cut = False
        if not self._partial:
            return []
        rest = bytes(self._partial)
        self._partial.clear()
        return [Chunk(self.execution_id, self.stream, ts, rest, 1)]
