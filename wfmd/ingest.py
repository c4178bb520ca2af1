"""Reading a child's stdout or stderr and cutting it into log chunks.

A chunk is what one pipe read delivered: the complete lines of that read as one piece of bytes
(cheap: no per-line Python work unless a structured event may be in it), or exactly one
structured event. The writer assigns sequence numbers; this module only decides boundaries.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import trio

from .events import EVENT_MARKER, event_type
from .store.logs import STDERR

# One pipe's worth: Linux pipes hold 64 KiB, so one read can empty a full pipe.
READ_SIZE = 65536

# A longer line is cut into pieces of this size, each its own log entry: a child that never
# prints a newline must not make the daemon buffer without bound.
MAX_LINE = 1024 * 1024

# How long flushing the last partial line may wait for the writer when the pump is cancelled.
FLUSH_TIMEOUT = 5.0


@dataclass(slots=True)
class Chunk:
    execution_id: int
    stream: int
    ts: int  # receive time, ms since the epoch
    data: bytes  # lines as printed; each ends in b"\n" except possibly the last
    lines: int
    event: str | None = None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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


def cut(execution_id: int, stream: int, ts: int, data: bytes) -> list[Chunk]:
    """Chunks for `data`, which holds whole lines only (or one unterminated piece)."""
    if len(data) > MAX_LINE + 1 and _longest_line(data) > MAX_LINE:
        chunks: list[Chunk] = []
        for line in data.split(b"\n")[:-1]:
            for piece in _pieces(line + b"\n"):
                chunks += _cut_lines(execution_id, stream, ts, piece)
        return chunks
    return _cut_lines(execution_id, stream, ts, data)


def _longest_line(data: bytes) -> int:
    longest = start = 0
    while (end := data.find(b"\n", start)) != -1:
        longest = max(longest, end - start)
        start = end + 1
    return max(longest, len(data) - start)


def _cut_lines(execution_id: int, stream: int, ts: int, data: bytes) -> list[Chunk]:
    lines = data.count(b"\n") or 1
    if stream != STDERR or EVENT_MARKER not in data:
        return [Chunk(execution_id, stream, ts, data, lines)]
    chunks: list[Chunk] = []
    raw: list[bytes] = []
    # Split on b"\n" only (bytes.splitlines would also split on \r, \f, ...), so that the
    # number of entries always equals the number of newlines.
    for text in data.split(b"\n")[:-1]:
        line = text + b"\n"
        kind = event_type(text.rstrip(b"\r"))
        if kind is None:
            raw.append(line)
            continue
        if raw:
            chunks.append(Chunk(execution_id, stream, ts, b"".join(raw), len(raw)))
            raw = []
        chunks.append(Chunk(execution_id, stream, ts, line, 1, kind))
    if raw:
        chunks.append(Chunk(execution_id, stream, ts, b"".join(raw), len(raw)))
    return chunks


class Pump:
    """Reads one of a child's pipes to EOF and sends its chunks to the writer."""

    def __init__(
        self,
        execution_id: int,
        stream: int,
        source: trio.lowlevel.FdStream,
        sink: trio.MemorySendChannel[list[Chunk]],
    ) -> None:
        self.execution_id = execution_id
        self.stream = stream
        self._fd = source.fileno()  # `source` (the process's pipe) owns and closes it
        self._sink = sink
        # Since when the pump has been waiting for the pipe (None while it has data in hand):
        # the supervisor uses it to tell a pipe held open by an escaped grandchild from a
        # pump that is merely waiting for the writer.
        self.waiting_since: float | None = None
        self.finished = trio.Event()

    async def run(self) -> None:
        """Read to EOF, sending chunks to the sink (which this closes).

        Sending blocks while the writer is behind; then we stop reading, the pipe fills, and
        the child blocks in write(): back-pressure instead of unbounded memory.

        Cancellation: the unterminated last line read so far is still sent (shielded, bounded
        by FLUSH_TIMEOUT), so a cancelled execution keeps everything it printed.
        """
        try:
            await self._pump()
        finally:
            self.finished.set()

    async def _read(self) -> bytes:
        """The next bytes from the pipe (b"" at EOF).

        Waits for readability first, then reads once: half the system calls and scheduler
        passes of `FdStream.receive_some` (which tries a read, fails with EAGAIN, waits and
        reads again), which matters with hundreds of pipes that each deliver a line at a time.
        """
        while True:
            try:
                await trio.lowlevel.wait_readable(self._fd)
            except trio.ClosedResourceError:
                return b""
            try:
                return os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                continue

    async def _pump(self) -> None:
        eid, stream, sink = self.execution_id, self.stream, self._sink
        partial = bytearray()
        async with sink:
            try:
                while True:
                    self.waiting_since = trio.current_time()
                    data = await self._read()
                    self.waiting_since = None
                    if not data:
                        break
                    ts = now_ms()
                    end = data.rfind(b"\n") + 1
                    if end == 0:
                        partial += data
                        complete = b""
                    elif partial:
                        complete = bytes(partial) + data[:end]
                        partial[:] = data[end:]
                    else:
                        complete = data[:end]
                        partial += data[end:]
                    if complete:
                        # One item per read: its entries get consecutive sequence numbers,
                        # never interleaved with a later read of the other stream.
                        await sink.send(cut(eid, stream, ts, complete))
                    # Strictly longer: a line of exactly MAX_LINE bytes waits for its newline.
                    while len(partial) > MAX_LINE:
                        size = piece_size(partial)
                        piece = bytes(partial[:size])
                        del partial[:size]
                        await sink.send([Chunk(eid, stream, ts, piece, 1)])
            finally:
                self.waiting_since = None
                if partial:
                    with trio.CancelScope(shield=True), trio.move_on_after(FLUSH_TIMEOUT):
                        await sink.send([Chunk(eid, stream, now_ms(), bytes(partial), 1)])
