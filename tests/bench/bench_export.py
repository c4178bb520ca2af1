"""Export and compression benchmark: `wfmctl export` of one large execution into a file, and
the compression of cold history.

    python tests/bench/bench_export.py            # full: 1,000,000 lines, bars enforced
    python tests/bench/bench_export.py --quick    # seconds: proves the benchmark works

The real daemon runs bench_ingest's child (80-byte lines in 64 KiB writes); then `wfmctl
export` writes the execution to a file in each format, timed from the command's start to its
exit, with its peak RSS. The yardstick, in the same run: `wfmctl logs HANDLE > file`, the
other way to get a whole log out.

Compression: a workflow prints a realistic text (bench_scale's generator: log lines of 40 to
119 characters); once it is cold (`compress_after`), `wfmctl prune` compresses it. Reported:
the time and throughput, the stored size against the raw text, the pages in use before and
after, and `logs` / `export` on the compressed execution against the same before.
Exits 1 if a bar is missed (full mode only).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_ingest import WORKFLOW, build_child, start_daemon

from wfmctl import Client

MIN_LINES_PER_S = 1_000_000  # into a file, jsonl and text alike
MAX_RSS_MB = 80  # constant memory: a 10M-line export must not hold its log
MAX_COMPRESSED_RATIO = 0.45  # stored log bytes / raw text, once cold

CAT_WORKFLOW = """#!/bin/sh
if [ "$1" = --workflow-metadata ]; then
  echo '{{"id": "cat_text", "name": "cat_text", "description": "", "fields": []}}'
  exit 0
fi
exec cat {path}
"""


def realistic_text(path: Path, count: int) -> int:
    """`count` lines cut from bench_scale's pool, 100 consecutive ones at a time."""
    import random

    from scale_data import LinePool, _stdout_line

    rng = random.Random(7)
    pool = LinePool(random.Random(8), _stdout_line)
    with path.open("wb") as out:
        for _ in range(count // 100):
            out.write(pool.take(rng, 100))
    return path.stat().st_size


def stored_bytes(database: Path) -> tuple[int, int, int]:
    """(log bytes as stored, as printed, pages in use in bytes)."""
    import apsw

    conn = apsw.Connection(str(database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        data, raw = conn.execute(
            "SELECT sum(length(data)), sum(coalesce(raw_size, length(data))) FROM execution_logs"
        ).get
        pages = conn.pragma("page_count") - conn.pragma("freelist_count")
        return data, raw, pages * conn.pragma("page_size")
    finally:
        conn.close()


def compression(work: Path, count: int, wfmctl: str, quick: bool) -> bool:
    """The compression case; returns whether its bars are met."""
    root = work / "compress"
    workflows = root / "workflows"
    workflows.mkdir(parents=True)
    text = root / "text"
    raw = realistic_text(text, count)
    script = workflows / "cat_text"
    script.write_text(CAT_WORKFLOW.format(path=text))
    script.chmod(0o755)
    config = root / "none.toml"
    config.write_text("retention_interval = 0\ncompress_after = 3600\n")
    daemon = start_daemon(root, workflows)
    env = dict(os.environ, WFM_SOCKET=str(root / "wfmd.sock"))
    try:
        with Client(root / "wfmd.sock", timeout=600) as client:
            handle = client.run("cat_text").handle
            assert client.wait(handle).log_count == count
        timed([wfmctl, "export", handle], root / "warm-up", env)
        logs_before, _ = timed([wfmctl, "logs", handle], root / "logs.txt", env)
        export_before, _ = timed([wfmctl, "export", handle], root / "export.jsonl", env)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    data_before, _, pages_before = stored_bytes(root / "wfm.db")
    config.write_text("retention_interval = 0\ncompress_after = 0.001\n")
    daemon = start_daemon(root, workflows)
    try:
        with Client(root / "wfmd.sock", timeout=600) as client:
            start = time.perf_counter()
            client.prune(keep=10**9)  # removes nothing; compresses what is cold
            seconds = time.perf_counter() - start
        logs_after, _ = timed([wfmctl, "logs", handle], root / "logs2.txt", env)
        export_after, _ = timed([wfmctl, "export", handle], root / "export2.jsonl", env)
        same = (root / "logs.txt").read_bytes() == (root / "logs2.txt").read_bytes()
        same &= (root / "export.jsonl").read_bytes() == (root / "export2.jsonl").read_bytes()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    data_after, printed, pages_after = stored_bytes(root / "wfm.db")
    ratio = data_after / raw
    ok = ratio <= MAX_COMPRESSED_RATIO and same
    print(f"compression of {count:,} lines, {raw / 1e6:.1f} MB of realistic text:")
    print(f"  prune (compression and vacuum): {seconds:.2f} s, {raw / 1e6 / seconds:.1f} MB/s")
    missed = "" if ratio <= MAX_COMPRESSED_RATIO or quick else "  BAR MISSED"
    print(
        f"  stored log bytes: {data_before / 1e6:.1f} -> {data_after / 1e6:.1f} MB,"
        f" {ratio:.3f}x the raw text{missed}"
    )
    print(f"  pages in use: {pages_before / 1e6:.1f} -> {pages_after / 1e6:.1f} MB")
    print(
        f"  logs > file: {count / logs_before:,.0f} -> {count / logs_after:,.0f} lines/s;"
        f" export: {count / export_before:,.0f} -> {count / export_after:,.0f} lines/s;"
        f" output identical: {same}"
    )
    assert printed == raw, (printed, raw)
    return ok or quick


def timed(argv: list[str], out: Path | None, env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of a command, its stdout into `out` (or /dev/null)."""
    with open(out or os.devnull, "wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=sink, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed with {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 lines, no bars")
    args = parser.parse_args()
    count = 100_000 if args.quick else 1_000_000
    wfmctl = str(Path(sys.executable).parent / "wfmctl")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        child = build_child(work)
        workflows = work / "workflows"
        workflows.mkdir()
        script = workflows / "bench_lines"
        script.write_text(WORKFLOW.format(python=sys.executable, child=child))
        script.chmod(0o755)
        daemon = start_daemon(work, workflows)
        env = dict(os.environ, WFM_SOCKET=str(work / "wfmd.sock"))
        try:
            with Client(work / "wfmd.sock", timeout=600) as client:
                handle = client.run("bench_lines", {"mode": "chunked", "count": count}).handle
                assert client.wait(handle).log_count == count
            # Warm-up: the first read of the log pays for the page cache.
            timed([wfmctl, "export", handle], work / "warm-up", env)
            base, base_rss = timed([wfmctl, "logs", handle], work / "logs.txt", env)
            print(f"{count:,} lines of 80 bytes; yardstick `wfmctl logs > file`: ", end="")
            print(f"{count / base:,.0f} lines/s, peak RSS {base_rss:.0f} MB")
            for fmt in ("jsonl", "text", "json"):
                target = work / f"export.{fmt}"
                seconds, rss = timed(
                    [wfmctl, "export", handle, "--format", fmt, "-o", str(target)], None, env
                )
                rate = count / seconds
                ok = rate >= MIN_LINES_PER_S and rss <= MAX_RSS_MB
                failed |= not ok and not args.quick
                print(
                    f"export --format {fmt:5}: {rate:>12,.0f} lines/s ({base / seconds:.2f}x"
                    f" logs), {target.stat().st_size / 1e6:,.0f} MB, peak RSS {rss:.0f} MB"
                    f"{'' if ok or args.quick else '  BAR MISSED'}"
                )
                target.unlink()
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
        failed |= not compression(work, count, wfmctl, args.quick)
    print(f"bars: >= {MIN_LINES_PER_S:,} lines/s into a file, peak RSS <= {MAX_RSS_MB} MB;")
    print(f"      compressed history <= {MAX_COMPRESSED_RATIO}x the raw text")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
