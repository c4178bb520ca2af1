"""Load: 64 concurrent clients against one daemon while 16 workflows stream output.

Each client is a thread with its own persistent `wfmctl.Client` connection, issuing a random
mix of `status`, `logs`, `history` and `follow` (of finished executions to the end, and of
live ones for a while, then abandoned, which closes that connection and opens a new one).
Four of the clients instead follow one streaming workflow each from its first line to its
end, checking every entry on the way. Meanwhile 16 workflows print a known number of lines
at a steady rate on both streams.

Asserted: zero failed requests, and zero lost lines: every workflow completes with the
`log_count` it printed, and its stored log is exactly what it printed, in order, seq 0..N-1.
Reported (stdout, and one JSON line appended to $WFM_RELIABILITY_REPORT if set): p50/p99
request latency, requests/s, ingestion rate in lines/s, and the daemon's peak RSS.

Quick form ~10 s of load; `WFM_LONG_TESTS=1`: 30 minutes.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import statistics
import threading
import time
from array import array
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

from conftest import Daemon, MakeDaemon, metadata, proc_status, text_field, write_workflow

from wfmctl import Client, WfmError
from wfmctl.protocol import Execution, LogEntry

LONG = os.environ.get("WFM_LONG_TESTS") == "1"

CLIENTS = 64
WORKFLOWS = 16
# The quick form keeps CI short; WFM_LOAD_SECONDS overrides both forms.
LOAD_SECONDS = float(os.environ.get("WFM_LOAD_SECONDS", 1800.0 if LONG else 10.0))
# Lines per second per stream of each workflow: 16 x 2 x 150 = 4,800 lines/s in all, a steady
# trickle for the writer while the clients keep the request path busy.
LINE_RATE = 150.0
LINES = int(LINE_RATE * LOAD_SECONDS)  # per stream of each workflow
FULL_FOLLOWERS = 4  # clients that follow one streaming workflow from start to end

# Finished executions that `follow_done` streams to the end (each 2 x DONE_LINES entries).
DONE_RUNS = 4
DONE_LINES = 500

# A live follow reads this many entries (or until its execution ends), then hangs up.
LIVE_FOLLOW_ENTRIES = 200

# Bounds: a single request on a loaded 2-core machine takes milliseconds; these turn a hang
# into a failure with a traceback instead of a stuck CI job.
REQUEST_TIMEOUT = 30.0
END_GRACE = 120.0  # after the load window: for the workflows to end and the threads to stop
WATCHDOG = 120.0

OPS = ("status", "logs", "history", "follow_done", "follow_live")
WEIGHTS = (35, 30, 15, 10, 10)

STREAMER = """
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
n, rate, tag = int(args["--lines"]), float(args["--rate"]), args["--tag"]
start = time.monotonic()
for i in range(n):
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    sys.stdout.write(f"{tag} out {i}\\n")
    sys.stdout.flush()
    sys.stderr.write(f"{tag} err {i}\\n")
    sys.stderr.flush()
"""


def expected_entries(tag: str, n: int, entries: list[LogEntry]) -> None:
    """`entries` is exactly the streamer's output: seq 0..2n-1, each stream in order."""
    assert [e.seq for e in entries] == list(range(2 * n)), f"{tag}: gap or duplicate in seq"
    out = [e.line for e in entries if e.stream == "stdout"]
    err = [e.line for e in entries if e.stream == "stderr"]
    assert out == [f"{tag} out {i}" for i in range(n)], f"{tag}: stdout differs"
    assert err == [f"{tag} err {i}" for i in range(n)], f"{tag}: stderr differs"
    assert all(e.type == "raw_output" for e in entries)


def contiguous(entries: list[LogEntry], after: int) -> bool:
    return [e.seq for e in entries] == list(range(after + 1, after + 1 + len(entries)))


@dataclass
class Load:
    daemon: Daemon
    live: list[str]  # handles of the streaming workflows
    live_tags: dict[str, str]
    done: list[str]  # handles of finished executions
    deadline: float
    failures: list[str] = field(default_factory=list)
    latencies: dict[str, array[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reconnects: int = 0
    followed: dict[str, int] = field(default_factory=dict)

    def record(self, op: str, seconds: array[float]) -> None:
        with self.lock:
            self.latencies.setdefault(op, array("d")).extend(seconds)

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)

    def new_client(self) -> Client:
        return self.daemon.client(timeout=REQUEST_TIMEOUT)

    # ------------------------------------------------------------------ one client

    def run_client(self, index: int) -> None:
        try:
            if index < FULL_FOLLOWERS:
                self.follow_to_end(self.live[index])
            else:
                self.mix(index)
        except BaseException as exc:  # the thread must report, never die silently
            self.fail(f"client {index}: {exc!r}")

    def follow_to_end(self, handle: str) -> None:
        """Follow one streaming workflow from its first line to its end; check everything."""
        with self.new_client() as client:
            entries: list[LogEntry] = []
            last: Execution | None = None
            for item in client.follow(handle):
                if isinstance(item, Execution):
                    last = item
                else:
                    entries.append(item)
        assert last is not None and last.status == "Completed", last
        expected_entries(self.live_tags[handle], LINES, entries)
        with self.lock:
            self.followed[handle] = len(entries)

    def mix(self, index: int) -> None:
        rng = random.Random(index)
        client = self.new_client()
        times: dict[str, array[float]] = {op: array("d") for op in OPS}
        try:
            while time.monotonic() < self.deadline:
                op = rng.choices(OPS, WEIGHTS)[0]
                started = time.perf_counter()
                try:
                    self.one_request(client, op, rng)
                except (WfmError, AssertionError, OSError) as exc:
                    self.fail(f"client {index} {op}: {exc!r}")
                if client.closed:  # an abandoned follow, or a failure
                    client = self.new_client()
                    with self.lock:
                        self.reconnects += 1
                times[op].append(time.perf_counter() - started)
        finally:
            client.close()
            for op, seconds in times.items():
                self.record(op, seconds)

    def one_request(self, client: Client, op: str, rng: random.Random) -> None:
        if op == "status":
            handle = rng.choice(self.live + self.done)
            execution = client.status(handle[: rng.choice((8, 36))])
            assert execution.handle == handle, (handle, execution)
            if handle in self.done:
                assert execution.status == "Completed", execution
                assert execution.log_count == 2 * DONE_LINES, execution
            else:
                assert execution.log_count <= 2 * LINES, execution
        elif op == "logs":
            handle = rng.choice(self.live + self.done)
            if rng.random() < 0.5:
                # The last 100 entries, or all of them while there are fewer.
                seqs = [e.seq for e in client.logs(handle, tail=100).entries]
                end = seqs[-1] + 1 if seqs else 0
                assert seqs == list(range(max(0, end - 100), end)), seqs
                if handle in self.done:
                    assert end == 2 * DONE_LINES, seqs
            else:
                after = rng.randint(-1, 2 * DONE_LINES)
                log_page = client.logs(handle, after=after, limit=500)
                assert contiguous(log_page.entries, after)
                if handle in self.done:
                    expected = min(500, max(0, 2 * DONE_LINES - after - 1))
                    assert len(log_page.entries) == expected, (after, len(log_page.entries))
        elif op == "history":
            choice = rng.randrange(3)
            if choice == 0:
                assert len(client.history(limit=20).executions) == 20
            elif choice == 1:
                history = client.history(limit=50, workflow_id="streamer")
                assert len(history.executions) == WORKFLOWS + DONE_RUNS
            else:
                running = client.history(limit=20, status="Running").executions
                assert all(e.status == "Running" and e.handle in self.live for e in running)
        elif op == "follow_done":
            handle = rng.choice(self.done)
            after = rng.randint(-1, 2 * DONE_LINES - 1)
            items = list(client.follow(handle, after=after))
            assert isinstance(items[-1], Execution) and items[-1].status == "Completed"
            entries = [i for i in items[:-1] if isinstance(i, LogEntry)]
            assert len(entries) == len(items) - 1
            assert contiguous(entries, after) and len(entries) == 2 * DONE_LINES - after - 1
        elif op == "follow_live":
            handle = rng.choice(self.live)
            after = max(-1, client.status(handle).log_count - LIVE_FOLLOW_ENTRIES)
            stream = client.follow(handle, after=after)
            entries = []
            try:
                for item in stream:
                    if isinstance(item, Execution):
                        break
                    entries.append(item)
                    if len(entries) >= LIVE_FOLLOW_ENTRIES:
                        break
            finally:
                # Closing the generator mid-stream makes the client close this connection.
                assert isinstance(stream, Generator)  # `follow` is annotated as an Iterator
                stream.close()
            assert contiguous(entries, after)


def percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def test_load(make_daemon: MakeDaemon, workflow_dir: Path) -> None:
    write_workflow(
        workflow_dir,
        "streamer",
        STREAMER,
        metadata("streamer", text_field("lines"), text_field("rate"), text_field("tag")),
    )
    daemon = make_daemon(extra_args=["--max-concurrent", str(WORKFLOWS + DONE_RUNS)]).start()
    assert daemon.proc is not None
    faulthandler.dump_traceback_later(WATCHDOG)
    try:
        _run_load(daemon)
    finally:
        faulthandler.cancel_dump_traceback_later()


def _run_load(daemon: Daemon) -> None:
    assert daemon.proc is not None
    with daemon.client() as client:
        done = []
        for i in range(DONE_RUNS):
            params = {"lines": DONE_LINES, "rate": 1e9, "tag": f"done{i}"}
            done.append(client.run("streamer", params).handle)
        for i, handle in enumerate(done):
            finished = client.wait(handle)
            assert finished.status == "Completed", finished
            expected_entries(f"done{i}", DONE_LINES, list(client.iter_logs(handle)))
        live_tags = {}
        for i in range(WORKFLOWS):
            tag = f"live{i:02d}"
            params = {"lines": LINES, "rate": LINE_RATE, "tag": tag}
            live_tags[client.run("streamer", params).handle] = tag
    live = list(live_tags)

    started = time.monotonic()
    load = Load(daemon, live, live_tags, done, deadline=started + LOAD_SECONDS)
    threads = [
        threading.Thread(target=load.run_client, args=(i,), name=f"client-{i}", daemon=True)
        for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    max_rss = 0
    end_by = started + LOAD_SECONDS + END_GRACE
    while time.monotonic() < end_by:
        alive = [t for t in threads if t.is_alive()]
        if not alive:
            break
        faulthandler.dump_traceback_later(WATCHDOG)
        max_rss = max(max_rss, proc_status(daemon.proc.pid, "VmRSS"))
        alive[0].join(timeout=0.5)
    elapsed = time.monotonic() - started
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"clients still running {END_GRACE} s after the load window: {stuck}"
    load_seconds = min(elapsed, LOAD_SECONDS)

    # Every line printed is stored, exactly.
    total_lines = 0
    with daemon.client(timeout=REQUEST_TIMEOUT) as client:
        ended = []
        for handle in live:
            execution = client.wait(handle)
            ended.append(execution)
            assert execution.status == "Completed", execution
            assert execution.log_count == 2 * LINES, execution
            entries = list(client.iter_logs(handle, limit=10_000))
            expected_entries(live_tags[handle], LINES, entries)
            total_lines += len(entries)
    assert load.followed == {h: 2 * LINES for h in live[:FULL_FOLLOWERS]}
    first_start = min(e.started_at or e.created_at for e in ended)
    last_end = max(e.ended_at or 0.0 for e in ended)

    all_latencies = [s for op in ("status", "logs", "history") for s in load.latencies[op]]
    requests = sum(len(v) for v in load.latencies.values())
    report = {
        "test": "load",
        "long": LONG,
        "clients": CLIENTS,
        "workflows": WORKFLOWS,
        "load_seconds": round(load_seconds, 1),
        "requests": requests,
        "failed_requests": len(load.failures),
        "requests_per_s": round(requests / load_seconds, 1),
        "p50_ms": round(percentile(all_latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(all_latencies, 99) * 1000, 2),
        "per_op": {
            op: {
                "n": len(v),
                "p50_ms": round(percentile(list(v), 50) * 1000, 2),
                "p99_ms": round(percentile(list(v), 99) * 1000, 2),
            }
            for op, v in sorted(load.latencies.items())
        },
        "reconnects": load.reconnects,
        "lines": total_lines,
        "lost_lines": 2 * LINES * WORKFLOWS - total_lines,
        "ingest_lines_per_s": round(total_lines / max(last_end - first_start, 1e-9), 1),
        "wfmd_max_rss_mb": round(max_rss / 2**20, 1),
    }
    line = json.dumps(report)
    print(f"\nload: {line}")
    target = os.environ.get("WFM_RELIABILITY_REPORT")
    if target:
        with open(target, "a") as out:
            out.write(line + "\n")
    assert not load.failures, f"{len(load.failures)} failed requests: {load.failures[:20]}"
