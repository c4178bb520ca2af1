"""How pipe reads become log chunks (wfmd/ingest/lines.py): nothing lost, lines never split except
over MAX_LINE, rows bounded by MAX_CHUNK. End-to-end tests cover the same through the daemon;
these explore read boundaries that a real pipe produces only by chance."""

from __future__ import annotations

import os
from collections.abc import Callable

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from wfmd.events import EVENT_MARKER
from wfmd.ingest.lines import MAX_CHUNK, MAX_LINE, Chunk, LineBuffer
from wfmd.ingest.pipes import PipeReader
from wfmd.store.logs import STDERR, STDOUT

# Line lengths around the interesting sizes: tiny, typical, just under and over a chunk.
LINE_LENGTHS = st.sampled_from([0, 1, 79, 4_000, MAX_CHUNK - 1, MAX_CHUNK, MAX_CHUNK + 1])


def feed(buffer: LineBuffer, data: bytes, cuts: list[int]) -> list[Chunk]:
    """`data` read in pieces ending at `cuts`, then EOF."""
    chunks: list[Chunk] = []
    start = 0
    for end in [*sorted(set(cuts)), len(data)]:
        if end > start:
            chunks += buffer.take(data[start:end], ts=1)
            start = end
    return chunks + buffer.flush(ts=2)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(LINE_LENGTHS, max_size=12),
    unterminated=st.booleans(),
    cut_fractions=st.lists(st.floats(0, 1), max_size=8),
)
def test_reads_become_chunks_of_whole_lines(
    lengths: list[int], unterminated: bool, cut_fractions: list[float]
) -> None:
    data = b"".join(b"x" * n + b"\n" for n in lengths) + (b"tail" if unterminated else b"")
    chunks = feed(LineBuffer(7, STDOUT), data, [int(f * len(data)) for f in cut_fractions])

    assert b"".join(c.data for c in chunks) == data
    assert sum(c.lines for c in chunks) == len(lengths) + unterminated
    for chunk in chunks:
        assert chunk.execution_id == 7 and chunk.stream == STDOUT
        assert chunk.lines == (chunk.data.count(b"\n") or 1)
        # Only the unterminated last line may end without a newline.
        assert chunk.data.endswith(b"\n") or chunk is chunks[-1]
        if len(chunk.data) > MAX_CHUNK:
            assert chunk.lines == 1, "only a single long line may exceed MAX_CHUNK"


def test_one_read_of_a_full_grown_pipe_is_stored_in_bounded_rows() -> None:
    data = b"".join(b"%08d %s\n" % (i, b"x" * 70) for i in range(13_107))  # 1 MiB of lines
    chunks = LineBuffer(1, STDOUT).take(data, ts=1)
    assert len(chunks) == -(-len(data) // (MAX_CHUNK - MAX_CHUNK % 80))  # whole 80-byte lines
    assert all(len(c.data) <= MAX_CHUNK for c in chunks)
    assert b"".join(c.data for c in chunks) == data


def test_a_line_longer_than_max_line_is_cut_into_pieces() -> None:
    data = b"y" * (2 * MAX_LINE + 10) + b"\n"
    chunks = feed(LineBuffer(1, STDOUT), data, [MAX_CHUNK, MAX_LINE + 5])
    assert b"".join(c.data for c in chunks) == data
    assert [len(c.data) for c in chunks] == [MAX_LINE, MAX_LINE, 11]


def test_events_on_stderr_are_chunks_of_their_own_even_in_a_big_read() -> None:
    event = EVENT_MARKER + b'{"type": "phase_started", "phase": 1, "name": "a", "total_phases": 2}'
    event += b"\n"
    plain = b"z" * 100 + b"\n"
    data = plain * 1_000 + event + plain * 1_000
    chunks = LineBuffer(1, STDERR).take(data, ts=1)
    assert [c.data for c in chunks if c.event] == [event]
    assert b"".join(c.data for c in chunks) == data


async def polled_until(predicate: Callable[[], bool]) -> None:
    # The reader thread sets plain attributes: there is no Trio event to wait for.
    while not predicate():  # noqa: ASYNC110
        await trio.sleep(0.01)


async def test_the_pipe_reader_says_while_it_holds_output_back() -> None:
    """Past its budget the reader stops reading (the child would block in write()) and says so,
    for the store to let ingestion go first; once the writer has caught up it says so again."""
    reader = PipeReader(lambda: None, budget=1_000, urgent_bytes=1_000_000)
    reader.start()
    read_end, write_end = os.pipe()
    try:
        reader.open(1, STDOUT, read_end)
        assert not reader.holding_back()
        lines = (b"y" * 99 + b"\n") * 40  # 4,000 bytes, past the budget; one atomic write
        os.write(write_end, lines)
        with trio.fail_after(10):
            await polled_until(reader.holding_back)
            taken = [c for c in reader.take() if isinstance(c, Chunk)]
            reader.release(sum(len(c.data) for c in taken))  # committed: room again
            await polled_until(lambda: not reader.holding_back())
        assert b"".join(c.data for c in taken) == lines
    finally:
        os.close(write_end)
        reader.stop()
