"""Runs benchmark: how fast wfmd accepts and finishes trivial runs, and how followers scale.

    python tests/bench/bench_runs.py            # full: 2,000 runs, 30 followers of 500,000 events
    python tests/bench/bench_runs.py --quick    # seconds: proves the benchmark works

Each figure comes with a yardstick measured in the same run:
- submissions per second over one connection (runs accepted back to back), against pings per
  second over the same connection;
- start-to-end latency of a trivial run submitted alone (accepted to ending committed, as the
  client sees it), against spawning the same workflow directly and waiting for it;
- 30 followers of one run printing events as fast as it can, against one follower of the
  same run: wall time ratio, and the daemon's peak RSS.
Exits 1 if a bar is missed (full mode only).
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec
from bench_ingest import peak_rss_mb, start_daemon

from wfmctl import Client, protocol

MIN_SUBMISSIONS_PER_S = 500
MAX_LATENCY_ABOVE_SPAWN_MS = 20.0  # p50 of start-to-end minus p50 of the spawn itself
MAX_FOLLOWERS_RATIO = 2.0  # 30 followers' wall time / one follower's
FOLLOWERS = 30

TRIVIAL = """#!/bin/sh
if [ "$1" = --workflow-metadata ]; then
  echo '{"id": "trivial", "name": "trivial", "description": "", "fields": []}'
  exit 0
fi
exit 0
"""

EVENTS = """#!{python}
import json, os, sys
if sys.argv[1:] == ["--workflow-metadata"]:
    print(json.dumps({{"id": "events", "name": "events", "description": "", "fields": [
        {{"name": "count", "field_type": {{"type": "number"}}, "label": "count",
          "description": "", "cli_arg": "--count", "required": True, "default": None,
          "required_for_phases": None}}]}}))
    sys.exit(0)
n = int(sys.argv[2])
line = b'__WF_EVENT__:{{"type":"task_progress","task_id":"t","message":"step","progress":%d}}\\n'
buf = bytearray()
for i in range(n):
    buf += line % i
    if len(buf) > 60000:
        os.write(2, buf)
        buf.clear()
os.write(2, buf)
"""


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def submissions(client: Client, runs: int) -> tuple[float, float]:
    """(runs accepted per second, pings per second) over the same connection."""
    start = time.perf_counter()
    for _ in range(runs):
        client.ping()
    pings = runs / (time.perf_counter() - start)
    start = time.perf_counter()
    handles = [client.run("trivial").handle for _ in range(runs)]
    rate = runs / (time.perf_counter() - start)
    for handle in handles:
        assert client.wait(handle).status == "Completed"
    return rate, pings


def latencies(client: Client, script: Path, runs: int) -> tuple[list[float], list[float]]:
    """Start-to-end of lone runs, and of spawning the script directly, interleaved (ms)."""
    through_wfmd, direct = [], []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(script)], check=True)
        direct.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        done = client.wait(client.run("trivial").handle)
        through_wfmd.append((time.perf_counter() - start) * 1000)
        assert done.status == "Completed", done
    return through_wfmd, direct


class _Frame(msgspec.Struct):
    """Just enough of a response to count entries: the entries stay undecoded bytes, so a
    follower costs its client next to nothing and the figure is the daemon's."""

    type: str
    entries: list[msgspec.Raw] = []


def _follower(socket_path: Path, handle: str) -> int:
    """Follow `handle` over a raw connection to its end; returns the entries received."""
    decoder = msgspec.msgpack.Decoder(_Frame)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(socket_path))
        stream = sock.makefile("rb")

        def frame() -> _Frame:
            (length,) = protocol.HEADER.unpack(stream.read(protocol.HEADER.size))
            return decoder.decode(stream.read(length))

        assert frame().type == "hello"
        sock.sendall(protocol.encode_frame(protocol.Follow(handle=handle)))
        seen = 0
        while (reply := frame()).type == "log_batch":
            seen += len(reply.entries)
        assert reply.type == "finished", reply
        return seen


def follow_all(socket_path: Path, handle: str, count: int, followers: int) -> float:
    """Seconds until `followers` clients have each read every entry of `handle`."""
    errors: list[BaseException] = []

    def follower() -> None:
        try:
            seen = _follower(socket_path, handle)
            assert seen == count, (seen, count)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=follower) for _ in range(followers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def followers_case(work: Path, count: int, followers: int) -> tuple[float, float, float]:
    """(one follower's seconds, `followers` followers' seconds, peak RSS MB), each on a fresh
    daemon, the followers attached as the run starts."""
    results = []
    rss = 0.0
    for n in (1, followers):
        root = Path(tempfile.mkdtemp(dir=work))
        workflows = root / "workflows"
        workflows.mkdir()
        script = workflows / "events"
        script.write_text(EVENTS.format(python=sys.executable))
        script.chmod(0o755)
        daemon = start_daemon(root, workflows)
        try:
            with Client(root / "wfmd.sock", timeout=60) as client:
                handle = client.run("events", {"count": count}).handle
            results.append(follow_all(root / "wfmd.sock", handle, count, n))
            rss = peak_rss_mb(daemon.pid)
        finally:
            stop_daemon(daemon)
    return results[0], results[1], rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scale, bars not enforced")
    args = parser.parse_args()
    runs, lone, events = (200, 30, 20_000) if args.quick else (2_000, 200, 500_000)
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wfm-bench-") as tmp:
        work = Path(tmp)
        root = work / "runs"
        workflows = root / "workflows"
        workflows.mkdir(parents=True)
        script = workflows / "trivial"
        script.write_text(TRIVIAL)
        script.chmod(0o755)
        daemon = start_daemon(root, workflows)
        try:
            with Client(root / "wfmd.sock", timeout=120) as client:
                client.wait(client.run("trivial").handle)  # warm-up
                rate, pings = submissions(client, runs)
                ends, spawns = latencies(client, script, lone)
        finally:
            stop_daemon(daemon)
        one, many, rss = followers_case(work, events, FOLLOWERS)

    above = statistics.median(ends) - statistics.median(spawns)
    print(f"{'figure':<34} {'value':>12} {'yardstick':>24} {'bar':>14}")
    print(
        f"{'submissions/s, one connection':<34} {rate:>12,.0f} "
        f"{f'pings/s {pings:,.0f}':>24} {f'>= {MIN_SUBMISSIONS_PER_S}':>14}"
    )
    print(
        f"{'start-to-end p50 / p99 ms':<34} "
        f"{f'{statistics.median(ends):.1f} / {percentile(ends, 0.99):.1f}':>12} "
        f"{f'spawn p50 {statistics.median(spawns):.1f} ms':>24} "
        f"{f'+{MAX_LATENCY_ABOVE_SPAWN_MS:g} ms':>14}"
    )
    print(
        f"{f'{FOLLOWERS} followers of {events:,} events':<34} {f'{many:.2f} s':>12} "
        f"{f'one follower {one:.2f} s':>24} {f'<= {MAX_FOLLOWERS_RATIO:g}x':>14}"
    )
    print(f"{'daemon peak RSS with followers':<34} {f'{rss:.0f} MB':>12}")
    if rate < MIN_SUBMISSIONS_PER_S:
        failed.append(f"{rate:,.0f} submissions/s < {MIN_SUBMISSIONS_PER_S}")
    if above > MAX_LATENCY_ABOVE_SPAWN_MS:
        failed.append(f"start-to-end p50 {above:.1f} ms above the spawn")
    if many > MAX_FOLLOWERS_RATIO * one:
        failed.append(f"{FOLLOWERS} followers took {many / one:.2f}x one follower's time")
    if failed and not args.quick:
        print("MISSED: " + "; ".join(failed))
        return 1
    print("all bars met" if not failed else "quick run (bars not enforced): " + "; ".join(failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
