"""Retention benchmark: how long a line waits for its commit while retention runs.

    python tests/bench/bench_retention.py            # full: a 480 MB history, bars enforced
    python tests/bench/bench_retention.py --quick    # seconds: proves the benchmark works

A chatty workflow prints timestamped lines at a steady rate; a follower notes when each
line reaches it (committed, then sent). The figure is that delay, p99 and maximum, measured
twice in the same run: alone (the yardstick), and while `wfmctl prune` deletes most of a
large history (in steps, with incremental vacuum) and compresses the rest. Also reported:
the prune's duration and what it did; every line printed must arrive.
Exits 1 if a bar is missed (full mode only).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_ingest import start_daemon

from wfmctl import Client
from wfmctl.protocol import LogEntry, PruneReply

MAX_ABOVE_ALONE_MS = 50.0  # max delay with retention, above the max without
RATE = 2000  # lines per second the chatty workflow prints

CHATTY = """#!{python}
import json, sys, time
if sys.argv[1:] == ["--workflow-metadata"]:
    print(json.dumps({{"id": "chatty", "name": "chatty", "description": "", "fields": []}}))
    sys.exit(0)
count, rate = {count}, {rate}
start = time.time()
for i in range(count):
    due = start + i / rate
    pause = due - time.time()
    if pause > 0:
        time.sleep(pause)
    print(f"{{time.time():.6f}} {{i}}", flush=True)
"""


def seed(path: Path, executions: int, rows: int) -> None:
    """Finished executions, two days old, with `rows` rows of about 16 KiB of log text each."""
    from wfmd.store import Finish, LogRow, now_ms, write_batch
    from wfmd.store import executions as store_executions
    from wfmd.store.database import close_database, open_database

    conn = open_database(path)
    ended = now_ms() - 2 * 86_400_000
    try:
        for n in range(executions):
            stored = store_executions.create(
                conn,
                handle=f"{n:08x}-0000-4000-8000-000000000000",
                workflow_id="old",
                params=[],
                argv=["/bin/true"],
                timeout_ms=None,
                now=ended,
            )
            store_executions.mark_running(conn, stored.id, ended)
            batch = []
            for r in range(rows):
                lines = b"".join(
                    b"%d %d INFO worker %x: processed item in %d ms\n"
                    % (n, r * 200 + k, (r * 200 + k) * 2654435761 % 2**32, k)
                    for k in range(200)
                )
                batch.append(LogRow((stored.id << 32) | (r * 200), 1, ended, 200, None, lines))
            write_batch(
                conn,
                batch,
                [
                    Finish(
                        stored.id,
                        "Completed",
                        "exit",
                        "done",
                        0,
                        ended_at=ended,
                        log_count=rows * 200,
                    )
                ],
            )
    finally:
        close_database(conn)


def follow_delays(socket: Path, handle: str, delays: list[float]) -> None:
    with Client(socket, timeout=None) as client:
        for item in client.follow(handle):
            if isinstance(item, LogEntry):
                printed = float(item.line.split()[0])
                delays.append(time.time() - printed)


def chatty_run(socket: Path, count: int, during: threading.Thread | None) -> list[float]:
    """Delays of every line of one chatty run, with `during` started alongside."""
    delays: list[float] = []
    with Client(socket, timeout=60) as client:
        handle = client.run("chatty").handle
    follower = threading.Thread(target=follow_delays, args=(socket, handle, delays))
    follower.start()
    if during is not None:
        time.sleep(0.5)  # the run is under way first
        during.start()
    follower.join()
    if during is not None:
        during.join()
    if len(delays) != count:
        raise SystemExit(f"lines lost: {len(delays)} of {count} arrived")
    return delays


def summary(delays: list[float]) -> tuple[float, float]:
    ordered = sorted(delays)
    return ordered[int(len(ordered) * 0.99)] * 1000, ordered[-1] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 16 MB history, no bars")
    args = parser.parse_args()
    executions, rows = (20, 50) if args.quick else (150, 200)
    seconds = 4 if args.quick else 20
    count = seconds * RATE
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seed(work / "wfm.db", executions, rows)
        history_mb = (work / "wfm.db").stat().st_size / 1e6
        workflows = work / "workflows"
        workflows.mkdir()
        script = workflows / "chatty"
        script.write_text(CHATTY.format(python=sys.executable, count=count, rate=RATE))
        script.chmod(0o755)
        (work / "none.toml").write_text("retention_interval = 0\ncompress_after = 0.001\n")
        daemon = start_daemon(work, workflows)
        socket = work / "wfmd.sock"
        try:
            alone = chatty_run(socket, count, None)
            outcome: list[object] = []

            def prune() -> None:
                with Client(socket, timeout=600) as client:
                    started = time.perf_counter()
                    # The newest tenth of the history stays (and is compressed), and the two
                    # chatty runs.
                    reply = client.prune(keep=executions // 10 + 2)
                    outcome.extend([time.perf_counter() - started, reply])

            during = chatty_run(socket, count, threading.Thread(target=prune))
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
    took, reply = outcome
    p99_a, max_a = summary(alone)
    p99_r, max_r = summary(during)
    ok = max_r <= max_a + MAX_ABOVE_ALONE_MS
    print(f"history {history_mb:.0f} MB: {executions} executions of {rows * 200:,} lines")
    assert isinstance(took, float) and isinstance(reply, PruneReply)
    print(
        f"prune: {took:.2f} s: removed {reply.executions_removed} executions,"
        f" {reply.log_entries_removed:,} log entries, freed {reply.bytes_freed / 1e6:.0f} MB"
    )
    print(f"line delay alone:          p99 {p99_a:6.1f} ms, max {max_a:6.1f} ms")
    print(
        f"line delay during prune:   p99 {p99_r:6.1f} ms, max {max_r:6.1f} ms"
        f" (median {statistics.median(during) * 1000:.1f} ms)"
        f"{'' if ok or args.quick else '  BAR MISSED'}"
    )
    print(f"bar: max during prune <= max alone + {MAX_ABOVE_ALONE_MS:.0f} ms; no line lost")
    return 0 if ok or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
