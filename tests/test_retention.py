"""Retention: which executions each limit removes, deletion in steps, the space given back,
the record of each run, and `wfmctl prune`, `delete` and `info` against the real daemon.

Time is driven through the executions' recorded times and Retention's injectable clock,
never by sleeping.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import apsw
import pytest
import trio
from conftest import MakeDaemon, metadata, write_workflow

from wfmd.housekeeping.policy import Settings
from wfmd.housekeeping.retention import Request, Retention
from wfmd.store import Finish, LogRow, Store, executions, retention, upkeep, write_batch
from wfmd.store.database import close_database, open_database
from wfmd.store.logs import STDOUT, key_range, row_key
from wfmd.store.retention import Limits, Policy

DAY = 86_400_000
NOW = 1_800_000_000_000  # ms since the epoch: the clock these tests run at


def add(
    conn: apsw.Connection,
    workflow_id: str = "wf",
    *,
    ended: int | None = NOW,
    status: str = "Completed",
    lines: int = 10,
    width: int = 80,
) -> int:
    """An execution created `ended` (ms), with `lines` log lines in rows of up to 100."""
    created = NOW - 400 * DAY if ended is None else ended
    stored = executions.create(
        conn,
        handle=str(uuid.uuid4()),
        workflow_id=workflow_id,
        params=[(0, "p", "v")],
        argv=["/bin/true"],
        timeout_ms=None,
        now=created,
    )
    eid = stored.id
    if status == "NotStarted":
        return eid
    executions.mark_running(conn, eid, created)
    line = b"x" * (width - 1) + b"\n"
    rows = [
        LogRow(
            row_key(eid, seq),
            STDOUT,
            created,
            min(100, lines - seq),
            None,
            line * min(100, lines - seq),
        )
        for seq in range(0, lines, 100)
    ]
    finishes = []
    if status != "Running":
        finishes = [Finish(eid, status, "exit", "done", 0, ended_at=ended, log_count=lines)]  # type: ignore[arg-type]
    write_batch(conn, rows, finishes)
    return eid


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    c = open_database(tmp_path / "wfm.db")
    yield c
    close_database(c)


def ids_of(conn: apsw.Connection, policy: Policy, now: int = NOW) -> list[int]:
    return [c.id for c in retention.select(conn, policy, now)]


def log_rows(conn: apsw.Connection, eid: int) -> int:
    lo, hi = key_range(eid)
    sql = "SELECT count(*) FROM execution_logs WHERE id BETWEEN ? AND ?"
    return cast(int, conn.execute(sql, (lo, hi)).get)


# --------------------------------------------------------------------------- choosing


def test_age_limit_removes_only_finished_executions_older_than_it(conn: apsw.Connection) -> None:
    old = [add(conn, ended=NOW - 31 * DAY, status=s) for s in ("Completed", "Failed", "Cancelled")]
    add(conn, ended=NOW - 29 * DAY)
    add(conn, ended=None, status="Running")  # created 400 days ago, still running
    add(conn, ended=None, status="NotStarted")
    add(conn, ended=NOW)
    assert ids_of(conn, Policy(Limits(max_age_ms=30 * DAY))) == old


def test_count_limit_keeps_the_newest_and_counts_but_never_removes_running(
    conn: apsw.Connection,
) -> None:
    finished = [add(conn, ended=NOW - (10 - i) * DAY) for i in range(6)]
    running = add(conn, ended=None, status="Running")
    queued = add(conn, ended=None, status="NotStarted")
    # The newest 3 are the last finished one, running and queued.
    assert ids_of(conn, Policy(Limits(max_executions=3))) == finished[:5]
    assert running not in ids_of(conn, Policy(Limits(max_executions=0)))
    assert queued not in ids_of(conn, Policy(Limits(max_executions=0)))


def test_per_workflow_limits_replace_the_global_ones_for_that_workflow(
    conn: apsw.Connection,
) -> None:
    nightly = [add(conn, "nightly", ended=NOW - d * DAY) for d in (400, 100, 40)]
    other = [add(conn, "other", ended=NOW - d * DAY) for d in (100, 40, 1)]
    policy = Policy(
        Limits(max_age_ms=30 * DAY, max_executions=1000),
        {"nightly": Limits(max_age_ms=365 * DAY, max_executions=1000)},
    )
    assert ids_of(conn, policy) == [nightly[0], other[0], other[1]]
    # A count override: only the newest of nightly stays, whatever its age.
    policy = Policy(Limits(max_age_ms=None), {"nightly": Limits(max_executions=1)})
    assert ids_of(conn, policy) == nightly[:2]
    # Narrowed to one workflow, the others are left alone.
    narrowed = Policy(Limits(max_age_ms=30 * DAY), workflow_id="other")
    assert ids_of(conn, narrowed) == other[:2]


def test_explicit_older_than_and_keep_each_remove(conn: apsw.Connection) -> None:
    e = [add(conn, ended=NOW - d * DAY) for d in (9, 8, 2, 1)]
    assert [c.id for c in retention.choose(conn, Policy(), NOW, older_than_ms=5 * DAY)] == e[:2]
    assert [c.id for c in retention.choose(conn, Policy(), NOW, keep=1)] == e[:3]
    both = retention.choose(conn, Policy(), NOW, older_than_ms=5 * DAY, keep=3)
    assert [c.id for c in both] == e[:2]


def test_pages_of_any_size_give_the_same_choice(conn: apsw.Connection) -> None:
    for n in range(30):
        add(conn, "a" if n % 3 else "b", ended=NOW - (n % 7) * 10 * DAY)
    add(conn, ended=None, status="Running")
    policy = Policy(Limits(max_age_ms=25 * DAY, max_executions=12), {"b": Limits(max_executions=2)})
    found = retention.rules(conn, policy, NOW)
    everything = [c.id for c in retention.choose(conn, policy, NOW)]
    assert 10 < len(everything) < 30
    for size in (1, 2, 3, 7):
        paged: list[int] = []
        after = 0
        while True:
            chosen, cut = retention.page(conn, found, after, size)
            paged += [c.id for c in chosen]
            if cut is None:
                break
            after = cut
        assert paged == everything, size
    assert retention.matching(conn, found, [*everything, 1000000]) == set(everything)


# --------------------------------------------------------------------------- deleting


def test_deletion_in_steps_leaves_no_orphan_rows_and_never_reuses_an_id(
    conn: apsw.Connection,
) -> None:
    keep = add(conn, lines=500)
    gone = add(conn, lines=5000)
    begun = retention.begin_delete(conn, [gone, keep + 1000])
    assert begun.ids == [gone] and begun.log_entries == 5000
    # Gone for every reader at once; its rows go a step at a time.
    assert conn.execute("SELECT count(*) FROM executions WHERE id = ?", (gone,)).get == 0
    assert (
        conn.execute("SELECT count(*) FROM execution_params WHERE execution_id = ?", (gone,)).get
        == 0
    )
    steps = 0
    done = False
    while not done:
        deleted, done = retention.delete_pending_logs(conn, 7)
        assert deleted <= 8
        steps += 1
    assert steps >= 50 // 7
    assert log_rows(conn, gone) == 0 and log_rows(conn, keep) == 5
    assert retention.pending(conn) == 0
    # The largest id was deleted: the next execution gets a new one.
    assert add(conn) == gone + 1


def test_one_step_deletes_the_rows_of_several_small_executions(conn: apsw.Connection) -> None:
    small = [add(conn, lines=150) for _ in range(10)]  # two rows each
    retention.begin_delete(conn, small)
    assert retention.delete_pending_logs(conn, 7) == (7, False)  # three whole, one in part
    assert retention.pending(conn) == 7
    assert retention.delete_pending_logs(conn, 1000) == (13, True)
    assert conn.execute("SELECT count(*) FROM execution_logs").get == 0


def test_running_and_queued_executions_are_never_deleted(conn: apsw.Connection) -> None:
    running = add(conn, ended=None, status="Running")
    queued = add(conn, ended=None, status="NotStarted")
    assert retention.begin_delete(conn, [running, queued]).ids == []
    assert conn.execute("SELECT count(*) FROM executions").get == 2


# --------------------------------------------------------------------------- a whole run


def run_retention(path: Path, settings: Settings, request: Request | None = None) -> dict[str, int]:
    async def main() -> dict[str, int]:
        store = await Store.open(path)
        try:
            r = Retention(store, settings, clock=lambda: NOW)
            outcome = await r.prune(request or Request())
            pages = await store.call(upkeep.pages)
            last = await store.call(upkeep.last_run)
            if not outcome.dry_run:
                assert last is not None and last.executions_removed == outcome.count
            return {
                "removed": outcome.count,
                "entries": outcome.log_entries,
                "freed": outcome.bytes_freed,
                "in_use": pages.in_use,
                "free": pages.freelist,
            }
        finally:
            await store.close()

    return trio.run(main)


def test_size_limit_removes_the_oldest_until_under_it_and_gives_the_space_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wfm.db"
    conn = open_database(path)
    ids = [add(conn, ended=NOW - (100 - i) * DAY // 10, lines=2000) for i in range(20)]
    running = add(conn, ended=None, status="Running", lines=2000)
    in_use = upkeep.pages(conn).in_use
    close_database(conn)
    limit = in_use // 2
    settings = Settings(Policy(), max_db_bytes=limit, interval=None)
    dry = run_retention(path, settings, Request(dry_run=True))
    result = run_retention(path, settings)
    assert abs(dry["removed"] - result["removed"]) <= 1, (dry, result)
    assert result["in_use"] <= limit
    assert 9 <= result["removed"] <= 13  # half the pages, less the fixed ones (schema, index)
    assert result["entries"] == result["removed"] * 2000
    assert result["free"] == 0  # incremental vacuum gave every free page back
    assert result["freed"] >= in_use - limit
    conn = open_database(path)
    try:
        left = [r[0] for r in conn.execute("SELECT id FROM executions ORDER BY id")]
        assert left == [*ids[result["removed"] :], running]
        orphans = conn.execute(
            "SELECT count(*) FROM execution_logs WHERE id >> 32 NOT IN (SELECT id FROM executions)"
        ).get
        assert orphans == 0
    finally:
        close_database(conn)


def test_a_dry_run_removes_nothing_and_records_nothing(tmp_path: Path) -> None:
    path = tmp_path / "wfm.db"
    conn = open_database(path)
    for d in (40, 35, 1):
        add(conn, ended=NOW - d * DAY)
    close_database(conn)

    async def main() -> None:
        store = await Store.open(path)
        try:
            r = Retention(store, Settings(Policy(Limits(30 * DAY)), None, None), clock=lambda: NOW)
            outcome = await r.prune(Request(dry_run=True))
            assert outcome.count == len(outcome.removed) == 2 and outcome.log_entries == 20
            assert outcome.bytes_freed == 2 * 10 * 80
            assert await store.call(upkeep.last_run) is None
            counts = await store.call(upkeep.counts_by_status)
            assert counts == {"Completed": 3}
        finally:
            await store.close()

    trio.run(main)


# --------------------------------------------------------------------------- through the daemon


def chatty(workflow_dir: Path, lines: int = 2000) -> None:
    write_workflow(
        workflow_dir,
        "chatty",
        f"""
        for i in range({lines}):
            print(f"line {{i:06d}} " + "x" * 60)
        """,
        metadata("chatty"),
    )
    write_workflow(
        workflow_dir,
        "sleeper",
        """
        print("started", flush=True)
        time.sleep(60)
        """,
        metadata("sleeper"),
    )


def test_prune_delete_and_info_commands(make_daemon: MakeDaemon, workflow_dir: Path) -> None:
    chatty(workflow_dir, lines=100)
    d = make_daemon(["--retention-interval", "0"]).start()
    handles = [d.run_and_wait("chatty") for _ in range(4)]
    with d.client() as client:
        sleeping = client.run("sleeper").handle

        dry = json.loads(d.wfmctl("prune", "--dry-run", "--keep", "2", "--json").stdout)
        assert dry["dry_run"] and dry["executions_removed"] == 3
        assert [e["handle"] for e in dry["executions"]] == handles[:3]
        assert len(client.history().executions) == 5

        refused = d.wfmctl("delete", handles[3], sleeping[:8])
        assert refused.returncode != 0
        assert "Running" in refused.stderr and "nothing was deleted" in refused.stderr
        assert "Traceback" not in refused.stderr

        out = d.wfmctl("prune", "--keep", "2")
        assert out.returncode == 0, out.stderr
        assert "removed 3 execution(s), 300 log entries" in out.stdout
        assert [e.handle for e in client.history().executions] == [sleeping, handles[3]]

        out = d.wfmctl("delete", handles[3])
        assert out.returncode == 0 and "removed 1 execution(s)" in out.stdout
        missing = d.wfmctl("status", handles[3])
        assert missing.returncode != 0 and "no execution" in missing.stderr

        info = json.loads(d.wfmctl("info", "--json").stdout)
        assert info["counts"] == {"Running": 1}
        assert info["oldest"]["handle"] == sleeping
        assert info["last_retention"]["trigger"] == "delete"
        assert info["last_retention"]["executions_removed"] == 1
        assert info["next_retention_at"] is None
        assert info["auto_vacuum"] == "incremental"
        assert info["bytes_in_use"] == (info["page_count"] - info["free_pages"]) * info["page_size"]
        assert info["policy"]["max_age_days"] == 30
        text = d.wfmctl("info").stdout
        assert "last retention" in text and "in use" in text
        client.cancel(sleeping)


def seed_history(path: Path, ages_days: list[float]) -> list[int]:
    """A database with finished executions that ended that many days before now."""
    conn = open_database(path)
    now = trio_now_ms()
    try:
        return [add(conn, ended=now - int(a * DAY)) for a in ages_days]
    finally:
        close_database(conn)


def trio_now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


def test_a_run_follows_start_up_in_the_background_with_the_configured_policy(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    d = make_daemon()
    seed_history(d.database, [400, 100, 40, 20, 1])
    (d.root / "config.toml").write_text(
        "max_age_days = 30\n[retention.workflows.wf]\nmax_age_days = 50\n"
    )
    d.extra_args = ["--config", str(d.root / "config.toml")]
    d.start()
    with d.client() as client:
        for _ in range(500):
            info = client.info()
            if info.last_retention is not None:
                break
            trio.run(trio.sleep, 0.02)
        assert info.last_retention is not None, d.log()
        assert info.last_retention.trigger == "schedule"
        # wf's own age limit (50 days) replaces the global 30: 40 days old stays.
        assert info.last_retention.executions_removed == 2
        assert info.counts == {"Completed": 3}
        assert info.next_retention_at is not None
        assert info.policy["workflows"] == {"wf": {"max_age_days": 50.0, "max_executions": 10000}}


def test_file_size_stays_put_across_fill_and_prune_cycles(
    make_daemon: MakeDaemon, workflow_dir: Path
) -> None:
    chatty(workflow_dir, lines=3000)
    d = make_daemon(["--retention-interval", "0"]).start()
    sizes = []
    with d.client() as client:
        for _ in range(5):
            for _ in range(6):
                d.run_and_wait("chatty")
            while client.ping().search_backlog:  # the same state each time: all indexed
                time.sleep(0.05)
            client.prune(keep=0)
            # The database file's size once checkpointed (the WAL, bounded by checkpoints,
            # is not history).
            info = client.info()
            sizes.append(info.page_count * info.page_size)
            assert info.free_pages == 0
    # Emptied, the file is mostly fixed pages (schema, the search index's structure), whose
    # count moves by a few as the index merges its segments.
    assert max(sizes) <= sizes[0] * 1.1 + 4 * info.page_size, sizes


def test_flags_and_environment_set_the_policy(make_daemon: MakeDaemon) -> None:
    d = make_daemon(["--max-executions", "7"])
    env_before = os.environ.get("WFM_MAX_AGE_DAYS")
    os.environ["WFM_MAX_AGE_DAYS"] = "0"
    try:
        d.start()
    finally:
        if env_before is None:
            del os.environ["WFM_MAX_AGE_DAYS"]
        else:
            os.environ["WFM_MAX_AGE_DAYS"] = env_before
    with d.client() as client:
        policy = client.info().policy
    assert policy["max_executions"] == 7 and policy["max_age_days"] is None


def test_a_negative_limit_is_a_usage_error(make_daemon: MakeDaemon) -> None:
    code, lines, _ = make_daemon(["--max-db-bytes", "-1"]).refusal()
    assert code == 2
    assert any("max_db_bytes must not be negative" in line for line in lines), lines


def test_no_line_is_lost_while_retention_deletes_and_compresses(
    make_daemon: MakeDaemon, workflow_dir: Path
) -> None:
    write_workflow(
        workflow_dir,
        "steady",
        """
        for i in range(6000):
            print(f"line {i}", flush=(i % 50 == 0))
            if i % 500 == 0:
                time.sleep(0.02)
        """,
        metadata("steady"),
    )
    d = make_daemon(["--retention-interval", "0", "--compress-after", "0.001"])
    conn = open_database(d.database)
    try:
        for n in range(12):
            add(conn, ended=trio_now_ms() - DAY * (n + 1), lines=20_000)
    finally:
        close_database(conn)
    d.start()
    with d.client() as client:
        handle = client.run("steady").handle
        reply = client.prune(keep=3)
        assert reply.executions_removed == 10
        ended = client.wait(handle)
        lines = [e.line for e in client.iter_logs(handle, limit=10_000)]
    assert ended.log_count == 6000
    assert lines == [f"line {i}" for i in range(6000)]


def test_warming_reads_through_every_index_of_this_schema(conn: apsw.Connection) -> None:
    eid = add(conn, lines=300)
    names = {"handle": "h", "workflow": "wf", "id": eid, "status": "Completed", "created": NOW}
    for sql in retention._WARM:  # each statement names an index that exists
        conn.execute(sql, names).fetchall()
    retention.warm(conn, [eid, eid + 99])
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
    warmed = {name for sql in retention._WARM for name in indexes if f" {name} " in sql}
    assert warmed == {i for i in indexes if i.startswith("executions_by_")}
