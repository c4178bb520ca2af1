"""The store, in-process: execution rows, log rows, lookups, history, migrations and views.

These drive `wfmd.store` directly (no daemon), through `Store.call` on its database thread,
the way the daemon does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path

import apsw
import pytest
import trio

import wfmd.store.store
from wfmctl.protocol import Execution
from wfmd.errors import Refused
from wfmd.store import (
    DatabaseError,
    Finish,
    HistoryFilter,
    LogRow,
    Store,
    StoredExecution,
    executions,
    logs,
    write_batch,
)
from wfmd.store.database import load_migrations
from wfmd.store.logs import STDERR, STDOUT, row_key

SQLITE3 = "/usr/bin/sqlite3"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
T0 = 1_700_000_000_000  # ms since the epoch: 2023-11-14T22:13:20.000Z

EVENT_LINE = b'__WF_EVENT__:{"type": "phase_started", "phase": 1, "name": "P1", "total_phases": 2}'


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def open_store(tmp_path: Path) -> Store:
    with trio.fail_after(10):
        return await Store.open(tmp_path / "db")


async def create(
    store: Store,
    handle: str,
    workflow_id: str = "wf",
    *,
    params: list[tuple[int, str, str]] | None = None,
    now: int = T0,
) -> StoredExecution:
    return await store.call(
        executions.create,
        handle=handle,
        workflow_id=workflow_id,
        params=params or [],
        argv=["/bin/wf", "--x", "y"],
        timeout_ms=None,
        now=now,
    )


def sample_rows(eid: int) -> list[LogRow]:
    """seq 0-2: three stdout lines; 3: an event; 4-5: two stderr lines; 6: unterminated."""
    return [
        LogRow(row_key(eid, 0), STDOUT, T0 + 10, 3, None, b"line 0\nline 1\nline 2\n"),
        LogRow(row_key(eid, 3), STDERR, T0 + 20, 1, "phase_started", EVENT_LINE + b"\n"),
        LogRow(row_key(eid, 4), STDERR, T0 + 30, 2, None, b"err 4\nerr 5\n"),
        LogRow(row_key(eid, 6), STDOUT, T0 + 40, 1, None, b"partial 6"),
    ]


def expected_lines() -> list[str]:
    return [
        "line 0",
        "line 1",
        "line 2",
        EVENT_LINE.decode(),
        "err 4",
        "err 5",
        "partial 6",
    ]


def recorded_pid(conn: apsw.Connection, execution_id: int) -> int | None:
    value = conn.execute("SELECT pid FROM executions WHERE id = ?", (execution_id,)).get
    assert value is None or isinstance(value, int)
    return value


# --------------------------------------------------------------------------- executions


async def test_create_run_finish_roundtrip(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        handle = "0f0e0d0c-0000-4000-8000-000000000001"
        stored = await create(
            store, handle, "echo", params=[(0, "message", "hi"), (1, "count", "3")]
        )
        assert stored.info.status == "NotStarted"
        assert stored.info.handle == handle
        assert stored.info.created_at == T0 / 1000
        assert stored.info.started_at is None
        assert stored.argv == ["/bin/wf", "--x", "y"]
        assert stored.info.params == {"message": "hi", "count": "3"}

        await store.call(executions.mark_running, stored.id, T0 + 5)
        await store.call(executions.set_pid, stored.id, 4242)
        running = await store.call(executions.resolve, handle)
        assert running.info.status == "Running"
        assert await store.call(recorded_pid, stored.id) == 4242
        assert running.info.started_at == (T0 + 5) / 1000
        assert running.info.reason is None
        active = await store.call(executions.active)
        assert [a.id for a in active] == [stored.id]

        finish = Finish(
            stored.id,
            "Completed",
            "exit",
            "exited with status 0",
            exit_code=0,
            ended_at=T0 + 50,
            log_count=7,
        )
        await store.call(write_batch, sample_rows(stored.id), [finish])
        done = await store.call(executions.resolve, handle)
        assert done.info.status == "Completed"
        assert done.info.exit_code == 0
        assert done.info.signal is None
        assert done.info.reason == "exited with status 0"
        assert done.info.ended_at == (T0 + 50) / 1000
        assert done.info.log_count == 7
        assert await store.call(recorded_pid, stored.id) is None
        assert await store.call(executions.active) == []
        assert await store.call(logs.last_entry, stored.id) == (7, T0 + 40)
    finally:
        await store.close()


def synchronous_level(conn: apsw.Connection) -> int:
    return int(conn.pragma("synchronous"))


async def test_commits_are_synced_on_schedule_only_after_writes(tmp_path: Path) -> None:
    """synchronous=NORMAL on the writer; `sync` fsyncs the WAL once per batch of writes and
    is a no-op (no call on the writer) while nothing was written."""
    store = await open_store(tmp_path)
    try:
        assert await store.call(synchronous_level) == 1  # NORMAL
        await create(store, "aaaa-sync")
        await store.sync()
        calls = store.writer_calls
        await store.sync()
        assert store.writer_calls == calls  # nothing written since: no sync
        await create(store, "bbbb-sync")
        await store.sync()
        assert store.writer_calls == calls + 2  # the write and its sync
    finally:
        await store.close()


async def test_resolve_full_prefix_ambiguous_not_found(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        a = await create(store, "aaaa1111-0000-4000-8000-000000000000")
        b = await create(store, "aaaa2222-0000-4000-8000-000000000000")
        c = await create(store, "bbbb1111-0000-4000-8000-000000000000")
        for stored in (a, b, c):
            found = await store.call(executions.resolve, stored.info.handle)
            assert found.id == stored.id
        assert (await store.call(executions.resolve, "aaaa1")).id == a.id
        assert (await store.call(executions.resolve, "aaaa2222-0")).id == b.id
        assert (await store.call(executions.resolve, "b")).id == c.id
        for prefix, code in [
            ("aaaa", "ambiguous"),
            ("a", "ambiguous"),
            ("cccc", "not_found"),
            ("aaaa3", "not_found"),
            ("", "not_found"),
            ("AAAA1111", "not_found"),
        ]:
            with pytest.raises(Refused) as info:
                await store.call(executions.resolve, prefix)
            assert info.value.code == code, prefix
    finally:
        await store.close()


async def test_history_filters_and_keyset_paging(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        made: list[StoredExecution] = []
        for i in range(7):
            workflow = "even" if i % 2 == 0 else "odd"
            stored = await create(store, f"{i:08x}-0000-4000-8000-000000000000", workflow,
                                  now=T0 + i * 1000)  # fmt: skip
            made.append(stored)
        # 0, 2, 4 Completed; 1 Failed; 3 Cancelled; 5, 6 stay NotStarted.
        finishes = [
            Finish(made[0].id, "Completed", "exit", "ok", exit_code=0, ended_at=T0 + 1),
            Finish(
                made[1].id, "Failed", "exit", "exited with status 3", exit_code=3, ended_at=T0 + 1
            ),
            Finish(made[2].id, "Completed", "exit", "ok", exit_code=0, ended_at=T0 + 1),
            Finish(
                made[3].id,
                "Cancelled",
                "cancelled",
                "cancelled by request",
                signal=15,
                ended_at=T0 + 1,
            ),
            Finish(made[4].id, "Completed", "exit", "ok", exit_code=0, ended_at=T0 + 1),
        ]
        await store.call(write_batch, [], finishes)

        def handles(page: Sequence[Execution]) -> list[str]:
            return [e.handle for e in page]

        newest_first = [m.info.handle for m in reversed(made)]
        page, next_before = await store.call(executions.history, HistoryFilter())
        assert handles(page) == newest_first
        assert next_before is None

        # Keyset paging: follow next_before until it runs out.
        seen: list[str] = []
        before = None
        for _ in range(10):
            page, before = await store.call(
                executions.history, HistoryFilter(limit=3, before=before)
            )
            seen += handles(page)
            if before is None:
                break
        assert seen == newest_first
        page, before = await store.call(executions.history, HistoryFilter(limit=3))
        assert before == newest_first[2]
        page, before = await store.call(executions.history, HistoryFilter(limit=7))
        assert before is None  # exactly the last page: no further page announced

        # `before` accepts a unique prefix; unknown → not_found.
        page, _ = await store.call(executions.history, HistoryFilter(before="00000004"))
        assert handles(page) == newest_first[3:]
        with pytest.raises(Refused) as info:
            await store.call(executions.history, HistoryFilter(before="ffff"))
        assert info.value.code == "not_found"

        page, _ = await store.call(executions.history, HistoryFilter(workflow_id="even"))
        assert handles(page) == [made[i].info.handle for i in (6, 4, 2, 0)]
        page, _ = await store.call(executions.history, HistoryFilter(status="Completed"))
        assert handles(page) == [made[i].info.handle for i in (4, 2, 0)]
        page, _ = await store.call(
            executions.history, HistoryFilter(workflow_id="odd", status="Failed")
        )
        assert handles(page) == [made[1].info.handle]
        page, _ = await store.call(executions.history, HistoryFilter(status="NotStarted"))
        assert handles(page) == [made[6].info.handle, made[5].info.handle]
        page, _ = await store.call(
            executions.history, HistoryFilter(since_ms=T0 + 2000, until_ms=T0 + 5000)
        )
        assert handles(page) == [made[i].info.handle for i in (4, 3, 2)]
        page, _ = await store.call(executions.history, HistoryFilter(limit=2, offset=1))
        assert handles(page) == newest_first[1:3]
        page, _ = await store.call(executions.history, HistoryFilter(status="Cancelled"))
        assert [(e.handle, e.signal, e.reason) for e in page] == [
            (made[3].info.handle, 15, "cancelled by request")
        ]
    finally:
        await store.close()


async def test_params_and_param_history(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        values = ["a", "b", "a", "c"]
        for i, value in enumerate(values):
            await create(
                store,
                f"{i:08x}-1111-4000-8000-000000000000",
                "echo",
                params=[(0, "message", value), (1, "count", str(i))],
            )
        other = await create(store, "ffffffff-1111-4000-8000-000000000000", "other",
                             params=[(0, "message", "zzz")])  # fmt: skip
        assert (await store.call(executions.get_by_id, other.id)).info.params == {"message": "zzz"}
        resolved = await store.call(executions.resolve, "00000001")
        assert resolved.info.params == {"message": "b", "count": "1"}
        assert list(resolved.info.params) == ["message", "count"]  # field order
        # How the daemon resolves: one statement on the reader, no transaction around it.
        looked_up = await store.lookup(executions.resolve, "00000001")
        assert looked_up == resolved and list(looked_up.info.params) == ["message", "count"]
        bare = await create(store, "eeeeeeee-1111-4000-8000-000000000000", "bare")
        assert (await store.lookup(executions.resolve, "eeeeeeee")).info.params == {}
        assert bare.info.params == {}
        # Field order is position order, whatever the order of insertion or of the names.
        await create(store, "dddddddd-1111-4000-8000-000000000000", "mixed",
                     params=[(2, "a", "3"), (0, "z", "1"), (1, "m", "2")])  # fmt: skip
        mixed = await store.lookup(executions.resolve, "dddddddd")
        assert list(mixed.info.params.items()) == [("z", "1"), ("m", "2"), ("a", "3")]

        history = await store.call(executions.param_history, "echo", None, 10)
        assert history == {"message": ["c", "a", "b"], "count": ["3", "2", "1", "0"]}
        assert await store.call(executions.param_history, "echo", "message", 2) == {
            "message": ["c", "a"]
        }
        assert await store.call(executions.param_history, "echo", "nope", 10) == {}
        assert await store.call(executions.param_history, "nobody", None, 10) == {}
    finally:
        await store.close()


async def test_reads_wait_only_while_ingestion_is_held_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients' reads give way to a writer that cannot keep up: each batch waits READ_YIELD
    (here 0.5 s, so that timing cannot blur it) while the predicate says a workflow's output is
    held back, and not at all otherwise."""
    monkeypatch.setattr(wfmd.store.store, "READ_YIELD", 0.5)
    store = await open_store(tmp_path)
    try:
        handle = (await create(store, "abcdef01-1111-4000-8000-000000000000")).info.handle
        held_back = False
        store.reads_yield_while(lambda: held_back)

        async def timed_lookup() -> float:
            began = trio.current_time()
            with trio.fail_after(10):
                assert (await store.lookup(executions.resolve, handle)).info.handle == handle
            return trio.current_time() - began

        assert await timed_lookup() < 0.5
        held_back = True
        assert await timed_lookup() >= 0.5
        held_back = False
        assert await timed_lookup() < 0.5
    finally:
        await store.close()


# --------------------------------------------------------------------------- logs


async def test_logs_read_after_and_tail_across_rows(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        stored = await create(store, "12345678-0000-4000-8000-000000000000")
        neighbour = await create(store, "87654321-0000-4000-8000-000000000000")
        await store.call(executions.mark_running, stored.id, T0)
        await store.call(executions.set_pid, stored.id, 1)
        await store.call(write_batch, sample_rows(stored.id), [])
        # Another execution's rows must never leak into this one's range.
        await store.call(
            write_batch,
            [LogRow(row_key(neighbour.id, 0), STDOUT, T0, 2, None, b"other\nother\n")],
            [],
        )

        everything = await store.call(logs.read_after, stored.id, -1, 1000)
        assert [e.seq for e in everything] == list(range(7))
        assert [e.line for e in everything] == expected_lines()
        assert [e.stream for e in everything] == ["stdout"] * 3 + ["stderr"] * 3 + ["stdout"]
        assert [e.type for e in everything] == ["raw_output"] * 3 + ["phase_started"] + [
            "raw_output"
        ] * 3
        assert [e.ts for e in everything] == [(T0 + t) / 1000 for t in (10, 10, 10, 20, 30, 30, 40)]
        event = everything[3]
        assert event.event == {"phase": 1, "name": "P1", "total_phases": 2}
        assert all(e.event is None for e in everything if e.type == "raw_output")

        # Every (after, limit) window equals the slice of the full list: starting in the
        # middle of a row, ending in the middle of a row, crossing event rows.
        for after in range(-1, 8):
            for limit in range(0, 9):
                page = await store.call(logs.read_after, stored.id, after, limit)
                assert page == everything[after + 1 : after + 1 + limit], (after, limit)

        for count in range(0, 9):
            tail = await store.call(logs.read_tail, stored.id, count)
            assert tail == (everything[-count:] if count else []), count

        assert [e.line for e in await store.call(logs.read_after, neighbour.id, -1, 10)] == [
            "other",
            "other",
        ]
        empty = await create(store, "99999999-0000-4000-8000-000000000000")
        assert await store.call(logs.read_after, empty.id, -1, 10) == []
        assert await store.call(logs.read_tail, empty.id, 5) == []
        assert await store.call(logs.last_entry, empty.id) == (0, None)
    finally:
        await store.close()


async def test_logs_non_utf8_and_crlf_are_kept(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        stored = await create(store, "abcdef00-0000-4000-8000-000000000000")
        rows = [LogRow(row_key(stored.id, 0), STDOUT, T0, 2, None, b"\xff\xfe bad\nwin\r\n")]
        await store.call(write_batch, rows, [])
        entries = await store.call(logs.read_after, stored.id, -1, 10)
        assert [e.line for e in entries] == ["\ufffd\ufffd bad", "win\r"]
    finally:
        await store.close()


# --------------------------------------------------------------------------- migrations


async def test_fresh_database_is_migrated(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.close()
    migrations = load_migrations()
    assert migrations, "no migrations shipped"
    with sqlite3.connect(tmp_path / "db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT version, name, applied_at FROM schema_version").fetchall()
        tables = {
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view')")
        }
    conn.close()
    assert [(v, n) for v, n, _ in rows] == [(m.version, m.name) for m in migrations]
    assert all(isinstance(at, int) and at > T0 for _, _, at in rows)
    assert {"executions", "execution_params", "execution_logs", "schema_version"} <= tables
    assert {"executions_view", "log_rows_view", "log_entries_view"} <= tables

    # Reopening a current database changes nothing and makes no backup.
    store = await open_store(tmp_path)
    await store.close()
    assert not [name for name in listing(tmp_path) if name.endswith(".bak")]
    with sqlite3.connect(tmp_path / "db") as conn:
        assert len(conn.execute("SELECT * FROM schema_version").fetchall()) == len(migrations)
    conn.close()


async def test_migrating_a_fresh_database_logs_nothing_from_sqlite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A statement cached across migrations is stale once the schema changes: SQLite
    # re-prepares it, but logs an "abort" that reads like a failure on every first start.
    with caplog.at_level("DEBUG"):
        store = await open_store(tmp_path)
        await store.close()
    assert [r.getMessage() for r in caplog.records if "SQLITE_LOG" in r.getMessage()] == []


async def test_fresh_database_has_incremental_auto_vacuum(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.close()
    with sqlite3.connect(tmp_path / "db") as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    conn.close()


def _make_too_new(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (9999, 'from_the_future', 0)")
    conn.close()


async def test_database_from_a_newer_wfm_is_refused(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.close()
    path = tmp_path / "db"
    _make_too_new(path)
    with pytest.raises(DatabaseError) as info:
        await open_store(tmp_path)
    assert info.value.kind == "too_new"
    assert "9999" in str(info.value)
    with sqlite3.connect(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
    conn.close()
    assert 9999 in versions


async def test_database_from_a_newer_wfm_is_left_byte_for_byte_untouched(tmp_path: Path) -> None:
    # As written by wfm itself (WAL mode, cleanly closed).
    store = await open_store(tmp_path)
    await store.close()
    path = tmp_path / "db"
    _make_too_new(path)
    before = sha256(path)
    with pytest.raises(DatabaseError) as info:
        await open_store(tmp_path)
    assert info.value.kind == "too_new"
    assert sha256(path) == before

    # And a newer database in rollback-journal mode, with some data in it.
    other = tmp_path / "rollback" / "db"
    other.parent.mkdir()
    shutil.copy(path, other)
    with sqlite3.connect(other) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.executemany("INSERT INTO daemon_heartbeat VALUES (?, 1, 1, 1)", [(1,)])
    conn.close()
    before = sha256(other)
    with pytest.raises(DatabaseError) as info:
        await open_store(other.parent)
    assert info.value.kind == "too_new"
    assert sha256(other) == before


async def test_non_database_file_is_refused_as_corrupt_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_bytes(os.urandom(64 * 1024))
    before = sha256(path)
    with pytest.raises(DatabaseError) as info:
        await open_store(tmp_path)
    assert info.value.kind == "corrupt"
    assert sha256(path) == before
    assert listing(tmp_path) == ["db"]  # no -wal, -shm, backup


async def test_text_file_is_refused_as_corrupt_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_text("this is my shopping list, not a database\n" * 200)
    before = sha256(path)
    with pytest.raises(DatabaseError) as info:
        await open_store(tmp_path)
    assert info.value.kind == "corrupt"
    assert sha256(path) == before


# --------------------------------------------------------------------------- views


def sqlite3_json(path: Path, sql: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [SQLITE3, "-json", "-readonly", str(path), sql],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    rows: list[dict[str, object]] = json.loads(result.stdout) if result.stdout.strip() else []
    return rows


@pytest.mark.skipif(not Path(SQLITE3).exists(), reason="no system sqlite3 binary")
async def test_views_work_in_the_system_sqlite3(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    handle = "c0ffee00-0000-4000-8000-000000000000"
    try:
        stored = await create(store, handle, "viewed", params=[(0, "message", "hi")])
        await store.call(executions.mark_running, stored.id, T0 + 1000)
        await store.call(executions.set_pid, stored.id, 77)
        finish = Finish(
            stored.id,
            "Failed",
            "exit",
            "exited with status 3",
            exit_code=3,
            ended_at=T0 + 3500,
            log_count=7,
        )
        await store.call(write_batch, sample_rows(stored.id), [finish])
    finally:
        await store.close()
    path = tmp_path / "db"

    (row,) = sqlite3_json(path, "SELECT * FROM executions_view")
    assert row["handle_id"] == handle
    assert row["workflow_id"] == "viewed"
    assert row["status"] == "Failed"
    assert row["created"] == "2023-11-14T22:13:20.000Z"
    assert row["started"] == "2023-11-14T22:13:21.000Z"
    assert row["ended"] == "2023-11-14T22:13:23.500Z"
    assert row["duration_s"] == 2.5
    assert row["log_count"] == 7
    for key in ("created", "started", "ended"):
        assert ISO.match(str(row[key])), row[key]

    rows = sqlite3_json(path, "SELECT * FROM log_rows_view ORDER BY first_seq")
    assert [r["first_seq"] for r in rows] == [0, 3, 4, 6]
    assert {r["handle_id"] for r in rows} == {handle}
    assert [r["type"] for r in rows] == ["raw_output", "phase_started", "raw_output", "raw_output"]
    assert [r["stream"] for r in rows] == ["stdout", "stderr", "stderr", "stdout"]
    assert rows[0]["received"] == "2023-11-14T22:13:20.010Z"
    assert all(ISO.match(str(r["received"])) for r in rows)

    entries = sqlite3_json(
        path, f"SELECT * FROM log_entries_view WHERE handle_id = '{handle}' ORDER BY seq"
    )
    assert [e["seq"] for e in entries] == list(range(7))
    assert [e["line"] for e in entries] == expected_lines()
    assert [e["type"] for e in entries][3] == "phase_started"
    assert all(ISO.match(str(e["received"])) for e in entries)
