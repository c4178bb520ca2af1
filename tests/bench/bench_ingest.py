"""Ingestion benchmark: the real daemon, a real child, spawn to last line committed.

    python tests/bench/bench_ingest.py            # full: 1,000,000 lines per case, bars enforced
    python tests/bench/bench_ingest.py --quick    # seconds: proves the benchmark works

For each child (one writing 64 KiB blocks, one calling write() once per line) it measures,
in the same run: the child piped into `cat > file` (the raw pipe copy, our baseline), and
wfmd running it as a workflow until its ending is committed, which happens only after every
line is. It then reports lines/s, the ratio to the baseline, the database growth against the
raw text size once the search index has caught up, the daemon's peak RSS, and whether every
line is addressable by seq. Then the 64 KiB case again, alternating with search indexing on
and off (`search_index = false`): the rate with it on against off, and how long the indexer
takes to catch up once the child has ended. Exits 1 if a bar is missed (full mode only).
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from wfmctl import Client, DaemonUnreachable

LINE_BYTES = 80  # "~80 bytes" per line, newline included

BARS = {"chunked": 1_200_000, "per_line": 900_000}
MAX_DB_RATIO = 1.15  # the database's growth, the search index aside, against the raw text
MAX_INDEX_RATIO = 0.5  # the search index's growth against the raw text
MAX_RSS_MB = 100
MIN_LOGS_LINES_PER_S = 1_000_000  # `wfmctl logs HANDLE | cat` of the finished execution
MIN_INDEXING_SHARE = 0.9  # ingestion rate with search indexing on / off (medians)
MAX_INDEX_CATCHUP_S = 5.0  # from the last line committed to every line searchable
INDEXING_ROUNDS = 3  # on/off pairs (full mode; one in --quick)

C_CHILD = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static int write_all(const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w < 0) return 1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}
/* argv: mode (chunked|per_line) count. Lines: 8-digit number, space, padding, newline. */
int main(int argc, char **argv) {
    long n = atol(argv[2]);
    int chunked = strcmp(argv[1], "chunked") == 0;
    static char buf[65536 + 128];
    size_t used = 0;
    for (long i = 0; i < n; i++) {
        char *line = buf + used;
        snprintf(line, 10, "%08ld ", i);
        memset(line + 9, 'x', 70);
        line[79] = '\n';
        used += 80;
        if (!chunked || used + 80 > 65536) {
            size_t off = 0;
            if (write_all(buf, used)) return 1;
            used = 0;
        }
    }
    return write_all(buf, used);
}
"""

PY_CHILD = """
import os, sys
mode, n = sys.argv[1], int(sys.argv[2])
pad = b"x" * 70 + b"\\n"
buf = bytearray()
for i in range(n):
    buf += b"%08d " % i + pad
    if mode != "chunked" or len(buf) + 80 > 65536:
        os.write(1, buf); buf.clear()
if buf: os.write(1, buf)
"""

WORKFLOW = """#!{python}
import json, os, sys
if sys.argv[1:] == ["--workflow-metadata"]:
    print(json.dumps({{"id": "bench_lines", "name": "bench", "description": "", "fields": [
        {{"name": "mode", "field_type": {{"type": "select", "options": ["chunked", "per_line"]}},
          "label": "mode", "description": "", "cli_arg": "--mode", "required": True,
          "default": None, "required_for_phases": None}},
        {{"name": "count", "field_type": {{"type": "number"}}, "label": "count",
          "description": "", "cli_arg": "--count", "required": True, "default": None,
          "required_for_phases": None}}]}}))
    sys.exit(0)
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
child = {child!r}
os.execv(child[0], child + [args["--mode"], args["--count"]])
"""


def build_child(work: Path) -> list[str]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler:
        source = work / "child.c"
        source.write_text(C_CHILD)
        binary = work / "child"
        done = subprocess.run([compiler, "-O2", "-o", str(binary), str(source)], check=False)
        if done.returncode == 0:
            return [str(binary)]
    script = work / "child.py"
    script.write_text(PY_CHILD)
    return [sys.executable, str(script)]


def baseline(child: list[str], mode: str, count: int, work: Path) -> float:
    """Seconds for the child piped into `cat > file`: what a plain pipe copy costs."""
    out = work / "baseline.out"
    start = time.perf_counter()
    with out.open("wb") as sink:
        producer = subprocess.Popen([*child, mode, str(count)], stdout=subprocess.PIPE)
        consumer = subprocess.run(["cat"], stdin=producer.stdout, stdout=sink, check=True)
        producer.wait()
    elapsed = time.perf_counter() - start
    assert consumer.returncode == 0 and out.stat().st_size == count * LINE_BYTES
    out.unlink()
    return elapsed


@dataclass
class Result:
    mode: str
    seconds: float
    baseline_seconds: float
    db_bytes: int
    rss_peak_mb: float
    addressable: bool
    index_catchup: float  # seconds from the run's end until every line is searchable
    index_bytes: int  # of `db_bytes`, the search index's pages
    logs_seconds: float  # `wfmctl logs HANDLE | cat > /dev/null`, the whole log


def start_daemon(
    root: Path, workflows: Path, *, search_index: bool = True
) -> subprocess.Popen[bytes]:
    wfmd = str(Path(sys.executable).parent / "wfmd")
    sock = root / "wfmd.sock"
    env = dict(os.environ, WFM_CONFIG=str(root / "config.toml"))
    (root / "config.toml").write_text("" if search_index else "search_index = false\n")
    proc = subprocess.Popen(
        [
            wfmd,
            "--database",
            str(root / "wfm.db"),
            "--socket",
            str(sock),
            "--workflow-dir",
            str(workflows),
            "--log-level",
            "WARNING",
        ],
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with Client(sock, timeout=5) as client:
                client.ping()
            return proc
        except DaemonUnreachable:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("wfmd did not start")


def status_mb(pid: int, key: str) -> float:
    """A memory figure from /proc/PID/status: VmHWM (peak RSS) or VmRSS (current)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    return status_mb(pid, "VmHWM")


SHELL_WORKFLOW = """#!/bin/sh
if [ "$1" = --workflow-metadata ]; then
  echo '{"id": "tiny", "name": "tiny", "description": "", "fields": []}'
  exit 0
fi
echo "hello from $WFM_EXECUTION_ID"
echo "to stderr" >&2
"""

MAX_RSS_GROWTH_MB = 5.0


def rss_growth(work: Path, warmup: int, runs: int) -> tuple[float, float]:
    """Daemon RSS after `warmup` executions and after `runs` more: memory must not grow
    with the number of executions in history."""
    root = Path(tempfile.mkdtemp(dir=work))
    workflows = root / "workflows"
    workflows.mkdir()
    script = workflows / "tiny"
    script.write_text(SHELL_WORKFLOW)
    script.chmod(0o755)
    daemon = start_daemon(root, workflows)
    try:
        with Client(root / "wfmd.sock", timeout=60) as client:

            def batch(count: int) -> None:
                handles = [client.run("tiny").handle for _ in range(count)]
                for handle in handles:
                    assert client.wait(handle).status == "Completed"

            batch(warmup)
            before = status_mb(daemon.pid, "VmRSS")
            for _ in range(runs // 50):
                batch(50)
            after = status_mb(daemon.pid, "VmRSS")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    return before, after


def db_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.glob("wfm.db*") if not p.name.endswith(".lock"))


def wait_indexed(client: Client) -> float:
    """Seconds until the daemon's search backlog is empty (0 with indexing off)."""
    began = time.perf_counter()
    while client.ping().search_backlog:
        time.sleep(0.01)
    return time.perf_counter() - began


def measure(
    child: list[str], mode: str, count: int, work: Path, *, search_index: bool = True
) -> Result:
    base = baseline(child, mode, count, work)
    root = Path(tempfile.mkdtemp(dir=work))
    workflows = root / "workflows"
    workflows.mkdir()
    script = workflows / "bench_lines"
    script.write_text(WORKFLOW.format(python=sys.executable, child=child))
    script.chmod(0o755)
    daemon = start_daemon(root, workflows, search_index=search_index)
    try:
        with Client(root / "wfmd.sock", timeout=600) as client:
            # Warm-up: the daemon's first run pays one-off costs (imports, page cache).
            client.wait(client.run("bench_lines", {"mode": mode, "count": 1000}).handle)
            wait_indexed(client)
            db_before = db_size(root)
            index_before = search_index_bytes(root / "wfm.db")
            start = time.perf_counter()
            handle = client.run("bench_lines", {"mode": mode, "count": count}).handle
            done = client.wait(handle)
            seconds = time.perf_counter() - start
            assert done.status == "Completed", done
            assert done.log_count == count, (done.log_count, count)
            catchup = wait_indexed(client)
            logs_seconds = read_back(root / "wfmd.sock", handle)
            addressable = True
            for seq in [0, count - 1, *random.sample(range(count), 50)]:
                page = client.logs(handle, after=seq - 1, limit=1)
                entry = page.entries[0]
                addressable &= entry.seq == seq and entry.line.startswith(f"{seq:08d} ")
        rss = peak_rss_mb(daemon.pid)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    growth = db_size(root) - db_before
    index = search_index_bytes(root / "wfm.db") - index_before
    return Result(mode, seconds, base, growth, rss, addressable, catchup, index, logs_seconds)


def search_index_bytes(database: Path) -> int:
    """Bytes of the search index's pages in the database."""
    import apsw

    conn = apsw.Connection(str(database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        size = conn.execute(
            "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name LIKE 'log_search%'"
        ).get
    finally:
        conn.close()
    return int(size)


def read_back(sock: Path, handle: str) -> float:
    """Seconds for `wfmctl logs HANDLE` into a pipe (`cat` writes it to /dev/null)."""
    wfmctl = shlex.quote(str(Path(sys.executable).parent / "wfmctl"))
    env = dict(os.environ, WFM_SOCKET=str(sock))
    began = time.perf_counter()
    subprocess.run(f"{wfmctl} logs {handle} | cat > /dev/null", shell=True, check=True, env=env)
    return time.perf_counter() - began


def indexing_share(child: list[str], count: int, work: Path, rounds: int) -> list[str]:
    """The 64 KiB case with search indexing on and off, alternating; prints the figures and
    returns the bars missed."""
    on: list[float] = []
    off: list[float] = []
    catchups: list[float] = []
    for _ in range(rounds):
        r = measure(child, "chunked", count, work, search_index=True)
        on.append(count / r.seconds)
        catchups.append(r.index_catchup)
        off.append(count / measure(child, "chunked", count, work, search_index=False).seconds)
    share = statistics.median(on) / statistics.median(off)
    worst = max(catchups)
    print(
        f"search indexing, {rounds} alternating pairs: on {statistics.median(on):,.0f} lines/s"
        f" ({min(on):,.0f}-{max(on):,.0f}), off {statistics.median(off):,.0f}"
        f" ({min(off):,.0f}-{max(off):,.0f}); on/off {share:.2f} (bar >= {MIN_INDEXING_SHARE});"
        f" caught up {worst:.2f} s after the end at worst (bar <= {MAX_INDEX_CATCHUP_S:g} s)"
    )
    missed = []
    if share < MIN_INDEXING_SHARE:
        missed.append(f"ingestion with indexing {share:.2f}x of without")
    if worst > MAX_INDEX_CATCHUP_S:
        missed.append(f"index caught up {worst:.1f} s after the end")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scale, bars not enforced")
    parser.add_argument("--lines", type=int, help="lines per case (default 1,000,000)")
    args = parser.parse_args()
    count = args.lines or (50_000 if args.quick else 1_000_000)
    failed = []
    with tempfile.TemporaryDirectory(prefix="wfm-bench-") as tmp:
        work = Path(tmp)
        child = build_child(work)
        print(f"child: {' '.join(child)}; {count:,} lines of {LINE_BYTES} bytes per case")
        header = (
            f"{'case':<9} {'wfmd lines/s':>13} {'pipe->cat lines/s':>18} {'ratio':>6} "
            f"{'bar':>10} {'db/raw':>7} {'peak RSS':>9} {'seq ok':>6} {'indexed in':>10}"
            f" {'logs|cat lines/s':>16} {'index/raw':>9}"
        )
        print(header)
        for mode in ("chunked", "per_line"):
            r = measure(child, mode, count, work)
            rate = count / r.seconds
            base_rate = count / r.baseline_seconds
            ratio = (r.db_bytes - r.index_bytes) / (count * LINE_BYTES)
            index_ratio = r.index_bytes / (count * LINE_BYTES)
            print(
                f"{mode:<9} {rate:>13,.0f} {base_rate:>18,.0f} {rate / base_rate:>6.2f} "
                f"{BARS[mode]:>10,} {ratio:>7.3f} {r.rss_peak_mb:>7.1f}MB {r.addressable!s:>6}"
                f" {r.index_catchup:>9.2f}s {count / r.logs_seconds:>16,.0f} {index_ratio:>9.3f}"
            )
            if rate < BARS[mode]:
                failed.append(f"{mode}: {rate:,.0f} lines/s < {BARS[mode]:,}")
            if ratio > MAX_DB_RATIO:
                failed.append(f"{mode}: database {ratio:.3f}x the raw text > {MAX_DB_RATIO}")
            if index_ratio > MAX_INDEX_RATIO:
                failed.append(f"{mode}: search index {index_ratio:.3f}x the raw text")
            if r.rss_peak_mb > MAX_RSS_MB:
                failed.append(f"{mode}: peak RSS {r.rss_peak_mb:.0f} MB > {MAX_RSS_MB}")
            if not r.addressable:
                failed.append(f"{mode}: lines not addressable by seq")
            if count / r.logs_seconds < MIN_LOGS_LINES_PER_S:
                failed.append(f"{mode}: logs read back at {count / r.logs_seconds:,.0f} lines/s")
            if r.index_catchup > MAX_INDEX_CATCHUP_S:
                failed.append(f"{mode}: indexed {r.index_catchup:.1f} s after its end")
        failed += indexing_share(child, count, work, 1 if args.quick else INDEXING_ROUNDS)
        warmup, runs = (20, 100) if args.quick else (100, 1000)
        before, after = rss_growth(work, warmup, runs)
        print(
            f"daemon RSS after {warmup} executions: {before:.1f} MB; "
            f"after {runs} more: {after:.1f} MB (growth {after - before:+.1f} MB, "
            f"bar {MAX_RSS_GROWTH_MB:+.1f} MB)"
        )
        if after - before > MAX_RSS_GROWTH_MB:
            failed.append(f"RSS grew {after - before:.1f} MB over {runs} executions")
    if failed and not args.quick:
        print("MISSED: " + "; ".join(failed))
        return 1
    print("all bars met" if not failed else "quick run (bars not enforced): " + "; ".join(failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
