"""Export benchmark: `wfmctl export` of one large execution into a file.

    python tests/bench/bench_export.py            # full: 1,000,000 lines, bars enforced
    python tests/bench/bench_export.py --quick    # seconds: proves the benchmark works

The real daemon runs bench_ingest's child (80-byte lines in 64 KiB writes); then `wfmctl
export` writes the execution to a file in each format, timed from the command's start to its
exit, with its peak RSS. The yardstick, in the same run: `wfmctl logs HANDLE > file`, the
other way to get a whole log out. Exits 1 if a bar is missed (full mode only).
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
    print(f"bars: >= {MIN_LINES_PER_S:,} lines/s into a file, peak RSS <= {MAX_RSS_MB} MB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
