"""Crash safety, proven with real processes: `kill -9` the daemon at random moments.

The chaos loop runs a workflow that prints a recomputable pattern fast on both streams (long
lines, non-ASCII and invalid UTF-8, carriage returns, NUL bytes, empty lines, structured and
malformed events), kills the daemon with SIGKILL at a random moment, restarts it and checks
the database and the client API: integrity, sequence numbers contiguous from 0, every
stored line byte-for-byte what was printed (a gap-free prefix per stream), every
interrupted execution recovered, every queued run started after the restart, and no
workflow process left alive.

The migration test kills the daemon at random moments while it backs up and migrates an
old database, and checks that the database is always at the old or the new schema version,
never in between, with a complete backup whenever it has been migrated.

Two narrower tests pin down, deterministically, two bugs the chaos turned up: a kill between
spawning a child and recording it Running, and entries numbered out of receive order.

Quick forms run in plain `pytest`; `WFM_LONG_TESTS=1` adds the long ones (500 rounds).
Set `WFM_CHAOS_SEED` to replay a run: the seed is in every failure message.
"""

from __future__ import annotations

import faulthandler
import inspect
import itertools
import os
import random
import re
import shutil
import signal
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import apsw
import pytest
from conftest import (
    Daemon,
    MakeDaemon,
    metadata,
    parent_of,
    tagged_pids,
    text_field,
    write_workflow,
)

from wfmctl import WfmError
from wfmctl.client import DISCONNECTED, UNREACHABLE
from wfmctl.protocol import LogEntry
from wfmd.store import now_ms
from wfmd.store.database import Migration, load_migrations

LONG = os.environ.get("WFM_LONG_TESTS") == "1"
long_only = pytest.mark.skipif(not LONG, reason="long form: set WFM_LONG_TESTS=1")

# The daemon's words for an execution it recovered after a crash (wfmd/housekeeping/recovery.py);
# the protocol promises this reason, so the test spells it out rather than importing it.
DIED_REASON = "interrupted: the daemon supervising it died"

SEQ_MASK = (1 << 32) - 1
STDOUT, STDERR = 1, 2

# Runs started per round. With MAX_CONCURRENT below it, some are always queued at the kill.
RUNS_PER_ROUND = 4
MAX_CONCURRENT = 2

# Lines per stream and duration of one run: most runs are still printing at the kill, some
# have finished, and a round's output stays around half a megabyte (the long form writes
# 500 rounds).
RUN_LINES = (50, 1500)
RUN_SECONDS = (0.05, 0.8)

# The kill lands this long after the round's runs were submitted: while they start, print
# and end.
KILL_DELAY = (0.05, 1.0)

# Share of rounds in which the restarted daemon is killed again while it starts up (during
# recovery, discovery or the restart of queued runs), before a final restart.
STARTUP_KILL_SHARE = 0.15
STARTUP_KILL_DELAY = (0.0, 0.35)

# Bounds on the waits: generous for a loaded 2-core machine, and each round re-arms a
# faulthandler watchdog, so a hang shows where it hangs.
STATUS_TIMEOUT = 30.0
STRAY_GRACE = 5.0
ROUND_WATCHDOG = 120.0


# --------------------------------------------------------------------------- the pattern


def pattern_line(tag: bytes, seed: int, n: int) -> bytes:
    """Line `n` (from 0) that the chaos workflow with `seed` prints on stream `tag`
    (b"O" stdout, b"E" stderr), newline included.

    The workflow runs this very function (its source is copied into the workflow file), so
    the test recomputes every line it should find.
    """
    h = (n * 2654435761 + seed * 40503) & 0xFFFFFFFF
    body = b"%s %d %d %08x" % (tag, n, seed, h)
    if tag == b"E" and n % 50 == 49:  # a structured event
        return (
            b'__WF_EVENT__:{"type": "task_progress", "task_id": "chaos", "message": "%s"}\n' % body
        )
    if tag == b"E" and n % 50 == 24:  # the marker, but not an event: kept as raw stderr
        return b'__WF_EVENT__:{"type": "no_such_event", "n": %d}\n' % n
    if tag == b"O" and n % 89 == 88:
        return b"\n"
    if n % 7 == 3:
        body += " é日本語🙂".encode()
    if n % 11 == 4:
        body += b" \xff\xfe\xc3(\x80\x00 invalid"
    if n % 13 == 6:
        body += b" \r"
    if n % 61 == 7:
        body += b" " + (b"%08x" % h) * (125 + h % 1000)  # 1-9 KB
    if n % 997 == 500 and seed % 4 == 0:
        body += b" " + b"L" * 150_000  # longer than a pipe holds
    return body + b"\n"


def is_event_line(tag: bytes, n: int) -> bool:
    return tag == b"E" and n % 50 == 49


CHAOS_WORKFLOW = (
    inspect.getsource(pattern_line)
    + """

def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
seed, total = int(args["--seed"]), int(args["--lines"])
one_write_per_line = args["--style"] == "line"
steps = max(1, int(float(args["--duration"]) / 0.005))
streams = [(1, b"O"), (2, b"E")]
done = {1: 0, 2: 0}
for step in range(1, steps + 1):
    target = total * step // steps
    for fd, tag in streams if step % 2 else streams[::-1]:
        lines = [pattern_line(tag, seed, n) for n in range(done[fd], target)]
        if one_write_per_line:
            for line in lines:
                write_all(fd, line)
        else:
            write_all(fd, b"".join(lines))
        done[fd] = target
    time.sleep(0.005)
"""
)

CHAOS_METADATA = metadata(
    "chaos_printer",
    text_field("seed", required=True),
    text_field("lines", required=True),
    text_field("duration", required=True),
    text_field("style", required=True),
)


# --------------------------------------------------------------------------- bookkeeping


@dataclass
class Run:
    handle: str
    seed: int
    lines: int  # per stream


@dataclass
class Stats:
    rounds: int = 0
    startup_kills: int = 0
    executions_verified: int = 0
    completed: int = 0
    recovered: int = 0
    queued_at_kill: int = 0
    lines_db: int = 0  # lines compared byte for byte in execution_logs
    lines_api: int = 0  # entries compared through the client's paged `logs`
    round_seconds: list[float] = field(default_factory=list)
    verify_seconds: list[float] = field(default_factory=list)

    def summary(self) -> str:
        times = sorted(self.round_seconds) or [0.0]
        return (
            f"{self.rounds} rounds survived ({self.startup_kills} extra kills during start-up); "
            f"{self.executions_verified} executions verified ({self.completed} completed, "
            f"{self.recovered} recovered after a crash, {self.queued_at_kill} queued at a kill "
            f"and run after the restart); {self.lines_db} lines verified byte for byte in the "
            f"database, {self.lines_api} through the client API; per round: mean "
            f"{sum(times) / len(times):.2f} s, median {times[len(times) // 2]:.2f} s, max "
            f"{times[-1]:.2f} s (verification mean "
            f"{sum(self.verify_seconds) / max(1, len(self.verify_seconds)):.2f} s)"
        )


def open_readonly(path: Path) -> sqlite3.Connection:
    """The stdlib sqlite3 module, read-only: what a user poking at the database would do."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)


def integrity(conn: sqlite3.Connection) -> list[str]:
    return [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]


@dataclass
class Row:
    """An executions row, as stored."""

    id: int
    handle: str
    status: str
    reason: str | None
    created_at: int
    started_at: int | None
    ended_at: int | None
    exit_code: int | None
    signal: int | None
    log_count: int


EXECUTION_COLUMNS = (
    "id, handle, status, reason, created_at, started_at, ended_at, exit_code, signal, log_count"
)


def verify_stored_log(
    conn: sqlite3.Connection, row: Row, run: Run, context: str
) -> tuple[dict[int, int], int | None, int | None]:
    """Check one execution's execution_logs rows; returns lines per stream, the ts of the
    last entry and the latest ts of any entry."""
    lo = row.id << 32
    seq = 0
    count = {STDOUT: 0, STDERR: 0}
    last_ts: int | None = None
    max_ts: int | None = None
    where = f"{context}, execution {row.handle} (id {row.id}, seed {run.seed})"
    for key, stream, ts, lines, event, data in conn.execute(
        "SELECT id, stream, ts, lines, event, data FROM execution_logs"
        " WHERE id BETWEEN ? AND ? ORDER BY id",
        (lo, lo | SEQ_MASK),
    ):
        first = key & SEQ_MASK
        assert first == seq, f"{where}: row starts at seq {first}, expected {seq} (gap/dup)"
        assert stream in (STDOUT, STDERR), f"{where}: seq {first}: stream {stream}"
        assert lines >= 1, f"{where}: seq {first}: {lines} lines"
        assert isinstance(data, bytes), f"{where}: seq {first}: data is {type(data)}"
        assert data.endswith(b"\n") and data.count(b"\n") == lines, (
            f"{where}: seq {first}: {lines} lines, data ends {data[-40:]!r}"
        )
        tag = b"O" if stream == STDOUT else b"E"
        pos = 0
        for k in range(lines):
            n = count[stream]
            expected = pattern_line(tag, run.seed, n)
            got = data[pos : pos + len(expected)]
            assert got == expected, (
                f"{where}: seq {first + k} ({tag.decode()} line {n}): stored {got[:120]!r}, "
                f"printed {expected[:120]!r}"
            )
            if event is None:
                assert not is_event_line(tag, n), f"{where}: seq {first + k}: event stored raw"
            else:
                assert lines == 1 and event == "task_progress" and is_event_line(tag, n), (
                    f"{where}: seq {first + k}: row of {lines} lines marked event {event!r}"
                )
            pos += len(expected)
            count[stream] = n + 1
        assert pos == len(data), f"{where}: seq {first}: trailing bytes {data[pos:][:80]!r}"
        # Numbered as received: receive times never go backwards along the sequence.
        assert last_ts is None or ts >= last_ts, (
            f"{where}: seq {first} received at {ts}, before seq {seq - 1} ({last_ts})"
        )
        seq += lines
        last_ts = ts
        max_ts = ts if max_ts is None else max(max_ts, ts)
    assert seq == row.log_count, f"{where}: {seq} entries stored, log_count {row.log_count}"
    return count, last_ts, max_ts


def verify_api_log(daemon: Daemon, row: Row, run: Run, rng: random.Random, context: str) -> int:
    """Page through the execution's log with the client API; returns entries checked."""
    where = f"{context}, execution {row.handle} (seed {run.seed}) via the client API"
    count = {"stdout": 0, "stderr": 0}
    expected_seq = 0
    after: int | None = None
    with daemon.client() as client:
        status = client.status(row.handle)
        assert status.status == row.status and status.reason == row.reason, where
        assert status.log_count == row.log_count, where
        assert status.ended_at == (None if row.ended_at is None else row.ended_at / 1000), where
        while True:
            page = client.logs(row.handle, after=after, limit=rng.choice([97, 1000, 4096]))
            entry: LogEntry
            for entry in page.entries:
                assert entry.seq == expected_seq, (
                    f"{where}: seq {entry.seq}, expected {expected_seq}"
                )
                tag = b"O" if entry.stream == "stdout" else b"E"
                n = count[entry.stream]
                printed = pattern_line(tag, run.seed, n)
                assert entry.line == printed[:-1].decode("utf-8", "replace"), (
                    f"{where}: seq {entry.seq}: {entry.line[:100]!r} != {printed[:100]!r}"
                )
                if is_event_line(tag, n):
                    assert entry.type == "task_progress", f"{where}: seq {entry.seq}"
                    assert entry.event is not None and entry.event["task_id"] == "chaos", where
                else:
                    assert entry.type == "raw_output" and entry.event is None, where
                count[entry.stream] = n + 1
                expected_seq += 1
            if page.finished:
                break
            assert page.entries, f"{where}: empty page after {after}, not finished"
            after = page.next_after
    assert expected_seq == row.log_count, where
    return expected_seq


def execution_pids(tag: str) -> dict[int, str]:
    """Live (non-zombie) processes of this daemon's workflows: pid -> execution handle."""
    found = {}
    for pid in tagged_pids(tag):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"WFM_EXECUTION_ID="):
                found[pid] = item.split(b"=", 1)[1].decode()
    return found


def assert_no_strays(daemon: Daemon, context: str) -> None:
    """No process of an execution the running daemon does not supervise may be alive.

    A recovered execution's processes were SIGKILLed before the daemon became ready; give
    the kernel a moment to finish them off.
    """
    deadline = time.monotonic() + STRAY_GRACE
    while True:
        pids = execution_pids(daemon.tag)
        if not pids:
            return
        with closing(open_readonly(daemon.database)) as conn:
            running = {
                handle
                for (handle,) in conn.execute(
                    "SELECT handle FROM executions WHERE status = 'Running'"
                )
            }
        strays = {pid: handle for pid, handle in pids.items() if handle not in running}
        if not strays:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{context}: processes of ended executions alive: {strays}")
        time.sleep(0.05)


def start_after_kill(daemon: Daemon) -> None:
    """`daemon.start()`, tolerating a connection reset while it starts.

    A daemon SIGKILLed while it forks a workflow child leaves its listening socket open in
    that child for the instant between fork and exec: a client that connects then is
    queued on a socket nobody will accept, and is reset when the child closes it (seen 2
    times in 60 kills during spawns). `Daemon.wait_ready` takes that for a failed start.
    """
    daemon.start(wait=False)
    assert daemon.proc is not None
    deadline = time.monotonic() + STATUS_TIMEOUT
    while True:
        assert daemon.proc.poll() is None, f"wfmd exited {daemon.proc.returncode}:\n{daemon.log()}"
        try:
            with daemon.client(timeout=5) as client:
                client.ping()
            return
        except WfmError as exc:
            if exc.code not in (UNREACHABLE, DISCONNECTED):
                raise
        assert time.monotonic() < deadline, f"wfmd not ready:\n{daemon.log()[-5000:]}"
        time.sleep(0.02)


# --------------------------------------------------------------------------- the chaos loop


class Chaos:
    def __init__(self, daemon: Daemon, rng: random.Random, seed: int) -> None:
        self.daemon = daemon
        self.rng = rng
        self.seed = seed
        self.runs: dict[str, Run] = {}
        self.verified: set[str] = set()
        self.stats = Stats()

    def context(self, round_no: int | str) -> str:
        return f"[WFM_CHAOS_SEED={self.seed} round {round_no}]"

    def submit(self, count: int) -> None:
        rng = self.rng
        with self.daemon.client() as client:
            for _ in range(count):
                seed = rng.getrandbits(31)
                lines = rng.randint(*RUN_LINES)
                params = {
                    "seed": str(seed),
                    "lines": str(lines),
                    "duration": f"{rng.uniform(*RUN_SECONDS):.3f}",
                    "style": rng.choice(["line", "batch"]),
                }
                execution = client.run("chaos_printer", params)
                self.runs[execution.handle] = Run(execution.handle, seed, lines)

    def wait_started(self, handles: set[str], context: str) -> None:
        """Runs queued when the daemon died must run after its restart."""
        deadline = time.monotonic() + STATUS_TIMEOUT
        waiting = set(handles)
        with self.daemon.client() as client:
            while waiting:
                for handle in sorted(waiting):
                    execution = client.status(handle)
                    if execution.started_at is not None:
                        waiting.discard(handle)
                if waiting:
                    assert time.monotonic() < deadline, (
                        f"{context}: runs queued at the kill never started: {sorted(waiting)}"
                    )
                    time.sleep(0.02)

    def kill_and_restart(self) -> int:
        """SIGKILL the daemon, sometimes again during its start-up; returns the time (ms)
        of the last kill, after it took effect."""
        daemon = self.daemon
        daemon.kill9()
        killed_at = now_ms()
        if self.rng.random() < STARTUP_KILL_SHARE:
            daemon.start(wait=False)
            time.sleep(self.rng.uniform(*STARTUP_KILL_DELAY))
            daemon.kill9()
            killed_at = now_ms()
            self.stats.startup_kills += 1
        start_after_kill(daemon)
        return killed_at

    def verify(self, context: str, killed_at: int | None) -> set[str]:
        """Check the database after a restart (or at the end, `killed_at` None).

        Returns the handles of runs that were queued when the daemon was killed.
        """
        started = time.monotonic()
        queued: set[str] = set()
        to_check: list[Row] = []
        with closing(open_readonly(self.daemon.database)) as conn:
            assert integrity(conn) == ["ok"], f"{context}: {integrity(conn)}"
            conn.execute("BEGIN")  # one snapshot for everything below
            rows = [
                Row(*r)
                for r in conn.execute(f"SELECT {EXECUTION_COLUMNS} FROM executions ORDER BY id")
            ]
            assert {r.handle for r in rows} == set(self.runs), f"{context}: executions differ"
            for row in rows:
                where = f"{context}, execution {row.handle}"
                if killed_at is not None and row.created_at < killed_at:
                    if row.started_at is None or row.started_at >= killed_at:
                        queued.add(row.handle)  # NotStarted when the daemon died
                        assert row.reason != DIED_REASON, f"{where}: a queued run was failed"
                    elif row.status == "Running":
                        raise AssertionError(
                            f"{where}: left Running by the killed daemon, not recovered"
                        )
                if row.status in ("Running", "NotStarted") or row.handle in self.verified:
                    continue
                to_check.append(row)
                self.check_ended(conn, row, context, killed_at)
            conn.execute("COMMIT")
        for row in to_check:
            self.stats.lines_api += verify_api_log(
                self.daemon, row, self.runs[row.handle], self.rng, context
            )
            self.verified.add(row.handle)
            self.stats.executions_verified += 1
        assert_no_strays(self.daemon, context)
        self.stats.verify_seconds.append(time.monotonic() - started)
        return queued

    def check_ended(
        self, conn: sqlite3.Connection, row: Row, context: str, killed_at: int | None
    ) -> None:
        run = self.runs[row.handle]
        where = f"{context}, execution {row.handle}"
        count, last_ts, max_ts = verify_stored_log(conn, row, run, context)
        self.stats.lines_db += row.log_count
        assert row.ended_at is not None and row.started_at is not None, where
        assert row.ended_at >= row.started_at >= row.created_at, where
        if row.status == "Completed":
            assert row.exit_code == 0 and row.reason == "exited with status 0", where
            assert count == {STDOUT: run.lines, STDERR: run.lines}, (
                f"{where}: Completed with {count} lines, printed {run.lines} per stream"
            )
            self.stats.completed += 1
        else:
            assert row.status == "Failed", f"{where}: ended {row.status}: {row.reason}"
            assert row.reason is not None and row.reason.startswith(DIED_REASON), (
                f"{where}: Failed for another reason: {row.reason!r}"
            )
            assert killed_at is None or row.started_at < killed_at, where
            assert row.exit_code is None and row.signal is None, where
            assert count[STDOUT] <= run.lines and count[STDERR] <= run.lines, where
            if last_ts is not None:
                assert row.ended_at >= last_ts, (
                    f"{where}: recovered with ended_at {row.ended_at} before its last log"
                    f" entry ({last_ts})"
                )
                assert max_ts is not None and row.ended_at >= max_ts, (
                    f"{where}: recovered with ended_at {row.ended_at} before a log entry"
                    f" received at {max_ts}"
                )
            self.stats.recovered += 1

    def wait_all_ended(self, context: str) -> None:
        deadline = time.monotonic() + STATUS_TIMEOUT
        with self.daemon.client() as client:
            for handle in self.runs:
                while client.status(handle).ended_at is None:
                    assert time.monotonic() < deadline, f"{context}: {handle} never ended"
                    time.sleep(0.02)


def chaos_seed() -> int:
    return int(os.environ.get("WFM_CHAOS_SEED") or random.SystemRandom().getrandbits(32))


@pytest.mark.parametrize(
    "rounds",
    [
        pytest.param(20, id="quick"),
        pytest.param(500, id="long", marks=[pytest.mark.slow, long_only]),
    ],
)
def test_kill9_chaos(make_daemon: MakeDaemon, workflow_dir: Path, rounds: int) -> None:
    seed = chaos_seed()
    rng = random.Random(seed)
    write_workflow(workflow_dir, "chaos_printer", CHAOS_WORKFLOW, CHAOS_METADATA)
    daemon = make_daemon(extra_args=["--max-concurrent", str(MAX_CONCURRENT)])
    daemon.workflow_dirs = [workflow_dir]  # no example workflows to probe at every start
    daemon.start()
    chaos = Chaos(daemon, rng, seed)
    queued: set[str] = set()
    began = time.monotonic()
    try:
        for round_no in range(1, rounds + 1):
            faulthandler.dump_traceback_later(ROUND_WATCHDOG)
            context = chaos.context(round_no)
            round_started = time.monotonic()
            chaos.wait_started(queued, context)
            chaos.submit(RUNS_PER_ROUND)
            time.sleep(rng.uniform(*KILL_DELAY))
            killed_at = chaos.kill_and_restart()
            queued = chaos.verify(context, killed_at)
            chaos.stats.queued_at_kill += len(queued)
            chaos.stats.rounds += 1
            chaos.stats.round_seconds.append(time.monotonic() - round_started)
        faulthandler.dump_traceback_later(ROUND_WATCHDOG)
        context = chaos.context("final")
        chaos.wait_started(queued, context)
        chaos.wait_all_ended(context)
        chaos.verify(context, None)
        assert chaos.verified == set(chaos.runs)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert daemon.stop() == 0, daemon.log()
    assert not tagged_pids(daemon.tag)
    assert "Traceback" not in daemon.log(), daemon.log()[-5000:]
    print(
        f"\nchaos {rounds} rounds, seed {seed}: {chaos.stats.summary()}; "
        f"total {time.monotonic() - began:.1f} s"
    )


# --------------------------------------------------------------------------- kill during migration

# The old database: enough rows that the backup and the migration take a measurable time
# (tenths of a second on the 2-core CI machine), so random kills land inside both.
OLD_EXECUTIONS = 200
OLD_LOG_ROWS_PER_EXECUTION = 1000  # 200,000 execution_logs rows, ~35 MB
OLD_PARAMS_PER_EXECUTION = 2

# Where a kill is aimed: anywhere in the start-up, while the backup is being written, or
# once the backup is complete (the migration itself).
KILL_AIMS = ("anywhere", "backup", "migration")

BACKUP_NAME = re.compile(r"^wfm\.db\.v(\d+)-\d{8}T\d{6}\.bak$")


@dataclass(frozen=True)
class Fingerprint:
    executions: int
    params: int
    log_rows: int
    log_bytes: int
    log_key_sum: int


def fingerprint(conn: sqlite3.Connection) -> Fingerprint:
    """What must survive any migration unchanged (a migration that rewrites these tables
    must teach this function how to read the new shape)."""
    (executions,) = conn.execute("SELECT count(*) FROM executions").fetchone()
    (params,) = conn.execute("SELECT count(*) FROM execution_params").fetchone()
    rows, size, keys = conn.execute(
        "SELECT count(*), sum(length(data)), sum(id) FROM execution_logs"
    ).fetchone()
    return Fingerprint(executions, params, rows, size or 0, keys or 0)


Schema = list[tuple[str, str, str, str | None]]
SCHEMA_QUERY = (
    "SELECT type, name, tbl_name, sql FROM sqlite_schema"
    " WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
)


def schema_of(conn: sqlite3.Connection | apsw.Connection) -> Schema:
    """The schema objects the migrations create (SQLite's own sqlite_* tables aside)."""
    return [(row[0], row[1], row[2], row[3]) for row in conn.execute(SCHEMA_QUERY)]


def schema_version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(version)


def old_log_line(execution: int, seq: int) -> bytes:
    return b"old run %d line %d %s\n" % (execution, seq, b"x" * (100 + (seq * 7) % 90))


def apply_migrations(conn: apsw.Connection, migrations: list[Migration]) -> None:
    """As wfmd's `_migrate` does: each migration in one transaction with its version row."""
    for migration in migrations:
        with conn:
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, now_ms()),
            )


def build_old_database(path: Path, old: list[Migration]) -> None:
    """A database as an older wfm left it: only the `old` migrations, full of history."""
    conn = apsw.Connection(str(path))
    try:
        # As wfmd creates a database: auto_vacuum before the first table and before WAL.
        conn.pragma("auto_vacuum", "INCREMENTAL")
        conn.pragma("journal_mode", "wal")
        apply_migrations(conn, old)
        start = 1_700_000_000_000
        with conn:
            for e in range(1, OLD_EXECUTIONS + 1):
                created = start + e * 10_000
                conn.execute(
                    "INSERT INTO executions (id, handle, workflow_id, status, reason, created_at,"
                    " started_at, ended_at, exit_code, log_count, argv)"
                    " VALUES (?, ?, 'old_workflow', 'Completed', 'exited with status 0',"
                    " ?, ?, ?, 0, ?, ?)",
                    (
                        e,
                        f"{e:08x}-0000-4000-8000-{e:012x}",
                        created,
                        created + 5,
                        created + 9_000,
                        OLD_LOG_ROWS_PER_EXECUTION,
                        f'["/bin/old", "--n", "{e}"]',
                    ),
                )
                conn.executemany(
                    "INSERT INTO execution_params (execution_id, position, name, value)"
                    " VALUES (?, ?, ?, ?)",
                    [(e, p, f"p{p}", f"value {e}.{p}") for p in range(OLD_PARAMS_PER_EXECUTION)],
                )
                conn.executemany(
                    "INSERT INTO execution_logs (id, stream, ts, lines, event, data)"
                    " VALUES (?, ?, ?, 1, NULL, ?)",
                    (
                        ((e << 32) | s, 1 + s % 2, created + 5 + s, old_log_line(e, s))
                        for s in range(OLD_LOG_ROWS_PER_EXECUTION)
                    ),
                )
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
    finally:
        conn.close()


def reference_schemas(migrations: list[Migration]) -> dict[int, Schema]:
    """The exact schema at each version, from the migrations applied to an empty database."""
    schemas = {}
    conn = apsw.Connection(":memory:")
    try:
        for migration in migrations:
            apply_migrations(conn, [migration])
            schemas[migration.version] = schema_of(conn)
    finally:
        conn.close()
    return schemas


class MigrationChaos:
    def __init__(
        self, migrations: list[Migration], old_version: int, pristine: Fingerprint, seed: int
    ) -> None:
        self.latest = migrations[-1].version
        self.old_version = old_version
        self.schemas = reference_schemas(migrations)
        self.pristine = pristine
        self.seed = seed
        self.outcomes: dict[str, int] = {}  # phase killed in -> state found, how often
        self.kill_seconds: list[float] = []

    def check_copy(self, path: Path, where: str) -> int:
        """A database (or a backup) is whole, at one exact schema version, with every row;
        returns its version."""
        with closing(open_readonly(path)) as conn:
            assert integrity(conn) == ["ok"], f"{where}: {path.name}: {integrity(conn)}"
            conn.execute("BEGIN")
            version = schema_version(conn)
            assert self.old_version <= version <= self.latest, f"{where}: version {version}"
            assert schema_of(conn) == self.schemas[version], (
                f"{where}: {path.name} says version {version} but its schema is not exactly"
                " that version's (a half-applied migration)"
            )
            assert fingerprint(conn) == self.pristine, f"{where}: {path.name}: rows differ"
            conn.execute("COMMIT")
        return version

    def check_after_kill(self, directory: Path, where: str) -> int:
        version = self.check_copy(directory / "wfm.db", where)
        if self.latest - self.old_version == 1:
            assert version in (self.old_version, self.latest), where  # never in between
        backups: dict[int, list[Path]] = {}
        for path in directory.iterdir():
            match = BACKUP_NAME.match(path.name)
            if match:
                backups.setdefault(int(match[1]), []).append(path)
            elif path.name.startswith("wfm.db") and ".bak" in path.name:
                # Left by a kill during the backup: allowed, never taken for a backup.
                assert ".bak.partial" in path.name, f"{where}: unexpected {path.name}"
        for backup_version, paths in backups.items():
            for path in paths:
                # Only ever renamed into place once complete: a whole copy of the old version.
                assert self.check_copy(path, where) == backup_version, f"{where}: {path.name}"
        if version > self.old_version:
            assert self.old_version in backups, (
                f"{where}: migrated to version {version} without a complete backup of version"
                f" {self.old_version}: {sorted(p.name for p in directory.iterdir())}"
            )
        return version

    @staticmethod
    def phase(daemon: Daemon, began_ns: int) -> str:
        """How far a start-up has come, as seen from outside: "starting", "backup" (a
        `.partial` written since `began_ns`), "migration" (a complete backup written since),
        "listening" (the socket exists)."""
        if daemon.socket.exists():
            return "listening"
        phase = "starting"
        for path in daemon.root.iterdir():
            if ".bak" not in path.name:
                continue
            try:
                fresh = path.stat().st_mtime_ns >= began_ns - 10_000_000  # coarse mtimes
            except FileNotFoundError:
                continue  # renamed under our feet
            if fresh and BACKUP_NAME.match(path.name):
                return "migration"
            if fresh and path.name.endswith(".bak.partial"):
                phase = "backup"
        return phase

    def calibrate(self, daemon: Daemon) -> dict[str, float]:
        """One undisturbed start: when each phase was first seen, in seconds from the spawn."""
        began_ns = time.time_ns()
        began = time.monotonic()
        seen: dict[str, float] = {}
        daemon.start(wait=False)
        assert daemon.proc is not None
        while "listening" not in seen:
            assert daemon.proc.poll() is None, daemon.log()
            assert time.monotonic() - began < STATUS_TIMEOUT, daemon.log()
            seen.setdefault(self.phase(daemon, began_ns), time.monotonic() - began)
            time.sleep(0.001)
        daemon.wait_ready()
        seen["ready"] = time.monotonic() - began
        assert "migration" in seen, f"no backup seen while migrating: {seen}"
        seen.setdefault("backup", seen["migration"])
        return seen

    def start_and_kill(
        self, daemon: Daemon, aim: str, rng: random.Random, timing: dict[str, float]
    ) -> str:
        """Start wfmd and SIGKILL it: at a random moment of its start-up ("anywhere"), or a
        random moment after the backup ("backup") or the migration ("migration") was seen to
        begin, within that phase's calibrated length. Returns the phase it was killed in."""
        began_ns = time.time_ns()
        began = time.monotonic()
        end = began + STATUS_TIMEOUT
        kill_at: float | None = None
        if aim == "anywhere":
            kill_at = began + rng.uniform(0.0, timing["ready"])
        length = {
            "backup": timing["migration"] - timing["backup"],
            "migration": timing["listening"] - timing["migration"],
        }
        daemon.start(wait=False)
        assert daemon.proc is not None
        while True:
            assert daemon.proc.poll() is None, f"wfmd exited {daemon.proc.returncode}"
            now = time.monotonic()
            phase = self.phase(daemon, began_ns)
            if aim != "anywhere" and phase == aim and kill_at is None:
                kill_at = now + rng.uniform(0.0, length[aim])
            if (kill_at is not None and now >= kill_at) or now > end or phase == "listening":
                break
            time.sleep(0.001)
        daemon.kill9()
        self.kill_seconds.append(time.monotonic() - began)
        return phase

    def verify_with_client(self, daemon: Daemon, where: str) -> int:
        """After a clean start: every old execution and every line is served as before."""
        handles = []
        entries = 0
        with daemon.client() as client:
            before = None
            while True:
                history = client.history(limit=100, before=before)
                handles += [e.handle for e in history.executions]
                if history.next_before is None:
                    break
                before = history.next_before
            assert len(handles) == OLD_EXECUTIONS, f"{where}: {len(handles)} executions"
            for handle in handles:
                e = int(handle[:8], 16)
                execution = client.status(handle)
                assert execution.status == "Completed", where
                assert execution.log_count == OLD_LOG_ROWS_PER_EXECUTION, where
                assert execution.params == {
                    f"p{p}": f"value {e}.{p}" for p in range(OLD_PARAMS_PER_EXECUTION)
                }, where
                page = client.logs(handle, limit=OLD_LOG_ROWS_PER_EXECUTION)
                assert page.finished, where
                lines = [entry.line for entry in page.entries]
                assert lines == [
                    old_log_line(e, s)[:-1].decode() for s in range(OLD_LOG_ROWS_PER_EXECUTION)
                ], f"{where}: {handle}"
                entries += len(lines)
        return entries


@pytest.mark.parametrize(
    ("chains", "kills_per_chain"),
    [
        pytest.param(3, 3, id="quick"),
        pytest.param(20, 4, id="long", marks=[pytest.mark.slow, long_only]),
    ],
)
def test_kill_during_migration(
    make_daemon: MakeDaemon,
    workflow_dir: Path,
    tmp_path: Path,
    chains: int,
    kills_per_chain: int,
) -> None:
    migrations = load_migrations()
    if len(migrations) < 2:
        pytest.skip("needs two migrations")
    seed = chaos_seed()
    rng = random.Random(seed)
    old_version = 1  # the schema of 0001 is the one build_old_database knows how to fill
    pristine_path = tmp_path / "pristine.db"
    built = time.monotonic()
    build_old_database(pristine_path, migrations[:old_version])
    with closing(open_readonly(pristine_path)) as conn:
        pristine = fingerprint(conn)
    assert pristine.log_rows == OLD_EXECUTIONS * OLD_LOG_ROWS_PER_EXECUTION
    build_seconds = time.monotonic() - built
    chaos = MigrationChaos(migrations, old_version, pristine, seed)

    def fresh_chain(name: str) -> Daemon:
        directory = tmp_path / name
        directory.mkdir()
        shutil.copyfile(pristine_path, directory / "wfm.db")
        # The old history is years old: retention and compression would change the rows
        # this test compares, so they stay off.
        no_retention = ["--retention-interval", "0", "--compress-after", "0"]
        daemon = make_daemon(extra_args=no_retention, root=directory)
        daemon.workflow_dirs = [workflow_dir]
        return daemon

    # Calibration: one undisturbed start, timed, sets the windows the kills aim into.
    daemon = fresh_chain("calibration")
    timing = chaos.calibrate(daemon)
    assert daemon.stop() == 0, daemon.log()
    where = f"[WFM_CHAOS_SEED={seed} calibration]"
    assert chaos.check_after_kill(daemon.root, where) == chaos.latest

    entries = 0
    for chain in range(chains):
        daemon = fresh_chain(f"chain{chain}")
        for kill in range(kills_per_chain):
            where = f"[WFM_CHAOS_SEED={seed} chain {chain} kill {kill}]"
            aim = KILL_AIMS[(chain + kill) % len(KILL_AIMS)]
            landed = chaos.start_and_kill(daemon, aim, rng, timing)
            version = chaos.check_after_kill(daemon.root, f"{where} aimed {aim}, landed {landed}")
            backed_up = any(BACKUP_NAME.match(p.name) for p in daemon.root.iterdir())
            outcome = f"killed in {landed}: v{version}{', backup' if backed_up else ''}"
            chaos.outcomes[outcome] = chaos.outcomes.get(outcome, 0) + 1
            if version == chaos.latest:
                break  # migrated: later starts have nothing left to interrupt
        where = f"[WFM_CHAOS_SEED={seed} chain {chain} clean start]"
        start_after_kill(daemon)
        assert chaos.check_after_kill(daemon.root, where) == chaos.latest
        entries += chaos.verify_with_client(daemon, where)
        assert daemon.stop() == 0, daemon.log()
        assert chaos.check_after_kill(daemon.root, where) == chaos.latest
        assert "Traceback" not in daemon.log(), daemon.log()[-5000:]
    kills = sum(chaos.outcomes.values())
    phases = ", ".join(f"{phase} {at:.2f}" for phase, at in timing.items())
    print(
        f"\nmigration kills, seed {seed}: {pristine.log_rows} log rows"
        f" ({pristine_path.stat().st_size / 1e6:.0f} MB, built in {build_seconds:.1f} s);"
        f" undisturbed start, phases first seen at (s): {phases}; {kills} kills in {chains}"
        f" chains: {dict(sorted(chaos.outcomes.items()))}; {entries} log entries verified"
        " through the client after the clean starts"
    )


# --------------------------------------------------------------------------- the spawn window


def probing(tag: str) -> bool:
    """True while the daemon with `tag` runs a `--workflow-metadata` probe."""
    for pid in tagged_pids(tag):
        try:
            if b"--workflow-metadata" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def kill_while_starting_queued_run(daemon: Daemon, *, locked: bool) -> tuple[str, list[int]]:
    """Queue a run, restart the daemon so that it starts the run, and SIGKILL it: as soon as
    the run's child is alive or, with `locked`, while a user's `sqlite3` holds a write
    transaction (taken while the daemon probes the workflows, after recovery and before it
    starts queued runs) for LOCK_HOLD. Returns the run's handle and the children seen."""
    daemon.start()
    with daemon.client() as client:
        client.run("sleeper")  # holds the one slot...
        queued = client.run("sleeper").handle  # ...so this one waits
        assert client.status(queued).status == "NotStarted"
    assert daemon.stop() == 0  # the first is cancelled; the queued run stays NotStarted
    with closing(sqlite3.connect(daemon.database, isolation_level=None)) as user:
        began = time.monotonic()
        daemon.start(wait=False)
        assert daemon.proc is not None
        if locked:
            while not probing(daemon.tag):
                assert daemon.proc.poll() is None, daemon.log()
                assert time.monotonic() - began < STATUS_TIMEOUT, daemon.log()
                time.sleep(0.001)
            user.execute("BEGIN IMMEDIATE")
            locked_at = time.monotonic()
        children: list[int] = []
        while not (children := [p for p, h in execution_pids(daemon.tag).items() if h == queued]):
            assert daemon.proc.poll() is None, daemon.log()
            assert time.monotonic() - began < STATUS_TIMEOUT, daemon.log()
            if locked and time.monotonic() - locked_at > LOCK_HOLD:
                break
            time.sleep(0.001)
        daemon.kill9()
        if locked:
            user.execute("ROLLBACK")
    return queued, children


# How long the user's write transaction is held while the daemon tries to start a run.
LOCK_HOLD = 1.0


@pytest.mark.parametrize("locked", [False, True], ids=["at-spawn", "database-locked"])
def test_kill9_while_starting_a_run(
    make_daemon: MakeDaemon, workflow_dir: Path, locked: bool
) -> None:
    """A kill between committing Running, spawning the child and recording its pid neither
    leaves the child alive nor runs the execution twice. (A daemon that spawned the child
    before the commit would leave it alive for ever after a kill in between, and run the
    execution again beside it once restarted.) A user's write transaction stretches the window
    from milliseconds to the busy timeout."""
    write_workflow(workflow_dir, "sleeper", "time.sleep(3600)\n", metadata("sleeper"))
    daemon = make_daemon(extra_args=["--max-concurrent", "1"])
    daemon.workflow_dirs = [workflow_dir]
    try:
        queued, children = kill_while_starting_queued_run(daemon, locked=locked)
        start_after_kill(daemon)
        assert daemon.proc is not None
        deadline = time.monotonic() + STRAY_GRACE
        while True:
            alive = [p for p, h in execution_pids(daemon.tag).items() if h == queued]
            strays = [p for p in alive if parent_of(p) != daemon.proc.pid]
            if not strays or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert not strays, (
            f"the child {children} of execution {queued}, spawned by the daemon that was"
            f" killed, is still alive after the restart (processes now: {alive})"
        )
        with daemon.client() as client:
            execution = client.status(queued)
        if children:  # it ran once: it must not run again
            assert execution.status == "Failed", execution
            assert (execution.reason or "").startswith(DIED_REASON), execution
            assert not alive, f"execution {queued} runs a second time: {alive}"
        else:  # it never ran: it runs now, once
            assert execution.status == "Running", execution
            # Running is committed before the spawn: the child may not exist quite yet.
            deadline = time.monotonic() + STRAY_GRACE
            while not alive and time.monotonic() < deadline:
                time.sleep(0.01)
                alive = [p for p, h in execution_pids(daemon.tag).items() if h == queued]
            assert len(alive) == 1, f"execution {queued}: processes {alive}"
    finally:
        # Leave nothing behind, whatever the outcome: the fixture checks.
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
        for pid in execution_pids(daemon.tag):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- receive order

INTERLEAVER = """
event = b'__WF_EVENT__:{"type": "task_progress", "task_id": "t", "message": "m"}\\n'
deadline = time.monotonic() + 1.5
i = 0
while time.monotonic() < deadline:
    os.write(2, b"err %d a\\n" % i + event + b"err %d b\\n" % i)
    os.write(1, b"out %d\\n" % i)
    i += 1
    if i % 50 == 0:
        time.sleep(0.001)
"""


def test_seq_order_is_receive_order(make_daemon: MakeDaemon, workflow_dir: Path) -> None:
    """Both streams share one sequence, numbered as received, with the receive time: along the
    sequence numbers, receive times never go backwards. (A read holding an event once went
    on as several channel items, and the other stream's next read could get in between:
    entries were numbered out of receive order, and recovery, which takes the last entry's
    time as the end, could end an execution before one of its entries was received.)"""
    write_workflow(workflow_dir, "interleaver", INTERLEAVER, metadata("interleaver"))
    daemon = make_daemon()
    daemon.workflow_dirs = [workflow_dir]
    daemon.start()
    ended, entries = daemon.run_to_end("interleaver")
    assert ended.status == "Completed", ended
    backwards = [
        (earlier.seq, earlier.stream, earlier.ts, later.seq, later.stream, later.ts)
        for earlier, later in itertools.pairwise(entries)
        if later.ts < earlier.ts
    ]
    assert not backwards, (
        f"{len(backwards)} of {len(entries)} entries were received before the entry numbered"
        f" just before them, e.g. (seq, stream, ts, next seq, stream, ts): {backwards[:3]}"
    )


# --------------------------------------------------------------------------- kill during prune

# A history big enough that a prune (archive, deletion in steps, compression, vacuum) takes
# a good fraction of a second on the 2-core machine, so random kills land inside each part.
PRUNE_EXECUTIONS = 24
PRUNE_ROWS_PER_EXECUTION = 150
PRUNE_LINES_PER_ROW = 20
PRUNE_KEEP = 8  # the newest executions the prune keeps (and compresses)
PRUNE_KILL_DELAY = (0.05, 0.5)  # wfmctl starts in about 0.1 s; a prune takes 0.2-0.4 s


def prune_line(eid: int, seq: int) -> bytes:
    # Compressible but not trivially: what compression has to get byte-for-byte right.
    return b"e%d seq %07d %s\n" % (eid, seq, b"%x" % (seq * 2654435761 % 2**32) * 6)


def build_prune_history(path: Path) -> dict[str, int]:
    """A database of finished executions with patterned logs: handle -> internal id."""
    from wfmd.store import Finish, LogRow, executions, write_batch
    from wfmd.store.database import close_database, open_database

    conn = open_database(path)
    handles = {}
    ended = now_ms() - 86_400_000
    try:
        for n in range(PRUNE_EXECUTIONS):
            stored = executions.create(
                conn,
                handle=f"{n:08x}-0000-4000-8000-000000000000",
                workflow_id="chaos_history",
                params=[(0, "n", str(n))],
                argv=["/bin/true"],
                timeout_ms=None,
                now=ended - 1000 + n,
            )
            eid = stored.id
            executions.mark_running(conn, eid, ended - 1000 + n)
            rows = []
            for r in range(PRUNE_ROWS_PER_EXECUTION):
                first = r * PRUNE_LINES_PER_ROW
                data = b"".join(prune_line(eid, first + k) for k in range(PRUNE_LINES_PER_ROW))
                rows.append(
                    LogRow((eid << 32) | first, STDOUT, ended, PRUNE_LINES_PER_ROW, None, data)
                )
            count = PRUNE_ROWS_PER_EXECUTION * PRUNE_LINES_PER_ROW
            write_batch(
                conn,
                rows,
                [Finish(eid, "Completed", "exit", "done", 0, ended_at=ended + n, log_count=count)],
            )
            handles[stored.info.handle] = eid
    finally:
        close_database(conn)
    return handles


def verify_after_prune_kill(
    daemon: Daemon, archive: Path, handles: dict[str, int], context: str
) -> tuple[int, int]:
    """Each execution fully there or fully gone (then archived whole), no orphan rows, every
    remaining one readable. Returns (executions left, rows compressed)."""
    import gzip

    from wfmd.store.sqlar import unpack

    count = PRUNE_ROWS_PER_EXECUTION * PRUNE_LINES_PER_ROW
    deadline = time.monotonic() + STATUS_TIMEOUT
    with closing(open_readonly(daemon.database)) as conn:
        # The restarted daemon finishes the deletions the kill interrupted, in the background.
        while conn.execute("SELECT count(*) FROM pending_deletions").fetchone()[0]:
            assert time.monotonic() < deadline, f"{context}: pending deletions never finished"
            time.sleep(0.05)
        assert integrity(conn) == ["ok"], context
        orphans = conn.execute(
            "SELECT count(*) FROM execution_logs WHERE id >> 32 NOT IN (SELECT id FROM executions)"
        ).fetchone()[0]
        assert orphans == 0, f"{context}: {orphans} orphan log rows"
        left = {h: i for h, i in conn.execute("SELECT handle, id FROM executions")}
        compressed = 0
        for handle, eid in left.items():
            assert handles[handle] == eid, context
            rows = conn.execute(
                "SELECT id, lines, data, raw_size FROM execution_logs WHERE id >> 32 = ?"
                " ORDER BY id",
                (eid,),
            ).fetchall()
            data = b""
            for _key, _lines, stored, raw_size in rows:
                data += unpack(stored, raw_size)
                compressed += raw_size is not None and raw_size != len(stored)
            expected = b"".join(prune_line(eid, seq) for seq in range(count))
            assert data == expected, f"{context}: execution {handle} is not whole"
    with daemon.client() as client:
        for handle in left:
            entries = list(client.iter_logs(handle, limit=10_000))
            assert len(entries) == count and entries[-1].line.startswith(f"e{left[handle]} seq")
    archived: dict[str, list[str]] = {}
    for path in sorted(archive.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            current: list[str] = []
            for line in lines:
                if line.startswith('{"type":"execution"'):
                    handle = line.split('"handle":"', 1)[1][:36]
                    assert handle not in archived, f"{context}: {handle} archived twice"
                    current = archived.setdefault(handle, [])
                else:
                    current.append(line)
    for handle in handles:
        if handle in left:
            continue
        assert handle in archived, f"{context}: {handle} deleted but not archived"
        got = archived[handle]
        assert len(got) == count, f"{context}: {handle} archived with {len(got)} entries"
        assert got[-1].startswith(f'{{"seq":{count - 1},'), context
    return len(left), compressed


@pytest.mark.parametrize(
    "rounds",
    [
        pytest.param(4, id="quick"),
        pytest.param(100, id="long", marks=[pytest.mark.slow, long_only]),
    ],
)
def test_kill9_during_prune_and_compression(
    make_daemon: MakeDaemon, tmp_path: Path, rounds: int
) -> None:
    seed = chaos_seed()
    rng = random.Random(seed)
    template = tmp_path / "template.db"
    handles = build_prune_history(template)
    landed: dict[str, int] = {}
    for round_no in range(1, rounds + 1):
        context = f"round {round_no}, seed {seed}"
        root = tmp_path / f"round{round_no}"
        root.mkdir()
        shutil.copy(template, root / "wfm.db")
        archive = root / "archive"
        flags = ["--retention-interval", "0", "--compress-after", "0.001"]
        daemon = make_daemon([*flags, "--archive", "--archive-dir", str(archive)], root)
        daemon.workflow_dirs = []
        daemon.start()
        pruning = daemon.wfmctl_popen("prune", "--keep", str(PRUNE_KEEP))
        time.sleep(rng.uniform(*PRUNE_KILL_DELAY))
        daemon.kill9()
        pruning.wait(30)
        where = prune_kill_landed(daemon.database, archive)
        landed[where] = landed.get(where, 0) + 1
        start_after_kill(daemon)
        left, _ = verify_after_prune_kill(daemon, archive, handles, f"{context}, {where}")
        assert left >= PRUNE_KEEP, context
        # Carried to its end, the prune leaves exactly the newest PRUNE_KEEP, compressed.
        with daemon.client() as client:
            client.prune(keep=PRUNE_KEEP)
        left, compressed = verify_after_prune_kill(daemon, archive, handles, context + ", again")
        assert left == PRUNE_KEEP and compressed > 0, context
        assert daemon.stop() == 0, daemon.log()
    print(f"\nprune chaos {rounds} rounds, seed {seed}: kills landed {landed}")


def prune_kill_landed(database: Path, archive: Path) -> str:
    """Where in the prune the kill landed, as the files tell."""
    with closing(open_readonly(database)) as conn:
        executions = conn.execute("SELECT count(*) FROM executions").fetchone()[0]
        pending = conn.execute("SELECT count(*) FROM pending_deletions").fetchone()[0]
        recorded = sum(size for (size,) in conn.execute("SELECT size FROM archive_files"))
        compressed = conn.execute(
            "SELECT count(*) FROM execution_logs WHERE raw_size IS NOT NULL"
        ).fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM execution_logs").fetchone()[0]
    written = sum(p.stat().st_size for p in archive.glob("*.gz"))
    if pending:
        return "deleting"
    if executions == PRUNE_EXECUTIONS:
        return "archiving" if written > recorded else "before"
    if compressed == 0:
        return "between"
    return "compressing" if compressed < rows else "after"
