"""One stderr line must never crash the daemon, lose output or free a process.

Three classes of hostile lines, each tested where it is decided (events.py, lines.py, the
store's read path) and through the real daemon, with real workflows printing the lines:

1. a `__WF_EVENT__:` line nested thousands deep made event recognition raise RecursionError,
   which killed the pipe thread and the daemon;
2. a stderr line over MAX_LINE holding the marker lost every piece but its last;
3. an event with a field of 1e400 or a 30-digit integer was accepted, and every read of its
   page then failed with `internal`.

And the fail-safe: if the pipe reader thread ever fails anyway (a bug), everything it read is
committed before the failure is reported, every pipe ends, and endings are still committed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw
import msgspec
import pytest
import trio
from conftest import Daemon, MakeDaemon, metadata, text_field, write_workflow
from hostile_lines import (
    DEEP_LINE,
    IN_RANGE,
    OUT_OF_RANGE,
    SAMPLES,
    Expect,
    check_entries,
    check_served,
    event,
    nested,
    scripts,
    with_extra,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from wfmctl import protocol
from wfmctl.protocol import LogEntry
from wfmd.events import EVENT_MARKER, MAX_DEPTH, event_fields, event_type
from wfmd.ingest.committer import LogWriter
from wfmd.ingest.lines import MAX_LINE, Chunk, LineBuffer
from wfmd.store import Finish, LogRow, Store, executions, logs, status_and_logs, write_batch
from wfmd.store.logs import STDERR, STDOUT, row_key, split_lines

MiB = 1024 * 1024
T0 = 1_700_000_000_000
DEADLINE = 20.0  # seconds, for each in-process test's I/O

# The tester's second finding: five stderr lines of 1.16 MB holding the marker.
LONG_LINES = 5
LONG_LINE_BYTES = 1_160_000


# --------------------------------------------------------------------------- events.py


@pytest.mark.parametrize(
    "line",
    [
        DEEP_LINE,
        with_extra(nested(100_000)),
        with_extra(nested(5_000, "{")),
        EVENT_MARKER + b"[" * 1_000_000,
        EVENT_MARKER + b'{"type": "task_progress", "x": ' + b"[" * 3_000,
    ],
    ids=["tester-2000", "arrays-100000", "objects-5000", "unclosed-1000000", "truncated-3000"],
)
def test_deep_nesting_is_not_an_event_and_never_raises(line: bytes) -> None:
    assert event_type(line) is None
    assert event_fields(line[len(EVENT_MARKER) :]) is None


@pytest.mark.parametrize("kind", ["[", "{"])
def test_nesting_is_bounded_at_max_depth(kind: str) -> None:
    """The fields object is level 1: MAX_DEPTH - 1 levels inside it are an event, one more
    is raw output."""
    assert event_type(with_extra(nested(MAX_DEPTH - 1, kind))) == "task_progress"
    assert event_type(with_extra(nested(MAX_DEPTH, kind))) is None


@pytest.mark.parametrize("number", OUT_OF_RANGE, ids=lambda n: n[:24])
def test_numbers_out_of_range_make_a_line_raw_output(number: str) -> None:
    assert event_type(with_extra(number)) is None
    assert event_fields(with_extra(number)[len(EVENT_MARKER) :]) is None


@pytest.mark.parametrize("number", IN_RANGE)
def test_numbers_in_range_are_events_and_can_be_sent(number: str) -> None:
    line = with_extra(number)
    assert event_type(line) == "task_progress"
    fields = event_fields(line[len(EVENT_MARKER) :])
    assert fields is not None
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(fields)) == json.loads(
        line[len(EVENT_MARKER) :]
    )


# --------------------------------------------------------------------------- lines.py


def feed(buffer: LineBuffer, data: bytes, cuts: list[int]) -> list[Chunk]:
    """`data` read in pieces ending at `cuts`, then EOF."""
    chunks: list[Chunk] = []
    start = 0
    for end in [*sorted(set(cuts)), len(data)]:
        if end > start:
            chunks += buffer.take(data[start:end], ts=1)
            start = end
    return chunks + buffer.flush(ts=2)


def entries_of(chunks: list[Chunk]) -> list[tuple[bytes, str | None]]:
    """Each entry the chunks hold, with its event type, as the store will serve them."""
    out: list[tuple[bytes, str | None]] = []
    for chunk in chunks:
        lines = split_lines(chunk.data)
        assert len(lines) == chunk.lines, chunk  # sequence numbers stay contiguous
        assert chunk.event is None or chunk.lines == 1
        out += [(line, chunk.event) for line in lines]
    return out


@settings(max_examples=150, deadline=None)
@given(script=scripts(), cut_fractions=st.lists(st.floats(0, 1), max_size=6))
def test_no_line_raises_loses_bytes_or_is_mistaken(
    script: tuple[bytes, list[tuple[bytes, Expect]]], cut_fractions: list[float]
) -> None:
    """Whatever a child prints on stderr, read in whatever pieces: nothing raises, every byte
    is kept once, in order, and exactly the valid, servable whole lines are events."""
    data, lines = script
    chunks = feed(LineBuffer(3, STDERR), data, [int(f * len(data)) for f in cut_fractions])
    assert b"".join(c.data for c in chunks) == data
    check_entries(entries_of(chunks), lines)


def long_marker_lines() -> list[bytes]:
    """Lines over MAX_LINE with the marker at the start (a valid event, padded with JSON
    whitespace into the first piece), in the middle, at the end (a valid event that starts the
    last piece), twice, and as a bare marker."""
    valid = event("task_progress", SAMPLES["task_progress"])
    return [
        valid + b" " * (LONG_LINE_BYTES - len(valid)),
        b"a" * (LONG_LINE_BYTES // 2) + EVENT_MARKER + b"b" * (LONG_LINE_BYTES // 2),
        b"c" * MAX_LINE + valid,
        EVENT_MARKER + b"d" * (LONG_LINE_BYTES - 2 * len(EVENT_MARKER)) + EVENT_MARKER,
        EVENT_MARKER + b"e" * LONG_LINE_BYTES,
    ]


@pytest.mark.parametrize("read_size", [4096, 65536, MiB, 8 * MiB])
def test_long_stderr_lines_with_the_marker_keep_every_byte(read_size: int) -> None:
    """Regression: each piece of such a line but the last was dropped."""
    lines = long_marker_lines()
    data = b"".join(line + b"\n" for line in lines)
    chunks = feed(LineBuffer(3, STDERR), data, list(range(read_size, len(data), read_size)))
    assert b"".join(c.data for c in chunks) == data
    check_entries(entries_of(chunks), [(line, "raw") for line in lines])


# --------------------------------------------------------------------------- the read path

UNSERVABLE = [
    with_extra("1e400"),
    with_extra("123456789012345678901234567890"),
    with_extra(str(2**64)),
    DEEP_LINE,
    with_extra(nested(MAX_DEPTH + 5)),
    b"not json at all",
    EVENT_MARKER + b"[1, 2]",
    EVENT_MARKER + b"\xff\xfe",
]
SERVABLE = event("phase_started", SAMPLES["phase_started"])


def stored_rows(eid: int) -> list[LogRow]:
    """Event rows as an older daemon could store them (one unservable event each),
    a valid one, and rows no daemon writes (an unknown event type, a multi-line event)."""
    rows = [
        LogRow(row_key(eid, seq), STDERR, T0 + seq, 1, "task_progress", line + b"\n")
        for seq, line in enumerate(UNSERVABLE)
    ]
    seq = len(rows)
    rows.append(LogRow(row_key(eid, seq), STDERR, T0, 1, "phase_started", SERVABLE + b"\n"))
    rows.append(LogRow(row_key(eid, seq + 1), STDERR, T0, 1, "no_such_type", SERVABLE + b"\n"))
    rows.append(
        LogRow(row_key(eid, seq + 2), STDERR, T0, 2, "phase_started", UNSERVABLE[0] + b"\nx\n")
    )
    return rows


def insert_text_row(conn: apsw.Connection, key: int) -> None:
    """A row written by hand with `sqlite3`: data as TEXT, the time as text."""
    conn.execute(
        "INSERT INTO execution_logs (id, stream, ts, lines, event, data)"
        " VALUES (?, 2, 'soon', 1, 'task_progress', ?)",
        (key, SERVABLE.decode() + "\n"),
    )


def check_servable(entries: list[LogEntry]) -> None:
    """The entries can be sent as a page and a follow batch, and a client decodes them."""
    for message in (
        protocol.LogPage(entries=entries, next_after=0, finished=True),
        protocol.LogBatch(entries=entries),
    ):
        body = protocol.encode_frame(message)[protocol.HEADER.size :]
        assert protocol.decode_response(body) == message


async def test_stored_events_that_cannot_be_served_are_raw_output(tmp_path: Path) -> None:
    """Regression: reading a page holding such a row raised (`internal` for the client)."""
    with trio.fail_after(DEADLINE):
        store = await Store.open(tmp_path / "db")
        try:
            stored = await store.call(
                executions.create,
                handle="13131313-0000-4000-8000-000000000000",
                workflow_id="wf",
                params=[],
                argv=["/bin/wf"],
                timeout_ms=None,
                now=T0,
            )
            rows = stored_rows(stored.id)
            await store.call(write_batch, rows, [])
            count = len(UNSERVABLE) + 4
            await store.call(insert_text_row, row_key(stored.id, count))
            count += 1

            everything = await store.read(logs.read_after, stored.id, -1, 1000)
            assert [e.seq for e in everything] == list(range(count))
            types = [e.type for e in everything]
            assert types == ["raw_output"] * len(UNSERVABLE) + [
                "phase_started",
                "raw_output",  # an unknown event type
                "raw_output",  # the unservable line of a two-line event row
                "raw_output",
                "task_progress",  # the hand-written TEXT row
            ]
            assert [e.line.encode("utf-8", "replace") for e in everything[:8]] == [
                line.decode("utf-8", "replace").encode() for line in UNSERVABLE
            ]
            assert everything[len(UNSERVABLE)].event == {
                k: v for k, v in SAMPLES["phase_started"].items()
            }
            assert all(e.event is None for e in everything if e.type == "raw_output")
            check_servable(everything)
            for after in range(-1, count):
                page = await store.read(logs.read_after, stored.id, after, 1)
                assert page == everything[after + 1 : after + 2]
                _, page = await store.read(status_and_logs, stored.id, after, 3)
                assert page == everything[after + 1 : after + 4]
            for n in range(1, count + 1):
                tail = await store.read(logs.read_tail, stored.id, n)
                assert tail == everything[-n:]
                check_servable(tail)
        finally:
            await store.close()


# --------------------------------------------------------------------------- through the daemon


def stderr_workflow(
    workflow_dir: Path, name: str, lines: list[bytes], *, framed: bool = True
) -> None:
    """A workflow that prints `lines` on stderr; `framed`: a stdout line before and after."""
    body = f"""
if {framed!r}:
    print("before", flush=True)
sys.stderr.buffer.write(b"".join(line + b"\\n" for line in {lines!r}))
sys.stderr.flush()
if {framed!r}:
    print("after", flush=True)
"""
    write_workflow(workflow_dir, name, body, metadata(name))


def read_every_way(daemon: Daemon, handle: str) -> list[LogEntry]:
    """The whole log through each read a client has: pages, the tail of each size up to 3,
    follow, and the `wfmctl logs` command line (all, -n 1, -f, --after). All must agree."""
    with daemon.client() as client:
        entries = list(client.iter_logs(handle, limit=3))
        assert entries == list(client.iter_logs(handle, limit=10_000))
        for n in range(1, min(3, len(entries)) + 1):
            assert client.logs(handle, tail=n).entries == entries[-n:]
        followed = list(client.follow(handle))
        assert followed[:-1] == entries
        assert isinstance(followed[-1], protocol.Execution)
    for args in (["logs", handle], ["logs", "-n", "1", handle], ["logs", "-f", handle]):
        result = daemon.wfmctl(*args)
        assert result.returncode == 0, (args, result.stderr)
    result = daemon.wfmctl("--json", "logs", "--after", "-1", handle)
    assert result.returncode == 0, result.stderr
    return entries


def check_log(
    entries: list[LogEntry], lines: list[tuple[bytes, Expect]], *, framed: bool = True
) -> None:
    """`entries` are stdout "before" (if `framed`), the stderr `lines` as expected, stdout
    "after" (stdout and stderr may interleave: they are two pipes)."""
    stdout = [e.line for e in entries if e.stream == "stdout"]
    assert stdout == (["before", "after"] if framed else [])
    check_served(entries, lines)


def test_deeply_nested_event_kills_nothing(daemon: Daemon, workflow_dir: Path) -> None:
    """Regression: the tester's line killed the pipe thread and the daemon; a sibling running
    at the time stayed Running and lost its uncommitted lines."""
    sibling_body = """
print("sibling started", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.02)
print("sibling done", flush=True)
"""
    go = workflow_dir.parent / "go"
    write_workflow(
        workflow_dir, "sibling", sibling_body, metadata("sibling", text_field("go", required=True))
    )
    hostile = [DEEP_LINE, with_extra(nested(MAX_DEPTH)), with_extra(nested(MAX_DEPTH - 1))]
    stderr_workflow(workflow_dir, "deep", hostile)
    with daemon.client() as client:
        client.workflows(rescan=True)
        sibling = client.run("sibling", {"go": str(go)})
        deadline = time.monotonic() + DEADLINE
        while not client.logs(sibling.handle).entries:  # running, its first line committed
            assert time.monotonic() < deadline, "the sibling never printed"
            time.sleep(0.02)
        ended, _ = daemon.run_to_end("deep")
        go.write_text("go\n")
        sibling_ended = client.wait(sibling.handle)
        sibling_entries = list(client.iter_logs(sibling.handle))
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert ended.status == "Completed", ended
    expected: list[tuple[bytes, Expect]] = [(hostile[0], "raw"), (hostile[1], "raw")]
    check_log(read_every_way(daemon, ended.handle), [*expected, (hostile[2], "event")])
    assert sibling_ended.status == "Completed", sibling_ended
    assert [e.line for e in sibling_entries] == ["sibling started", "sibling done"]


def test_long_stderr_lines_with_the_marker_are_kept_whole(
    daemon: Daemon, workflow_dir: Path
) -> None:
    """Regression: five such lines kept 0.6 of 5.8 million characters."""
    lines = long_marker_lines()
    stderr_workflow(workflow_dir, "long", lines)
    ended, entries = daemon.run_to_end("long", rescan=True)
    assert ended.status == "Completed", ended
    stderr = [e for e in entries if e.stream == "stderr"]
    assert sum(len(e.line) for e in stderr) == sum(len(line) for line in lines)
    check_log(entries, [(line, "raw") for line in lines])


def test_events_with_numbers_out_of_range_are_raw_and_every_read_serves_them(
    daemon: Daemon, workflow_dir: Path
) -> None:
    """Regression: such an event was stored as an event, and every read of its page (`wfmctl
    logs`, `logs -n 1`, follow) then failed with `internal`."""
    lines: list[tuple[bytes, Expect]] = [(with_extra(n), "raw") for n in OUT_OF_RANGE]
    lines += [(with_extra(n), "event") for n in IN_RANGE]
    lines.insert(3, (event("task_started", SAMPLES["task_started"]), "event"))
    stderr_workflow(workflow_dir, "numbers", [line for line, _ in lines])
    ended, _ = daemon.run_to_end("numbers", rescan=True)
    assert ended.status == "Completed", ended
    check_log(read_every_way(daemon, ended.handle), lines)


def old_event_type(line: bytes) -> str | None:
    """The type an older daemon stored for a line: it took any marker line whose
    JSON decoded (ours stands in for those it could not decode, or crashed on)."""
    if not line.startswith(EVENT_MARKER):
        return None
    return event_type(line) or "task_progress"


def test_events_stored_by_an_older_daemon_are_served_as_raw_output(
    make_daemon: MakeDaemon, workflow_dir: Path
) -> None:
    """Databases written by an older daemon hold such events as events: every read serves them,
    as the raw stderr lines they were printed as."""
    daemon = make_daemon().start()
    lines: list[tuple[bytes, Expect]] = [(line, "raw") for line in UNSERVABLE]
    lines.append((SERVABLE, "event"))
    stderr_workflow(workflow_dir, "old", [line for line, _ in lines], framed=False)
    ended, _ = daemon.run_to_end("old", rescan=True)
    assert ended.log_count == len(lines)
    assert daemon.stop() == 0
    # Its log as the old daemon stored it: each line a row, each marker line an event.
    conn = apsw.Connection(str(daemon.database))
    try:
        with conn:
            eid = conn.execute("SELECT id FROM executions WHERE handle = ?", (ended.handle,)).get
            lo, hi = logs.key_range(eid)
            conn.execute("DELETE FROM execution_logs WHERE id BETWEEN ? AND ?", (lo, hi))
            logs.insert_rows(
                conn,
                [
                    LogRow(
                        row_key(eid, seq),
                        STDERR,
                        T0,
                        1,
                        old_event_type(line),
                        line + b"\n",
                    )
                    for seq, (line, _) in enumerate(lines)
                ],
            )
    finally:
        conn.close()
    daemon.start()
    check_log(read_every_way(daemon, ended.handle), lines, framed=False)


# --------------------------------------------------------------------------- the fail-safe


class ReaderBug(Exception):
    """A bug injected into the pipe reader thread."""


@pytest.fixture
def buggy_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipe thread fails on the first read holding b"BUG" (any bug would do)."""
    take = LineBuffer.take

    def failing_take(self: LineBuffer, data: bytes, ts: int) -> list[Chunk]:
        if b"BUG" in data:
            raise ReaderBug("a bug in the pipe reader")
        return take(self, data, ts)

    monkeypatch.setattr(LineBuffer, "take", failing_take)


async def new_execution(store: Store, handle: str) -> int:
    stored = await store.call(
        executions.create,
        handle=handle,
        workflow_id="wf",
        params=[],
        argv=["/bin/wf"],
        timeout_ms=None,
        now=T0,
    )
    await store.call(executions.mark_running, stored.id, T0)
    return stored.id


async def until(predicate: Callable[[], object]) -> None:
    while not predicate():  # noqa: ASYNC110 (the writer's counters have no event of their own)
        await trio.sleep(0.01)


@pytest.fixture
def pipes() -> Iterator[list[tuple[int, int]]]:
    """Pipes made by a test; their write ends are closed after it (the reader owns the read
    ends)."""
    made: list[tuple[int, int]] = []
    yield made
    for _, write_end in made:
        os.close(write_end)


def new_pipe(made: list[tuple[int, int]]) -> tuple[int, int]:
    made.append(os.pipe())
    return made[-1]


@pytest.mark.usefixtures("buggy_reader")
async def test_a_failed_pipe_reader_commits_what_it_read_then_reports(
    tmp_path: Path, pipes: list[tuple[int, int]]
) -> None:
    """Everything read is committed (the unterminated last line too) before `on_failure` is
    called; every pipe then ends, a pipe opened later ends at once, endings are committed,
    and the failed pipes stay open (a child blocks, it is not killed by SIGPIPE) until
    the writer stops."""
    with trio.fail_after(DEADLINE):
        store = await Store.open(tmp_path / "db")
        try:
            eid = await new_execution(store, "a0000000-0000-4000-8000-000000000000")
            reported: list[tuple[BaseException, int | None]] = []
            writer: LogWriter

            def on_failure(exc: BaseException) -> None:
                reported.append((exc, writer.committed_count(eid)))

            writer = LogWriter(store, commit_interval=0.05, on_failure=on_failure)
            async with trio.open_nursery() as nursery:
                await nursery.start(writer.run)
                writer.begin(eid)
                out_read, out_write = new_pipe(pipes)
                err_read, err_write = new_pipe(pipes)
                out_pipe = writer.pipes.open(eid, STDOUT, out_read)
                err_pipe = writer.pipes.open(eid, STDERR, err_read)
                os.write(out_write, b"one\ntwo\n")
                await until(lambda: writer.committed_count(eid) == 2)
                os.write(out_write, b"three\nunterminated")
                await until(
                    lambda: writer.pipes.waiting()[0] > 0 or writer.committed_count(eid) == 3
                )
                os.write(err_write, b"BUG\n")
                await until(lambda: bool(reported))

                ((exc, committed),) = reported
                assert isinstance(exc, ReaderBug) and writer.failure is exc
                assert committed == 4  # one, two, three, unterminated
                assert out_pipe.finished.is_set() and err_pipe.finished.is_set()
                os.write(out_write, b"still open\n")  # no EPIPE: the child is not killed
                late_read, late_write = new_pipe(pipes)
                late = writer.pipes.open(eid, STDOUT, late_read)
                assert late.finished.is_set()
                with pytest.raises(BrokenPipeError):  # nobody will ever read it
                    os.write(late_write, b"x")
                writer.pipes.abandon(out_pipe)  # what a supervisor may still call: no hang

                await writer.finish(Finish(eid, "Failed", "internal", "the pipe reader failed"))
                writer.close()
            with pytest.raises(BrokenPipeError):  # closed once the writer stopped
                os.write(out_write, b"x")
            info, entries = await store.read(status_and_logs, eid, -1, 100)
        finally:
            await store.close()
    assert [e.line for e in entries] == ["one", "two", "three", "unterminated"]
    assert (info.status, info.ended_by, info.log_count) == ("Failed", "internal", 4)


@pytest.mark.usefixtures("buggy_reader")
async def test_without_a_failure_hook_the_writer_raises_after_committing(
    tmp_path: Path, pipes: list[tuple[int, int]]
) -> None:
    with trio.fail_after(DEADLINE):
        store = await Store.open(tmp_path / "db")
        try:
            eid = await new_execution(store, "b0000000-0000-4000-8000-000000000000")
            writer = LogWriter(store, commit_interval=0.05)
            out_read, out_write = new_pipe(pipes)
            err_read, err_write = new_pipe(pipes)

            async def drive() -> None:
                writer.begin(eid)
                writer.pipes.open(eid, STDOUT, out_read)
                writer.pipes.open(eid, STDERR, err_read)
                os.write(out_write, b"one\nunterminated")
                await until(lambda: writer.pipes.waiting()[0] > 0 or writer.committed_count(eid))
                os.write(err_write, b"BUG\n")

            caused_by_the_bug = pytest.RaisesExc(
                RuntimeError,
                match="pipe reader",
                check=lambda exc: isinstance(exc.__cause__, ReaderBug),
            )
            with pytest.RaisesGroup(caused_by_the_bug):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(drive)
                    await writer.run()
            entries = await store.read(logs.read_after, eid, -1, 100)
        finally:
            await store.close()
    assert [e.line for e in entries] == ["one", "unterminated"]
