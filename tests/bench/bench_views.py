"""Views benchmark: the README's queries, as people run them with the `sqlite3` program.

    python tests/bench/bench_views.py            # full: two 1M-line executions, 1M executions
    python tests/bench/bench_views.py --quick    # seconds: proves the benchmark works

The database is made by wfmd's own migrations, then filled directly: 1,000,000 executions,
two of them with 1,000,000 lines each, one with 40,000 and one with 3, in rows of 64 KiB as
ingestion writes them. Each query runs in a fresh `sqlite3` process (median of a few runs),
against the yardstick of `sqlite3` answering `SELECT 1` on the same file. Exits 1 if a bar is
missed (full mode only).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wfmd.store.database import close_database, open_database

LINE = b"2026-12-02 10:00:00 INFO worker: processed item with a plausible log message\n"
ROW_BYTES = 64 * 1024  # one pipe read, as ingestion stores it
RUNS = 5

# name -> (SQL with the handles `build` returns, bar in seconds)
QUERIES = {
    "small execution, every line": (
        "SELECT seq, stream, line FROM log_entries_view WHERE handle_id = '{small}'",
        1.0,
    ),
    "40,000-line execution, every line": (
        "SELECT seq, stream, line FROM log_entries_view WHERE handle_id = '{medium}'",
        3.0,
    ),
    "last 100 lines, biggest execution": (
        "SELECT seq, line FROM log_entries_view WHERE handle_id = '{big}'"
        " ORDER BY seq DESC LIMIT 100",
        5.0,
    ),
    "executions_view by handle": (
        "SELECT * FROM executions_view WHERE handle_id = '{small}'",
        0.5,
    ),
    "newest 5 executions": (
        "SELECT * FROM executions_view ORDER BY created_at DESC LIMIT 5",
        0.5,
    ),
}


def handle(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def build(path: Path, executions: int, big_lines: int) -> dict[str, str]:
    """The database; returns the handles the queries name."""
    conn = open_database(path)
    now = int(time.time() * 1000)
    with conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)"
            " INSERT INTO executions (handle, workflow_id, status, reason, created_at,"
            " started_at, ended_at, exit_code, ended_by, log_count, argv)"
            " SELECT printf('%08x-0000-4000-8000-%012x', i, i), 'wf_' || (i % 20), 'Completed',"
            " 'exited with status 0', ?2 + i * 1000, ?2 + i * 1000 + 5, ?2 + i * 1000 + 900,"
            " 0, 'exit', 0, '[\"/usr/bin/wf\"]' FROM n",
            (executions, now - executions * 1000),
        )
    per_row = ROW_BYTES // len(LINE)
    sizes = {"big": big_lines, "big2": big_lines, "medium": 40_000, "small": 3}
    names = {}
    for n, (name, lines) in enumerate(sizes.items(), start=1):
        eid = executions // 2 + n  # in the middle of history, as real ones would be
        names[name] = handle(eid)
        with conn:
            seq = 0
            while seq < lines:
                k = min(per_row, lines - seq)
                conn.execute(
                    "INSERT INTO execution_logs (id, stream, ts, lines, event, data)"
                    " VALUES (?, 1, ?, ?, NULL, ?)",
                    ((eid << 32) | seq, now, k, LINE * k),
                )
                seq += k
            conn.execute("UPDATE executions SET log_count = ? WHERE id = ?", (lines, eid))
    close_database(conn)
    return names


def timed(sqlite3: str, path: Path, sql: str) -> tuple[float, int]:
    """Wall time of one fresh `sqlite3` process running `sql`; and its output's line count."""
    began = time.perf_counter()
    done = subprocess.run(
        [sqlite3, "-readonly", str(path), sql], capture_output=True, check=True, timeout=600
    )
    return time.perf_counter() - began, done.stdout.count(b"\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scale, bars not enforced")
    args = parser.parse_args()
    sqlite3 = shutil.which("sqlite3")
    if sqlite3 is None:
        print("bench_views: needs the sqlite3 program (Debian: apt install sqlite3)")
        return 1
    executions, big = (10_000, 100_000) if args.quick else (1_000_000, 1_000_000)
    version = subprocess.run([sqlite3, "--version"], capture_output=True, text=True).stdout
    print(f"sqlite3 {version.split()[0]}; {executions:,} executions, two of {big:,} lines")
    failed = []
    with tempfile.TemporaryDirectory(prefix="wfm-bench-views-") as tmp:
        path = Path(tmp) / "wfm.db"
        began = time.perf_counter()
        names = build(path, executions, big)
        print(f"built in {time.perf_counter() - began:.1f} s, {path.stat().st_size / 1e6:.0f} MB")
        base = statistics.median(timed(sqlite3, path, "SELECT 1")[0] for _ in range(RUNS))
        print(f"{'query':<40} {'median':>9} {'range':>17} {'rows':>7} {'vs SELECT 1':>12} bar")
        for name, (template, bar) in QUERIES.items():
            sql = template.format(**names)
            samples = [timed(sqlite3, path, sql) for _ in range(RUNS)]
            times = [t for t, _ in samples]
            median = statistics.median(times)
            ok = median <= bar
            print(
                f"{name:<40} {median:>8.3f}s {f'{min(times):.3f}-{max(times):.3f}s':>17}"
                f" {samples[0][1]:>7} {median / base:>11.1f}x <= {bar:g} s"
                f"{'' if ok else '  MISSED'}"
            )
            if not ok:
                failed.append(name)
        print(f"yardstick: `sqlite3 FILE 'SELECT 1'` {base * 1000:.1f} ms")
    if args.quick:
        print("quick run: bars not enforced")
        return 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
