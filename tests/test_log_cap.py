"""The per-execution log cap, enforced while the workflow prints: the head and the tail stay
intact, one marker entry says what was dropped between them, and nothing else is stored."""

from __future__ import annotations

import itertools
import random
import re
import time
from pathlib import Path

import apsw
import pytest
from conftest import MakeDaemon, metadata, write_workflow

from wfmctl.protocol import LogEntry
from wfmd.ingest.logcap import SEGMENTS, Cap, CappedLog
from wfmd.store.logs import STDOUT, LogRow, row_key

LINES = 3000
WIDTH = 40  # bytes per line, newline included
MARKER = re.compile(
    r"^wfmd: dropped (\d+) lines \((\d+) bytes\) of output, seq (\d+) to (\d+), .*"
    r"this line takes seq (\d+)$"
)


def text(i: int) -> str:
    return f"line {i:06d} ".ljust(WIDTH - 1, "x")


def printer(workflow_dir: Path, release: Path, midway: Path) -> None:
    """Prints LINES lines in bursts of ten (rows of about ten lines), then waits for
    `release`."""
    write_workflow(
        workflow_dir,
        "printer",
        f"""
        for i in range({LINES}):
            if i == {LINES // 2}:  # halfway: wait until the test has looked
                sys.stdout.flush()
                while not os.path.exists({str(midway)!r}):
                    time.sleep(0.01)
            sys.stdout.write(f"line {{i:06d}} ".ljust({WIDTH - 1}, "x") + "\\n")
            if i % 10 == 9:
                sys.stdout.flush()
                time.sleep(0.002)
        sys.stdout.flush()
        while not os.path.exists({str(release)!r}):
            time.sleep(0.01)
        """,
        metadata("printer"),
    )


def largest_row(database: Path) -> int:
    """Lines in the largest stored row: the cap is exact to within a row."""
    conn = apsw.Connection(str(database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return int(conn.execute("SELECT max(lines) FROM execution_logs").get)
    finally:
        conn.close()


def check_capped(
    entries: list[LogEntry], lines_cap: int | None, bytes_cap: int | None, row: int
) -> None:
    seqs = [e.seq for e in entries]
    marker_at = next(i for i, e in enumerate(entries) if e.stream == "stderr")
    marker = entries[marker_at]
    match = MARKER.match(marker.line)
    assert match, marker.line
    dropped, dropped_bytes, first, last, own = map(int, match.groups())
    assert first == own == marker.seq == marker_at
    # Head: seq 0 up to the marker, as printed.
    assert [e.line for e in entries[:marker_at]] == [text(i) for i in range(marker_at)]
    # Tail: right after the dropped range to the last line printed, as printed.
    tail = entries[marker_at + 1 :]
    assert [e.seq for e in tail] == list(range(last + 1, LINES))
    assert [e.line for e in tail] == [text(i) for i in range(last + 1, LINES)]
    assert dropped == last - first + 1 and dropped_bytes == dropped * WIDTH
    assert len(seqs) == len(set(seqs))
    # Within the cap, to within a row: the head holds about half. How little the tail may
    # hold depends on the rows dropped, which are gone: test_the_tail_keeps_its_half.
    assert tail
    if lines_cap is not None:
        assert len(entries) <= lines_cap + row
        assert lines_cap // 2 <= marker_at <= lines_cap // 2 + row
    if bytes_cap is not None:
        assert (len(entries) - 1) * WIDTH <= bytes_cap + row * WIDTH
        assert bytes_cap // 2 <= marker_at * WIDTH <= bytes_cap // 2 + row * WIDTH


@pytest.mark.parametrize(
    ("flags", "lines_cap", "bytes_cap"),
    [(["--max-log-lines", "200"], 200, None), (["--max-log-bytes", "8000"], None, 8000)],
)
def test_the_cap_holds_while_the_workflow_prints(
    make_daemon: MakeDaemon,
    workflow_dir: Path,
    tmp_path: Path,
    flags: list[str],
    lines_cap: int | None,
    bytes_cap: int | None,
) -> None:
    release, midway = tmp_path / "release", tmp_path / "midway"
    printer(workflow_dir, release, midway)
    d = make_daemon(flags).start()
    with d.client() as client:
        handle = client.run("printer").handle
        deadline = time.monotonic() + 120  # a loaded 2-core machine
        while client.status(handle).log_count < LINES // 2:
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.02)
        # Halfway through its output, the workflow waits: one page, one snapshot.
        half = client.logs(handle, limit=10_000).entries
        row = largest_row(d.database)
        assert any(MARKER.match(e.line) for e in half)
        held = lines_cap if lines_cap is not None else (bytes_cap or 0) // WIDTH
        assert len(half) <= held + row
        assert half[0].seq == 0 and half[-1].seq == LINES // 2 - 1
        midway.touch()
        while client.status(handle).log_count < LINES:
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.02)
        running = client.status(handle)
        assert running.status == "Running" and running.log_count == LINES
        # Rows read since halfway may be larger (a loaded machine reads more at once).
        row = largest_row(d.database)
        check_capped(list(client.iter_logs(handle)), lines_cap, bytes_cap, row)
        tail = client.logs(handle, tail=5).entries
        assert [e.line for e in tail] == [text(i) for i in range(LINES - 5, LINES)]

        release.touch()
        ended = client.wait(handle)
        assert ended.status == "Completed" and ended.log_count == LINES
        entries = list(client.iter_logs(handle))
        check_capped(entries, lines_cap, bytes_cap, largest_row(d.database))
        page = client.logs(handle, after=entries[-2].seq)
        assert page.finished
    # The database holds exactly what is served: the dropped rows are gone.
    conn = apsw.Connection(str(d.database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        stored = conn.execute("SELECT sum(lines) FROM execution_logs").get
    finally:
        conn.close()
    assert stored == len(entries)


def test_the_window_stays_small_whatever_the_rows() -> None:
    """A million one-line rows under a 100,000-line cap: the dropped ranges are contiguous,
    what is kept is within the cap to within a segment, and the window holds a few hundred
    segments, not rows."""
    cap = Cap(max_lines=100_000, max_bytes=None)
    log = CappedLog(cap, execution_id=1)
    dropped: list[tuple[int, int]] = []
    largest_window = 0
    for seq in range(1_000_000):
        row = LogRow(row_key(1, seq), STDOUT, 0, 1, None, b"x\n")
        dropped += log.added(row, True, 1, 2)
        largest_window = max(largest_window, len(log.window))
    assert largest_window <= SEGMENTS * 1.02 + 2  # whole segments: rounding
    assert dropped[0][0] == 50_000 == log.first_dropped
    assert all(a[1] == b[0] for a, b in itertools.pairwise(dropped))
    kept = 1_000_000 - (dropped[-1][1] - dropped[0][0])
    segment = 100_000 // 2 // SEGMENTS
    assert 100_000 - 1 - segment <= kept <= 100_000 - 1
    assert log.dropped_lines == 1_000_000 - kept and log.last_dropped == dropped[-1][1] - 1
    assert MARKER.match(log.marker(0).data.decode().rstrip("\n"))


def test_the_tail_keeps_its_half() -> None:
    """Rows of 1 to 90 lines, some growing by merges, under a 200-line cap: after every row,
    the window holds the other half less the marker's line, to within the largest row seen
    (a dropped one included)."""
    cap = Cap(max_lines=200, max_bytes=None)
    log = CappedLog(cap, execution_id=1)
    rng = random.Random(7)
    seq, largest, row = 0, 0, None
    for _ in range(5_000):
        lines = rng.randint(1, 90)
        merge = row is not None and rng.random() < 0.3
        if not merge:
            row = LogRow(row_key(1, seq), STDOUT, 0, 0, None, b"")
        assert row is not None
        row = LogRow(row.key, STDOUT, 0, row.lines + lines, None, b"")
        largest = max(largest, row.lines)
        log.added(row, not merge, lines, lines * 2)
        seq += lines
        if log.first_dropped is not None:
            half = 200 - 200 // 2 - 1
            assert half - largest < log.window_lines <= max(half, log.window[-1].lines)
