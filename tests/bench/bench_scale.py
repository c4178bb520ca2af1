"""Performance at scale: the real daemon on a database of 1,000,000 executions.

    python tests/bench/bench_scale.py            # full scale, bars enforced (exit 1 if missed)
    python tests/bench/bench_scale.py --quick    # a 0.2% database and short phases: seconds
    python tests/bench/bench_scale.py --only queries,follow --scale 0.1

The database comes from `scale_data.py`: a full run builds it once (about 3 minutes, 9.5 GB)
and reuses it from `--data-dir` (default `$WFM_BENCH_DATA` or `~/.cache/wfm-bench`); a quick
run builds its small one in its temporary directory. Every daemon start gets its own copy;
the original is never opened for writing.

Everything goes through the installed `wfmd` (next to `sys.executable`) and the real client
(`wfmctl.Client`, or the `wfmctl` executable), and every ratio is against a baseline
measured in the same run:

  startup     spawn to ready (systemd's READY=1) on the big database vs an empty (migrated)
              one, alternating, with no workflows to probe so that only the database differs
  queries     p99 round trips on one persistent connection, minus the median `ping` round
              trip (the client's own cost): status by handle and by prefix, history pages
              (filtered, and deep pages via `before` against page 1), log tail and pages of
              the 10M-line execution, param_history; stats of the last 30 days and of the
              whole history (medians of a few calls: each reads many rows)
  memory      the daemon's idle RSS on the big database
  throughput  32 clients (processes x threads, one connection each) asking for status:
              requests/s and p99, with the daemon's and the load generator's CPU; then
              again while one workflow ingests as fast as it can, against its solo rate
  follow      a workflow printing a timestamped line every 10 ms; `follow` receive time
              minus printed time
  client      `wfmctl status` as a fresh process vs `python -I -c "import msgspec, socket"`,
              on the default socket as a user runs it (XDG_RUNTIME_DIR, no WFM_SOCKET) and
              through WFM_SOCKET,
              and vs `supervisorctl status` against a running supervisord
  peers       supervisord capturing the same child's lines to a file vs wfmd to its database;
              supervisord's program is started with the XML-RPC call supervisorctl makes
              (a fresh supervisorctl process would add its own ~100 ms interpreter start)
  many        200 workflows printing 10 lines/s each: daemon CPU and RSS, no line lost
  retention   on a copy: `prune` of the oldest tenth of the executions while the ticker
              prints (follow latency during the prune against before and after it); then
              compression of the next oldest twentieth (throughput, size), and log pages of
              compressed executions against uncompressed ones

supervisord is a bench-only extra (`pip install supervisor`); without it the supervisor
comparisons are skipped with a note.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import importlib.util
import json
import math
import os
import random
import selectors
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale_data
from bench_ingest import LINE_BYTES, WORKFLOW, build_child, status_mb

from wfmctl import Client, protocol
from wfmctl.protocol import LogEntry

BIN = Path(sys.executable).parent
WFMD = str(BIN / "wfmd")
WFMCTL = str(BIN / "wfmctl")

# ----------------------------------------------------------------------------------- bars

STARTUP_RATIO = 1.2  # start to ready, big database vs empty one (medians)
STATUS_P99_MS = 1.0  # server-side: round-trip p99 minus the median ping round trip
HISTORY_P99_MS = 5.0
DEEP_PAGE_RATIO = 1.2  # "not slower than page 1": medians, with room for noise
LOGS_P99_MS = 5.0
PARAM_HISTORY_P99_MS = 10.0
STATS_30D_MS = 100.0  # `stats --since 30d`, median round trip
STATS_ALL_MS = 1000.0  # `stats` over the whole history
STATS_ROUNDS = 5
SEARCH_WORD_P99_MS = 50.0  # first page of a selective word, round trip
SEARCH_PHRASE_P99_MS = 100.0
SEARCH_FILTERED_P99_MS = 100.0  # a word with a workflow and a 30-day window
SEARCH_INDEX_RATIO = 0.5  # the search index's pages against the raw text
THROUGHPUT_MIN = 5_000  # status requests/s from 32 clients
THROUGHPUT_P99_MS = 5.0
THROUGHPUT_INGEST_P99_MS = 25.0  # the same while one workflow ingests at full speed
INGEST_UNDER_LOAD_SHARE = 0.8  # ... which keeps this share of its solo rate
FOLLOW_P50_MS = 60.0
FOLLOW_P99_MS = 150.0
CLIENT_VS_PYTHON = 1.3  # `wfmctl status` wall time vs a bare interpreter importing msgspec
CLIENT_VS_SUPERVISORCTL = 0.5
PEER_PER_LINE_RATIO = 1.5  # wfmd time / supervisord time for the per-line child
MANY_CPU_SHARE = 0.10  # of one core, 200 workflows at 10 lines/s each
MANY_RSS_MB = 150.0
IDLE_RSS_MB = 50.0
PRUNE_FOLLOW_ABOVE_MS = 50.0  # follow latency max during a prune, above the max outside it
COMPRESSED_RATIO = 0.45  # log bytes once compressed / before

# ------------------------------------------------------------------------------- settings

LOAD_PROCESSES = 4  # x LOAD_CONNECTIONS = 32 clients, one thread per process (the GIL)
LOAD_CONNECTIONS = 8
LOAD_LEAD = 1.5  # seconds for the load generators to start and connect before the window
DEEP_PAGE = 10_000  # the history page reached with `before` (500,000 executions deep)
PAGE = 50  # executions per history page, the protocol's default
FOLLOW_INTERVAL = 0.01  # a timestamped line every 10 ms for the follow latency
MANY_INTERVAL = 0.1  # 10 lines/s per workflow when 200 run at once
SAMPLE_HANDLES = 2_000  # random executions asked about: spread over the whole table
INGEST_LINES = 10**12  # "forever": the ingesting workflow is cancelled at the end of a window


@dataclass(frozen=True)
class Settings:
    """How much of everything: FULL is what the bars are set for, QUICK proves it works."""

    scale: float
    startup_runs: int
    query_rounds: int
    load_seconds: float
    ingest_seconds: float
    throughput_rounds: int
    follow_seconds: float
    client_runs: int
    peer_lines: int
    peer_repeats: int
    many_workflows: int
    many_seconds: float


# Enough repeats for a median to stand: on this machine one start-up of the same daemon on the
# same database takes either ~175 or ~330 ms (10 alternated starts, 2026-11-28), and one
# throughput round's ingestion share anywhere from 0.65 to 1.16 of its solo run.
FULL = Settings(1.0, 11, 2_000, 10.0, 10.0, 5, 10.0, 20, 1_000_000, 3, 200, 20.0)
QUICK = Settings(0.002, 3, 150, 2.0, 2.0, 1, 2.0, 5, 50_000, 1, 20, 4.0)

SECTIONS = (
    "startup",
    "queries",
    "search",
    "memory",
    "throughput",
    "follow",
    "client",
    "peers",
    "many",
    "retention",
)

TICKER = """#!{python} -IS
import json, os, sys, time
if sys.argv[1:] == ["--workflow-metadata"]:
    number = {{"type": "number"}}
    def field(name):
        return {{"name": name, "field_type": number, "label": name, "description": "",
                "cli_arg": "--" + name, "required": True, "default": None,
                "required_for_phases": None}}
    print(json.dumps({{"id": "ticker", "name": "ticker", "description": "timestamped lines",
                      "fields": [field("interval"), field("count")]}}))
    sys.exit(0)
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
interval, count = float(args["--interval"]), int(args["--count"])
pad = "x" * 48
start = time.monotonic()
for i in range(count):
    delay = start + i * interval - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    os.write(1, ("%.6f %08d %s\\n" % (time.time(), i, pad)).encode())
"""


# --------------------------------------------------------------------------------- report


@dataclass
class Row:
    measure: str
    value: str
    baseline: str = ""
    ratio: str = ""
    bar: str = ""
    ok: bool | None = None


class Report:
    """The table, printed once, row by row as the figures come in (a full run takes minutes):
    its header, then each section's title, rows and notes. A missed bar reads MISSED only
    where bars are enforced (the full run); a quick run's rows say "no"."""

    WIDTHS = (50, 20, 44, 6, 24)
    HEADER = ("measure", "value", "baseline / detail", "ratio", "bar", "ok")

    def __init__(self, *, enforce: bool) -> None:
        self.enforce = enforce
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self._started = False

    def _print(self, line: str) -> None:
        if not self._started:
            self._started = True
            head = " ".join(c.ljust(w) for c, w in zip(self.HEADER, (*self.WIDTHS, 0), strict=True))
            print(f"{head.rstrip()}\n{'-' * len(head)}")
        print(line, flush=True)

    def add(self, measure: str, value: str, **kw: Any) -> None:
        row = Row(measure, value, **kw)
        self.rows.append(row)
        self._print(self._line(row))

    def note(self, text: str) -> None:
        self.notes.append(text)
        self._print(f"  note: {text}")

    def section(self, title: str) -> None:
        self._print(f"== {title}")

    def _line(self, row: Row) -> str:
        missed = "MISSED" if self.enforce else "no"
        ok = "" if row.ok is None else ("yes" if row.ok else missed)
        cells = (row.measure, row.value, row.baseline, row.ratio, row.bar)
        text = " ".join(c.ljust(w) for c, w in zip(cells, self.WIDTHS, strict=True))
        return f"{text} {ok}".rstrip()

    @property
    def missed(self) -> list[Row]:
        return [r for r in self.rows if r.ok is False]


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# --------------------------------------------------------------------------------- daemon


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The generated history spans two years and a million executions: the default retention
# policy would start deleting most of it, and compressing the rest, in the background of
# every measurement. The benchmark measures a history as it is, so both stay off.
NO_RETENTION = "retention_interval = 0\ncompress_after = 0\n"


class Daemon:
    """The installed wfmd on its own directory; ready when it sends systemd's READY=1."""

    def __init__(
        self,
        root: Path,
        database: Path,
        workflows: Path,
        extra: tuple[str, ...] = (),
        config: str = NO_RETENTION,
    ) -> None:
        self.root = root
        self.config = config
        self.database = database
        self.workflows = workflows
        self.extra = extra
        self.socket = root / "wfmd.sock"
        self.log = root / "wfmd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120.0) -> float:
        """Start and wait until ready; returns seconds from spawn to READY=1."""
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "none.toml"
        config.write_text(self.config)
        notify_path = self.root / "notify.sock"
        notify_path.unlink(missing_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.settimeout(0.5)
        env = dict(os.environ, WFM_CONFIG=str(config), NOTIFY_SOCKET=str(notify_path))
        argv = [
            WFMD,
            "--database",
            str(self.database),
            "--socket",
            str(self.socket),
            "--workflow-dir",
            str(self.workflows),
            "--log-level",
            "WARNING",
            *self.extra,
        ]
        with notify, self.log.open("ab") as log:
            began = time.perf_counter()
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if b"READY=1" in notify.recv(4096).split(b"\n"):
                        break
                except TimeoutError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        tail = self.log.read_text(errors="replace")[-2000:]
                        raise SystemExit(f"wfmd did not become ready:\n{tail}") from None
            elapsed = time.perf_counter() - began
        with Client(self.socket, timeout=30) as client:
            client.ping()
        return elapsed

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.returncode != 0:  # a daemon that did not stop cleanly makes its figures suspect
            tail = self.log.read_text(errors="replace")[-2000:]
            print(f"warning: wfmd exited with {proc.returncode}:\n{tail}", file=sys.stderr)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss_mb(self) -> float:
        return status_mb(self.pid, "VmRSS")


def copy_database(source: Path, target_dir: Path) -> tuple[Path, float]:
    """A private copy of the database for one daemon start; returns it and seconds taken."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "wfm.db"
    began = time.perf_counter()
    shutil.copyfile(source, target)  # sendfile/copy_file_range: in the kernel
    # Written back now, not during the next measurement: with 10 GB of dirty pages flushing
    # behind it, a solo ingestion measured right after the copy ran at 2.8-2.9M lines/s,
    # against 3.5-3.8M in full runs where other sections came first.
    os.sync()
    return target, time.perf_counter() - began


# -------------------------------------------------------------------------------- context


@dataclass
class Targets:
    """What the requests ask for, picked from the original database (read-only)."""

    handles: list[str]
    prefixes: list[str]
    workflows: list[str]
    first_s: float
    last_s: float
    deep_page: int
    deep_before: str
    filtered_workflow: str
    filtered_status: protocol.Status
    filtered_pages: int
    filtered_last_before: str
    big_handle: str
    big_lines: int


def pick_targets(database: Path, facts: scale_data.Facts, params: scale_data.Parameters) -> Targets:
    executions = params.executions
    rng = random.Random(42)
    with contextlib.closing(sqlite3.connect(database.as_uri() + "?immutable=1", uri=True)) as db:
        ids = rng.sample(range(1, executions + 1), min(executions, SAMPLE_HANDLES))
        handles = [
            db.execute("SELECT handle FROM executions WHERE id = ?", (i,)).fetchone()[0]
            for i in ids
        ]
        prefixes = []
        for h in handles:
            (n,) = db.execute(
                "SELECT count(*) FROM executions WHERE handle >= ? AND handle < ?",
                (h[:8], h[:8] + "~"),
            ).fetchone()
            if n == 1:
                prefixes.append(h[:8])
        deep_page = min(DEEP_PAGE, executions // PAGE)
        (deep_before,) = db.execute(
            "SELECT handle FROM executions ORDER BY id DESC LIMIT 1 OFFSET ?",
            ((deep_page - 1) * PAGE - 1,),
        ).fetchone()
        workflow, status, count = db.execute(
            "SELECT workflow_id, status, count(*) FROM executions"
            " GROUP BY workflow_id, status ORDER BY 3 DESC LIMIT 1"
        ).fetchone()
        assert status in protocol.ALL_STATUSES, status
        pages = math.ceil(count / PAGE)
        (last_before,) = db.execute(
            "SELECT handle FROM executions WHERE workflow_id = ? AND status = ?"
            " ORDER BY id DESC LIMIT 1 OFFSET ?",
            (workflow, status, (pages - 1) * PAGE - 1),
        ).fetchone()
    return Targets(
        handles=handles,
        prefixes=prefixes,
        workflows=facts.workflow_ids,
        first_s=facts.first_created_ms / 1000,
        last_s=facts.last_created_ms / 1000,
        deep_page=deep_page,
        deep_before=deep_before,
        filtered_workflow=workflow,
        filtered_status=cast(protocol.Status, status),
        filtered_pages=pages,
        filtered_last_before=last_before,
        big_handle=facts.big_execution_handle,
        big_lines=params.big_execution_lines,
    )


@dataclass
class Context:
    settings: Settings
    quick: bool
    report: Report
    work: Path
    data: Path
    facts: scale_data.Facts
    params: scale_data.Parameters
    child: list[str]
    workflows: Path
    targets: Targets
    supervisor: Supervisord | None = None


def write_workflows(directory: Path, child: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("bench_lines", WORKFLOW.format(python=sys.executable, child=child)),
        ("ticker", TICKER.format(python=sys.executable)),
    ):
        path = directory / name
        path.write_text(text)
        path.chmod(0o755)


# -------------------------------------------------------------------------------- startup


def empty_database(path: Path) -> Path:
    """A migrated database with no history, made by the daemon's own code."""
    from wfmd.store.database import close_database, open_database

    close_database(open_database(path))
    return path


def bench_startup(ctx: Context) -> None:
    r = ctx.report
    r.section("start-up: spawn to READY=1, a fresh copy of the database for every start")
    empty = empty_database(ctx.work / "empty" / "wfm.db")
    no_workflows = ctx.work / "no-workflows"
    no_workflows.mkdir(exist_ok=True)
    times: dict[str, list[float]] = {"empty": [], "big": []}
    copies: list[float] = []
    for run in range(ctx.settings.startup_runs):
        order = ("empty", "big") if run % 2 == 0 else ("big", "empty")
        for kind in order:
            root = ctx.work / f"start-{kind}-{run}"
            database, copied = copy_database(empty if kind == "empty" else ctx.data, root)
            if kind == "big":
                copies.append(copied)
            # Copying 10 GB evicts the interpreter's and wfm's own files from the page cache;
            # read them back for either kind, so that only the database differs. Measured,
            # 8 alternated starts each: big vs empty 1.05x without (empty 211-667 ms), 1.10x
            # with (211-462 ms).
            subprocess.run([sys.executable, "-c", "import wfmd.main, wfmd.daemon"], check=True)
            daemon = Daemon(root, database, no_workflows)
            try:
                times[kind].append(daemon.start())
            finally:
                daemon.stop()
            shutil.rmtree(root)
    big, base = statistics.median(times["big"]), statistics.median(times["empty"])
    r.add(
        f"start-up, {ctx.params.executions:,} executions",
        ms(big),
        baseline=f"empty db {ms(base)}; runs {len(times['big'])}",
        ratio=f"{big / base:.2f}",
        bar=f"<= {STARTUP_RATIO}x empty",
        ok=big <= STARTUP_RATIO * base,
    )
    r.note(
        f"start-up runs (ms) big {[round(t * 1000) for t in times['big']]}, empty "
        f"{[round(t * 1000) for t in times['empty']]}; copying the database took "
        f"{statistics.median(copies):.1f} s per start"
    )


# -------------------------------------------------------------------------------- queries


def bench_queries(ctx: Context, daemon: Daemon) -> None:
    r, t = ctx.report, ctx.targets
    rounds = ctx.settings.query_rounds
    r.section(f"queries: one persistent connection, {rounds} requests each, interleaved")
    rng = random.Random(3)
    day = 86_400.0
    statuses = ["Completed", "Failed", "Cancelled"]
    deep = t.deep_page
    last = t.filtered_pages
    fw, fs = t.filtered_workflow, t.filtered_status

    def window() -> dict[str, Any]:
        since = rng.uniform(t.first_s, max(t.first_s, t.last_s - 30 * day))
        return {
            "workflow_id": rng.choice(t.workflows),
            "status": rng.choice(statuses),
            "since": since,
            "until": since + 30 * day,
        }

    with Client(daemon.socket, timeout=60) as c:
        cases: dict[str, Callable[[], Any]] = {
            "ping (client overhead)": c.ping,
            "status, full handle": lambda: c.status(rng.choice(t.handles)),
            "status, 8-char prefix": lambda: c.status(rng.choice(t.prefixes)),
            "history wf+status+30d, p.1": lambda: c.history(**window()),
            "history, p.1": lambda: c.history(limit=PAGE),
            f"history, p.{deep:,} (before)": lambda: c.history(limit=PAGE, before=t.deep_before),
            "history wf+status, p.1": lambda: c.history(limit=PAGE, workflow_id=fw, status=fs),
            f"history wf+status, p.{last:,} (before)": lambda: c.history(
                limit=PAGE, workflow_id=fw, status=fs, before=t.filtered_last_before
            ),
            "logs tail 100, big execution": lambda: c.logs(t.big_handle, tail=100),
            "logs 100 after seq, big execution": lambda: c.logs(
                t.big_handle, after=rng.randrange(t.big_lines - 100), limit=100
            ),
            "param_history": lambda: c.param_history(rng.choice(t.workflows)),
        }
        check_query_replies(c, t)
        for _ in range(20):  # warm-up: daemon caches, page cache, client code paths
            for fn in cases.values():
                fn()
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, fn in cases.items():
                began = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - began)
        stats_cases = {
            "stats, last 30 days": (lambda: c.stats(since=t.last_s - 30 * day), STATS_30D_MS),
            "stats, whole history": (c.stats, STATS_ALL_MS),
        }
        stats_samples: dict[str, list[float]] = {name: [] for name in stats_cases}
        for _ in range(STATS_ROUNDS):
            for name, (fn, _bar) in stats_cases.items():
                began = time.perf_counter()
                assert fn().workflows
                stats_samples[name].append(time.perf_counter() - began)

    ping = statistics.median(samples["ping (client overhead)"])
    bars = {
        "status, full handle": STATUS_P99_MS,
        "status, 8-char prefix": STATUS_P99_MS,
        "history wf+status+30d, p.1": HISTORY_P99_MS,
        "history, p.1": HISTORY_P99_MS,
        f"history, p.{deep:,} (before)": HISTORY_P99_MS,
        "history wf+status, p.1": HISTORY_P99_MS,
        f"history wf+status, p.{last:,} (before)": HISTORY_P99_MS,
        "logs tail 100, big execution": LOGS_P99_MS,
        "logs 100 after seq, big execution": LOGS_P99_MS,
        "param_history": PARAM_HISTORY_P99_MS,
    }
    for name, values in samples.items():
        p50, p99 = statistics.median(values), pct(values, 0.99)
        if name not in bars:
            r.add(name, f"p99 {ms(p99)}", baseline=f"p50 {ms(p50)} (round trip)")
            continue
        server = p99 - ping
        r.add(
            f"{name}, p99",
            f"{ms(server)} server",
            baseline=f"round trip p50 {ms(p50)}, p99 {ms(p99)}",
            bar=f"<= {bars[name]:g} ms",
            ok=server * 1000 <= bars[name],
        )
    for deep_name, first_name in (
        (f"history, p.{deep:,} (before)", "history, p.1"),
        (f"history wf+status, p.{last:,} (before)", "history wf+status, p.1"),
    ):
        d, f = statistics.median(samples[deep_name]), statistics.median(samples[first_name])
        r.add(
            f"{deep_name}: median vs p.1",
            ms(d),
            baseline=f"page 1 {ms(f)}",
            ratio=f"{d / f:.2f}",
            bar=f"<= {DEEP_PAGE_RATIO}x page 1",
            ok=d <= DEEP_PAGE_RATIO * f,
        )
    for name, values in stats_samples.items():
        bar = stats_cases[name][1]
        median = statistics.median(values)
        r.add(
            f"{name}, median",
            ms(median),
            baseline=f"{len(values)} calls, {ms(min(values))} to {ms(max(values))}",
            bar=f"<= {bar:g} ms",
            ok=median * 1000 <= bar,
        )
    r.note("server-side = round-trip p99 minus the median ping round trip (the client's cost)")


def check_query_replies(c: Client, t: Targets) -> None:
    """The measured requests must return what they claim to, or the figures mean nothing."""
    assert c.status(t.handles[0]).handle == t.handles[0]
    assert c.status(t.prefixes[0]).handle.startswith(t.prefixes[0])
    for page in (
        c.history(limit=PAGE, before=t.deep_before),
        c.history(limit=PAGE, workflow_id=t.filtered_workflow, status=t.filtered_status),
    ):
        assert len(page.executions) == PAGE, len(page.executions)
    last = c.history(
        limit=PAGE,
        workflow_id=t.filtered_workflow,
        status=t.filtered_status,
        before=t.filtered_last_before,
    )
    assert last.executions and last.next_before is None, (len(last.executions), last.next_before)
    tail = c.logs(t.big_handle, tail=100).entries
    assert len(tail) == 100 and tail[-1].seq == t.big_lines - 1, (len(tail), tail[-1].seq)
    after = t.big_lines // 2
    entries = c.logs(t.big_handle, after=after, limit=100).entries
    assert len(entries) == 100 and entries[0].seq == after + 1, (len(entries), entries[0].seq)
    assert c.param_history(t.workflows[0]).values
    # The generated layout reads back as the daemon's own: every line, in order, events typed.
    events = 0
    for handle in t.handles[:50]:
        execution = c.status(handle)
        entries = list(c.iter_logs(handle, limit=10_000))
        assert [e.seq for e in entries] == list(range(execution.log_count)), handle
        events += sum(e.type != "raw_output" and e.event is not None for e in entries)
    assert events, "no structured events in the sampled executions"


# -------------------------------------------------------------------------------- search


def search_terms(database: Path) -> tuple[str, str]:
    """A selective word and a selective phrase, taken from the data: a hexadecimal key of a
    DEBUG line, and the two words `key <hex>` side by side."""
    import apsw  # the FTS5 options of the index need a newer SQLite than the system's

    rng = random.Random(11)
    with contextlib.closing(apsw.Connection(str(database), flags=apsw.SQLITE_OPEN_READONLY)) as db:
        top = cast(int, db.execute("SELECT max(id) FROM execution_logs").get)
        while True:
            row = db.execute(
                "SELECT data FROM execution_logs WHERE id >= ? AND event IS NULL LIMIT 1",
                (rng.randrange(top),),
            ).get
            for line in cast(bytes, row or b"").split(b"\n"):
                if b" key=" in line:
                    word = line.split(b" key=")[1].split()[0].decode()
                    return word, f'"key {word}"'


def index_ratio(database: Path) -> tuple[int, int]:
    """(bytes of the search index's pages, bytes of log text)."""
    import apsw

    with contextlib.closing(apsw.Connection(str(database), flags=apsw.SQLITE_OPEN_READONLY)) as db:
        index = db.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'log_search%'").get
        text = db.execute("SELECT sum(length(data)) FROM execution_logs").get
    return cast(int, index), cast(int, text)


def grep_count(database: Path, word: str, work: Path) -> tuple[float, int]:
    """Seconds for `grep -c WORD` over every log line exported to a file; and its count."""
    import apsw

    text = work / "logs.txt"
    with (
        contextlib.closing(apsw.Connection(str(database), flags=apsw.SQLITE_OPEN_READONLY)) as db,
        text.open("wb") as out,
    ):
        for (data,) in db.execute("SELECT data FROM execution_logs"):
            out.write(data)
    try:
        began = time.perf_counter()
        done = subprocess.run(["grep", "-c", word, str(text)], capture_output=True, check=False)
        return time.perf_counter() - began, int(done.stdout or 0)
    finally:
        text.unlink()


def bench_search(ctx: Context, daemon: Daemon) -> None:
    r, t = ctx.report, ctx.targets
    rounds = ctx.settings.query_rounds
    r.section(f"search: first pages through the daemon, {rounds} each, interleaved")
    word, phrase = search_terms(daemon.database)
    day = 86_400.0
    since = t.last_s - 30 * day
    with Client(daemon.socket, timeout=60) as c:
        cases: dict[str, tuple[Callable[[], Any], float]] = {
            f"word ({word})": (lambda: c.search(word), SEARCH_WORD_P99_MS),
            f"phrase ({phrase})": (lambda: c.search(phrase), SEARCH_PHRASE_P99_MS),
            "word + workflow + 30 days (timed)": (
                lambda: c.search("timed", workflow_id=t.workflows[0], since=since),
                SEARCH_FILTERED_P99_MS,
            ),
        }
        for fn, _bar in cases.values():  # warm-up; and each must find something
            assert fn().hits
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, (fn, _bar) in cases.items():
                began = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - began)
    for name, values in samples.items():
        bar = cases[name][1]
        p99 = pct(values, 0.99)
        r.add(
            f"search {name}, p99",
            ms(p99),
            baseline=f"p50 {ms(statistics.median(values))} (round trip)",
            bar=f"<= {bar:g} ms",
            ok=p99 * 1000 <= bar,
        )
    index, text = index_ratio(daemon.database)
    r.add(
        "search index size",
        f"{index / 1e6:,.0f} MB",
        baseline=f"log text {text / 1e6:,.0f} MB",
        ratio=f"{index / text:.2f}",
        bar=f"<= {SEARCH_INDEX_RATIO}x",
        ok=index <= SEARCH_INDEX_RATIO * text,
    )
    seconds, count = grep_count(daemon.database, word, ctx.work)
    first = statistics.median(samples[f"word ({word})"])
    r.add(
        f"grep -c {word}, all log text in a file",
        f"{seconds:.2f} s",
        baseline=f"{count:,} lines; search's first page p50 {ms(first)}",
        ratio=f"{seconds / first:.0f}",
    )


# -------------------------------------------------------------------------------- memory


def bench_memory(ctx: Context, daemon: Daemon, fresh_rss: float) -> None:
    time.sleep(1.0)
    rss = daemon.rss_mb()
    ctx.report.add(
        "idle RSS on the big database",
        f"{rss:.1f} MB",
        baseline=f"just after start {fresh_rss:.1f} MB",
        bar=f"<= {IDLE_RSS_MB:g} MB",
        ok=rss <= IDLE_RSS_MB,
    )


# ---------------------------------------------------------------------------- throughput


def loadgen_main() -> int:
    """One load generator process: persistent connections driven by one thread (a selector),
    each asking for the status of a random handle as soon as its previous answer arrived;
    latencies of requests inside the window go to stdout. One thread, not one per connection:
    threads of one process queue for the GIL, and that wait would be counted as the daemon's
    latency (and the load generator's CPU taken from the daemon's two cores)."""
    job = json.load(sys.stdin)
    start_at, end_at = job["start_at"], job["start_at"] + job["seconds"]
    rng = random.Random(job["seed"])
    frames = [protocol.encode_frame(protocol.GetStatus(handle=h)) for h in job["handles"]]
    latencies: list[float] = []
    errors: list[str] = []
    selector = selectors.DefaultSelector()
    for _ in range(job["connections"]):
        conn = _LoadConnection(job["socket"])
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        conn.send(rng.choice(frames))
    cpu_at_start: float | None = None
    cpu_in_window = 0.0
    open_connections = job["connections"]
    while open_connections:
        for key, _ in selector.select(timeout=60):
            conn = key.data
            replies = conn.receive()
            if replies is None:
                errors.append("the daemon closed a connection")
                selector.unregister(conn.sock)
                open_connections -= 1
                continue
            if not replies:
                continue  # part of a frame: wait for the rest
            now = time.time()
            for reply, latency in replies:
                if not isinstance(reply, protocol.StatusReply):
                    errors.append(repr(reply))
                elif start_at <= now - latency and now <= end_at:
                    latencies.append(latency)
            if cpu_at_start is None and now >= start_at:
                cpu_at_start = sum(os.times()[:2])
            if now > end_at:
                if cpu_at_start is not None and not cpu_in_window:
                    cpu_in_window = sum(os.times()[:2]) - cpu_at_start
                selector.unregister(conn.sock)
                conn.sock.close()
                open_connections -= 1
            else:
                conn.send(rng.choice(frames))
    json.dump({"latencies": latencies, "errors": errors, "window": cpu_in_window}, sys.stdout)
    return 0


class _LoadConnection:
    """A connection of the load generator: the real protocol over a plain socket."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self._buffer = bytearray()
        self._sent_at = 0.0
        hello = None
        while hello is None:
            replies = self.receive()
            assert replies, "no hello from wfmd"
            hello = replies[0][0]
        assert isinstance(hello, protocol.Hello), hello

    def send(self, frame: bytes) -> None:
        self._sent_at = time.perf_counter()
        self.sock.sendall(frame)

    def receive(self) -> list[tuple[Any, float]] | None:
        """Whole replies read by one recv, with their latency; None at EOF."""
        data = self.sock.recv(65536)
        if not data:
            return None
        latency = time.perf_counter() - self._sent_at
        self._buffer += data
        replies = []
        while len(self._buffer) >= protocol.HEADER.size:
            length = protocol.frame_length(bytes(self._buffer[: protocol.HEADER.size]))
            end = protocol.HEADER.size + length
            if len(self._buffer) < end:
                break
            replies.append((protocol.decode_response(bytes(self._buffer[4:end])), latency))
            del self._buffer[:end]
        return replies


@dataclass
class LoadResult:
    requests_per_s: float
    p50: float
    p99: float
    daemon_cpu: float  # share of one core over the window
    loadgen_cpu: float  # share of one core over the window, all load generator processes
    errors: list[str]
    during: Any = None


def run_load(
    ctx: Context,
    daemon: Daemon,
    seconds: float,
    during: Callable[[float, float], Any] | None = None,
) -> LoadResult:
    start_at = time.time() + LOAD_LEAD
    handles = ctx.targets.handles[:500]
    procs = []
    for seed in range(LOAD_PROCESSES):
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--loadgen"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        job = {
            "socket": str(daemon.socket),
            "handles": handles,
            "connections": LOAD_CONNECTIONS,
            "start_at": start_at,
            "seconds": seconds,
            "seed": seed,
        }
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(job).encode())
        proc.stdin.close()
        procs.append(proc)
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = daemon.cpu()
    outcome = during(start_at, start_at + seconds) if during else None
    time.sleep(max(0.0, start_at + seconds - time.time()))
    cpu1 = daemon.cpu()
    if callable(outcome):  # end what ran alongside before the load generators report
        outcome = outcome()
    latencies: list[float] = []
    errors: list[str] = []
    loadgen_cpu = 0.0
    for proc in procs:
        assert proc.stdout is not None
        result = json.loads(proc.stdout.read())
        proc.wait()
        latencies += result["latencies"]
        errors += result["errors"]
        loadgen_cpu += result["window"]
    return LoadResult(
        requests_per_s=len(latencies) / seconds,
        p50=statistics.median(latencies) if latencies else math.nan,
        p99=pct(latencies, 0.99) if latencies else math.nan,
        daemon_cpu=(cpu1 - cpu0) / seconds,
        loadgen_cpu=loadgen_cpu / seconds,
        errors=errors,
        during=outcome,
    )


def ingest_rate(c: Client, handle: str) -> tuple[float, int]:
    """Cancel the ingesting execution; its lines per second from spawn to end."""
    c.cancel(handle)
    done = c.wait(handle)
    assert done.started_at is not None and done.ended_at is not None
    return done.log_count / (done.ended_at - done.started_at), done.log_count


def start_ingest(c: Client) -> str:
    handle: str = c.run("bench_lines", {"mode": "chunked", "count": str(INGEST_LINES)}).handle
    return handle


@dataclass
class ThroughputRound:
    """One round: the status load alone, ingestion alone, then both at once."""

    load: LoadResult
    solo: float  # lines/s
    loaded: LoadResult  # .during: (lines/s, lines)


def throughput_round(ctx: Context, daemon: Daemon) -> ThroughputRound:
    s = ctx.settings
    load = run_load(ctx, daemon, s.load_seconds)
    with Client(daemon.socket, timeout=120) as c:
        handle = start_ingest(c)
        time.sleep(s.ingest_seconds)
        solo, _ = ingest_rate(c, handle)

    def ingest_during(start_at: float, end_at: float) -> Callable[[], tuple[float, int]]:
        ingest_client = Client(daemon.socket, timeout=120)
        handle = start_ingest(ingest_client)
        time.sleep(max(0.0, end_at - time.time()))

        def finish() -> tuple[float, int]:
            with ingest_client:
                return ingest_rate(ingest_client, handle)

        return finish

    loaded = run_load(ctx, daemon, s.load_seconds, during=ingest_during)
    return ThroughputRound(load, solo, loaded)


def bench_throughput(ctx: Context, daemon: Daemon) -> None:
    r, s = ctx.report, ctx.settings
    clients = LOAD_PROCESSES * LOAD_CONNECTIONS
    r.section(
        f"throughput: {clients} clients ({LOAD_PROCESSES} processes x {LOAD_CONNECTIONS} "
        f"connections) asking for status, {s.load_seconds:g} s windows, "
        f"{s.throughput_rounds} round(s) of: load alone, ingestion alone, both"
    )
    with Client(daemon.socket, timeout=120) as c:
        # Warm-up run of the ingesting workflow (first spawn, page cache for the writes).
        c.wait(c.run("bench_lines", {"mode": "chunked", "count": "10000"}).handle)
    # Rounds interleave the three runs, so that a slow stretch of the machine (its noise is
    # +-20%) weighs on a ratio's both sides; each row is the median over the rounds.
    rounds = [throughput_round(ctx, daemon) for _ in range(s.throughput_rounds)]
    median = statistics.median

    def runs(values: list[float], fmt: Callable[[float], str]) -> str:
        return "" if len(values) < 2 else f"; runs {', '.join(fmt(v) for v in values)}"

    rps = [x.load.requests_per_s for x in rounds]
    p99 = [x.load.p99 for x in rounds]
    r.add(
        f"status requests/s, {clients} clients",
        f"{median(rps):,.0f}/s",
        baseline=f"daemon CPU {median([x.load.daemon_cpu for x in rounds]):.0%}, load "
        f"generator CPU {median([x.load.loadgen_cpu for x in rounds]):.0%}"
        + runs(rps, lambda v: f"{v:,.0f}"),
        bar=f">= {THROUGHPUT_MIN:,}/s",
        ok=median(rps) >= THROUGHPUT_MIN and not any(x.load.errors for x in rounds),
    )
    r.add(
        f"status p99, {clients} clients",
        ms(median(p99)),
        baseline=f"p50 {ms(median([x.load.p50 for x in rounds]))}"
        + runs(p99, lambda v: f"{v * 1000:.2f}"),
        bar=f"<= {THROUGHPUT_P99_MS:g} ms",
        ok=median(p99) * 1000 <= THROUGHPUT_P99_MS,
    )
    loaded_rps = [x.loaded.requests_per_s for x in rounds]
    loaded_p99 = [x.loaded.p99 for x in rounds]
    r.add(
        "status requests/s while ingesting",
        f"{median(loaded_rps):,.0f}/s",
        baseline=f"daemon CPU {median([x.loaded.daemon_cpu for x in rounds]):.0%}, load gen "
        f"{median([x.loaded.loadgen_cpu for x in rounds]):.0%}",
        ok=False if any(x.loaded.errors for x in rounds) else None,
    )
    r.add(
        "status p99 while ingesting",
        ms(median(loaded_p99)),
        baseline=f"p50 {ms(median([x.loaded.p50 for x in rounds]))}"
        + runs(loaded_p99, lambda v: f"{v * 1000:.1f}"),
        bar=f"<= {THROUGHPUT_INGEST_P99_MS:g} ms",
        ok=median(loaded_p99) * 1000 <= THROUGHPUT_INGEST_P99_MS,
    )
    # Each round's share is against the solo run of the same round.
    shares = [x.loaded.during[0] / x.solo for x in rounds]
    r.add(
        "ingestion lines/s under status load",
        f"{median([x.loaded.during[0] for x in rounds]):,.0f}/s",
        baseline=f"solo {median([x.solo for x in rounds]):,.0f}/s"
        + runs(shares, lambda v: f"{v:.2f}"),
        ratio=f"{median(shares):.2f}",
        bar=f">= {INGEST_UNDER_LOAD_SHARE:.0%} of solo",
        ok=median(shares) >= INGEST_UNDER_LOAD_SHARE,
    )
    for x in rounds:
        for error in (x.load.errors + x.loaded.errors)[:3]:
            r.note(f"load generator error: {error}")


# --------------------------------------------------------------------------------- follow


def bench_follow(ctx: Context, daemon: Daemon) -> None:
    r = ctx.report
    count = round(ctx.settings.follow_seconds / FOLLOW_INTERVAL)
    r.section(f"follow: {count} lines, one every {FOLLOW_INTERVAL * 1000:g} ms")
    latencies = []
    with Client(daemon.socket, timeout=60) as c:
        handle = c.run("ticker", {"interval": str(FOLLOW_INTERVAL), "count": str(count)}).handle
        for item in c.follow(handle):
            received = time.time()
            if isinstance(item, LogEntry):
                latencies.append(received - float(item.line.split(" ", 1)[0]))
            else:
                assert item.status == "Completed" and item.log_count == count, item
    assert len(latencies) == count, (len(latencies), count)
    p50, p99 = statistics.median(latencies), pct(latencies, 0.99)
    r.add(
        "follow latency p50 (printed -> received)",
        ms(p50),
        baseline="default commit interval",
        bar=f"<= {FOLLOW_P50_MS:g} ms",
        ok=p50 * 1000 <= FOLLOW_P50_MS,
    )
    r.add(
        "follow latency p99",
        ms(p99),
        baseline=f"max {ms(max(latencies))}",
        bar=f"<= {FOLLOW_P99_MS:g} ms",
        ok=p99 * 1000 <= FOLLOW_P99_MS,
    )


# ------------------------------------------------------------------------------ retention


def bench_retention(ctx: Context) -> None:
    r = ctx.report
    n = ctx.params.executions
    remove = n // 10
    r.section(f"retention: prune the oldest {remove:,} executions, then compress, on a copy")
    root = ctx.work / "retention"
    database, _ = copy_database(ctx.data, root)
    daemon = Daemon(root, database, ctx.workflows)
    daemon.start()
    try:
        delays: list[tuple[float, float]] = []  # (received, printed -> received)
        with Client(daemon.socket, timeout=None) as c:
            ticker = c.run("ticker", {"interval": str(FOLLOW_INTERVAL), "count": "100000000"})

            def follow() -> None:
                with Client(daemon.socket, timeout=None) as f:
                    for item in f.follow(ticker.handle):
                        if isinstance(item, LogEntry):
                            now = time.time()
                            delays.append((now, now - float(item.line.split(" ", 1)[0])))

            follower = threading.Thread(target=follow, daemon=True)
            follower.start()
            time.sleep(2.0)
            began = time.time()
            reply = c.prune(keep=n - remove + 1)  # the ticker is the newest execution
            ended = time.time()
            time.sleep(2.0)
            c.cancel(ticker.handle)
            follower.join(30)
        during = [d for at, d in delays if began <= at <= ended + 0.1]
        outside = [d for at, d in delays if not began <= at <= ended + 0.1]
        seconds = ended - began
        r.add(
            f"prune {reply.executions_removed:,} executions",
            f"{seconds:.1f} s",
            baseline=f"{reply.log_entries_removed:,} entries, {reply.bytes_freed / 1e6:,.0f} MB",
            ratio=f"{reply.executions_removed / max(seconds, 1e-9):,.0f}/s",
        )
        if during and outside:
            r.add(
                "follow latency max during the prune",
                ms(max(during)),
                baseline=f"outside it: max {ms(max(outside))}, p99 {ms(pct(outside, 0.99))}",
                bar=f"<= outside + {PRUNE_FOLLOW_ABOVE_MS:g} ms",
                ok=max(during) * 1000 <= max(outside) * 1000 + PRUNE_FOLLOW_ABOVE_MS,
            )
        else:
            r.note("the prune was too short to overlap the ticker's lines")
    finally:
        daemon.stop()
    # Compression: the next oldest twentieth is cold (a compress_after reaching it).
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        cutoff = conn.execute(
            "SELECT ended_at FROM executions WHERE ended_at IS NOT NULL ORDER BY ended_at"
            " LIMIT 1 OFFSET ?",
            (n // 20,),
        ).fetchone()[0]
    compress_after = time.time() - cutoff / 1000
    config = f"retention_interval = 0\ncompress_after = {compress_after:.0f}\n"
    daemon = Daemon(root, database, ctx.workflows, config=config)
    daemon.start()
    try:
        with Client(daemon.socket, timeout=None) as c:
            began = time.perf_counter()
            c.prune(keep=10 * n)  # removes nothing; compresses what is cold
            seconds = time.perf_counter() - began
            run = c.info().last_retention
            assert run is not None
            r.add(
                "compression of the oldest twentieth",
                f"{seconds:.1f} s",
                baseline=f"{run.bytes_compressed / 1e6:,.0f} MB of log text",
                ratio=f"{run.bytes_compressed / 1e6 / max(seconds, 1e-9):.0f} MB/s",
            )
            stored, raw = compressed_sizes(database)
            ratio = stored / max(raw, 1)
            r.add(
                "compressed log bytes / before",
                f"{ratio:.2f}",
                baseline=f"{raw / 1e6:,.0f} -> {stored / 1e6:,.0f} MB",
                bar=f"<= {COMPRESSED_RATIO}",
                ok=ratio <= COMPRESSED_RATIO,
            )
            r.note(
                f"pages in use fell by {run.bytes_freed / 1e6:,.1f} MB: small rows shrink"
                " inside their pages, which SQLite keeps (a VACUUM gives them back)"
            )
            compressed_logs_pages(ctx, c, database)
    finally:
        daemon.stop()
        shutil.rmtree(root)


def compressed_sizes(database: Path) -> tuple[int, int]:
    """Log bytes of the compressed executions as stored, and as printed."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        stored, raw = conn.execute(
            "SELECT sum(length(l.data)), sum(coalesce(l.raw_size, length(l.data)))"
            " FROM executions AS e CROSS JOIN execution_logs AS l"  # e first: a range each
            " ON l.id BETWEEN e.id << 32 AND (e.id << 32) | 4294967295"
            " WHERE e.logs_compressed = 1"
        ).fetchone()
    return stored or 0, raw or 0


def compressed_logs_pages(ctx: Context, c: Client, database: Path) -> None:
    """Pages of 100 entries of compressed executions against uncompressed ones."""
    r = ctx.report
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:

        def pick(done: int) -> list[tuple[str, int]]:
            return conn.execute(
                "SELECT handle, log_count FROM executions WHERE logs_compressed = ?"
                " AND log_count > 200 ORDER BY random() LIMIT 200",
                (done,),
            ).fetchall()

        compressed, plain = pick(1), pick(0)
    if not compressed or not plain:
        r.note("no compressed (or no uncompressed) execution with 200 entries to page through")
        return
    rng = random.Random(5)
    samples: dict[int, list[float]] = {1: [], 0: []}
    for _ in range(ctx.settings.query_rounds):
        for kind, pool in ((1, compressed), (0, plain)):
            handle, count = rng.choice(pool)
            began = time.perf_counter()
            c.logs(handle, after=rng.randrange(count - 100), limit=100)
            samples[kind].append(time.perf_counter() - began)
    p99, base = pct(samples[1], 0.99), pct(samples[0], 0.99)
    r.add(
        "logs 100 after seq, compressed, p99",
        ms(p99),
        baseline=f"uncompressed {ms(base)}",
        ratio=f"{p99 / base:.2f}",
        bar=f"<= {LOGS_P99_MS:g} ms",
        ok=p99 * 1000 <= LOGS_P99_MS,
    )


# ---------------------------------------------------------------------------- supervisord


SUPERVISORD_CONF = """\
[unix_http_server]
file={root}/supervisor.sock

[supervisord]
logfile={root}/supervisord.log
pidfile={root}/supervisord.pid
childlogdir={root}
nodaemon=true
loglevel=warn

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{root}/supervisor.sock
"""

SUPERVISORD_PROGRAM = """
[program:{name}]
command={command}
autostart=false
autorestart=false
startsecs=0
stdout_logfile={root}/{name}.log
stdout_logfile_maxbytes=0
stdout_logfile_backups=0
"""


class Supervisord:
    """A supervisord on a temporary directory, with one program per capture mode."""

    def __init__(self, root: Path, workflows: Path, lines: int) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.conf = root / "supervisord.conf"
        text = SUPERVISORD_CONF.format(root=root)
        for mode in ("chunked", "per_line"):
            # The very command wfmd runs: the workflow script, which execs the child.
            command = f"{workflows / 'bench_lines'} --mode {mode} --count {lines}"
            text += SUPERVISORD_PROGRAM.format(name=mode, command=command, root=root)
        self.conf.write_text(text)
        self.proc = subprocess.Popen(
            [str(BIN / "supervisord"), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            self.rpc = self._connect()
            try:
                self.rpc.supervisor.getState()
                break
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise SystemExit("supervisord did not start") from None
                time.sleep(0.05)

    def _connect(self) -> Any:
        """An XML-RPC proxy on supervisord's socket: what supervisorctl itself uses."""
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.root}/supervisor.sock")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport)

    def capture(self, mode: str, size: int) -> float:
        """Seconds from asking supervisord to start the program until its log file holds
        `size` bytes."""
        log = self.root / f"{mode}.log"
        # supervisord opens the log when it spawns the program (clearProcessLogs does nothing
        # to a program that has exited), so removing the file starts it empty.
        log.unlink(missing_ok=True)
        began = time.perf_counter()
        self.rpc.supervisor.startProcess(mode, False)
        deadline = time.monotonic() + 600
        while not log.exists() or log.stat().st_size < size:
            if time.monotonic() > deadline:
                raise SystemExit(f"supervisord's {mode} log never reached {size:,} bytes")
            time.sleep(0.0005)
        elapsed = time.perf_counter() - began
        while self.rpc.supervisor.getProcessInfo(mode)["statename"] not in ("EXITED", "STOPPED"):
            time.sleep(0.01)
        assert log.stat().st_size == size, (log.stat().st_size, size)
        return elapsed

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def have_supervisor() -> bool:
    return importlib.util.find_spec("supervisor") is not None and (BIN / "supervisord").exists()


# --------------------------------------------------------------------------------- client


def wall_time(argv: list[str], env: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - began


def user_environment(xdg: Path, socket_path: Path) -> dict[str, str]:
    """The environment of a user's shell whose default socket is the daemon's: no
    WFM_SOCKET, and XDG_RUNTIME_DIR (0700, as a login session's) holding `wfm/wfmd.sock`, a
    link to the daemon's socket, so that wfmctl finds its way there as it would by itself."""
    (xdg / "wfm").mkdir(mode=0o700, parents=True, exist_ok=True)
    xdg.chmod(0o700)
    link = xdg / "wfm" / "wfmd.sock"
    link.unlink(missing_ok=True)
    link.symlink_to(socket_path)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(xdg))
    env.pop("WFM_SOCKET", None)
    return env


def bench_client(ctx: Context, daemon: Daemon) -> None:
    r, runs = ctx.report, ctx.settings.client_runs
    r.section(f"client: fresh processes, median of {runs}, interleaved")
    env = dict(os.environ, WFM_SOCKET=str(daemon.socket))
    handle = ctx.targets.handles[0]
    default_env = user_environment(ctx.work / "xdg", daemon.socket)
    for check_env in (env, default_env):
        check = subprocess.run([WFMCTL, "status", handle], env=check_env, capture_output=True)
        assert check.returncode == 0 and handle in check.stdout.decode(), check
    commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "wfmctl": ([WFMCTL, "status", handle], env),
        "wfmctl, default socket": ([WFMCTL, "status", handle], default_env),
        "python": ([sys.executable, "-I", "-c", "import msgspec, socket"], None),
    }
    if ctx.supervisor is not None:
        supervisorctl = [str(BIN / "supervisorctl"), "-c", str(ctx.supervisor.conf), "status"]
        commands["supervisorctl"] = (supervisorctl, None)
    # msgspec imports typing_extensions whenever it is installed: that is so in a development
    # environment (mypy needs it), not in a user's install of wfm. It adds the same to wfmctl
    # and the bare-python baseline; measure how much, so that the figures can be read.
    extras = importlib.util.find_spec("typing_extensions") is not None
    if extras:
        without = "import sys; sys.modules['typing_extensions'] = None; import msgspec, socket"
        commands["python, no typing_extensions"] = ([sys.executable, "-I", "-c", without], None)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for argv, cmd_env in commands.values():
        # Warm-up: page cache, and .pyc files even where PYTHONDONTWRITEBYTECODE is set (an
        # editable install would otherwise recompile changed modules at every start; an
        # installed package has its bytecode). Same for every command.
        warm_env = dict(cmd_env or os.environ)
        warm_env.pop("PYTHONDONTWRITEBYTECODE", None)
        wall_time(argv, warm_env)
    for _ in range(runs):
        for name, (argv, cmd_env) in commands.items():
            times[name].append(wall_time(argv, cmd_env))
    med = {name: statistics.median(values) for name, values in times.items()}
    r.add(
        "`wfmctl status HANDLE`, default socket, vs bare python",
        ms(med["wfmctl, default socket"]),
        baseline=f"python -I -c 'import msgspec, socket' {ms(med['python'])}",
        ratio=f"{med['wfmctl, default socket'] / med['python']:.2f}",
        bar=f"<= {CLIENT_VS_PYTHON}x",
        ok=med["wfmctl, default socket"] <= CLIENT_VS_PYTHON * med["python"],
    )
    r.add(
        "`wfmctl status HANDLE` vs bare python",
        ms(med["wfmctl"]),
        baseline=f"python -I -c 'import msgspec, socket' {ms(med['python'])}",
        ratio=f"{med['wfmctl'] / med['python']:.2f}",
        bar=f"<= {CLIENT_VS_PYTHON}x",
        ok=med["wfmctl"] <= CLIENT_VS_PYTHON * med["python"],
    )
    if "supervisorctl" in med:
        r.add(
            "`wfmctl status HANDLE` vs supervisorctl",
            ms(med["wfmctl"]),
            baseline=f"supervisorctl status {ms(med['supervisorctl'])}",
            ratio=f"{med['wfmctl'] / med['supervisorctl']:.2f}",
            bar=f"<= {CLIENT_VS_SUPERVISORCTL}x",
            ok=med["wfmctl"] <= CLIENT_VS_SUPERVISORCTL * med["supervisorctl"],
        )
    else:
        r.note("supervisor is not installed: the supervisorctl comparison was skipped")
    if extras:
        extra_ms = (med["python"] - med["python, no typing_extensions"]) * 1000
        r.note(
            f"typing_extensions is installed here (a development tool's dependency, not "
            f"wfm's): msgspec imports it, which adds {extra_ms:.1f} ms to wfmctl and to the "
            f"bare-python baseline alike; run the bench from a virtualenv with only "
            f"'.[bench]' to measure what users install (README)"
        )


# ---------------------------------------------------------------------------------- peers


def bench_peers(ctx: Context, daemon: Daemon) -> None:
    r, s = ctx.report, ctx.settings
    if ctx.supervisor is None:
        r.note("supervisor is not installed: the capture comparison was skipped")
        return
    lines = s.peer_lines
    r.section(f"peers: {lines:,} lines, same child, median of {s.peer_repeats}")
    with Client(daemon.socket, timeout=600) as c:
        c.wait(c.run("bench_lines", {"mode": "per_line", "count": "1000"}).handle)
        for mode in ("chunked", "per_line"):
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(s.peer_repeats):
                theirs.append(ctx.supervisor.capture(mode, lines * LINE_BYTES))
                began = time.perf_counter()
                handle = c.run("bench_lines", {"mode": mode, "count": str(lines)}).handle
                done = c.wait(handle)
                ours.append(time.perf_counter() - began)
                assert done.status == "Completed" and done.log_count == lines, done
            wfmd, sup = statistics.median(ours), statistics.median(theirs)
            bar = PEER_PER_LINE_RATIO if mode == "per_line" else None
            r.add(
                f"capture, {mode} child: wfmd lines/s",
                f"{lines / wfmd:,.0f}/s",
                baseline=f"supervisord to a file {lines / sup:,.0f}/s",
                ratio=f"{wfmd / sup:.2f}",
                bar="" if bar is None else f"time <= {bar}x supervisord",
                ok=None if bar is None else wfmd <= bar * sup,
            )
    r.note(
        "supervisord: startProcess over its XML-RPC socket (what supervisorctl sends) until "
        "the log file is complete; wfmd: run over a connected client until the end is committed"
    )


# ----------------------------------------------------------------------------------- many


def bench_many(ctx: Context, daemon: Daemon) -> None:
    r, s = ctx.report, ctx.settings
    n = s.many_workflows
    count = round(s.many_seconds / MANY_INTERVAL)
    r.section(f"many workflows: {n} at once, {1 / MANY_INTERVAL:g} lines/s each for ~{count} lines")
    rss_samples: list[float] = []
    stop = threading.Event()

    def sample_rss() -> None:
        while not stop.is_set():
            rss_samples.append(daemon.rss_mb())
            stop.wait(0.25)

    sampler = threading.Thread(target=sample_rss)
    sampler.start()
    try:
        with Client(daemon.socket, timeout=120) as c:
            submitted = time.time()
            params = {"interval": str(MANY_INTERVAL), "count": str(count)}
            handles = [c.run("ticker", params).handle for _ in range(n)]
            while c.ping().running < n:
                if time.time() - submitted > s.many_seconds / 2:
                    break
                time.sleep(0.05)
            all_running = time.time()
            window_start = all_running + 1.0
            window_end = submitted + s.many_seconds - 0.5
            if window_end - window_start < 1.0:
                r.note("many workflows: their start-up took most of the run; window extended")
                window_end = window_start + 1.0
            time.sleep(max(0.0, window_start - time.time()))
            cpu0 = daemon.cpu()
            time.sleep(max(0.0, window_end - time.time()))
            cpu1 = daemon.cpu()
            done = [c.wait(h) for h in handles]
    finally:
        stop.set()
        sampler.join()
    share = (cpu1 - cpu0) / (window_end - window_start)
    lost = sum(count - d.log_count for d in done)
    bad = [d.handle for d in done if d.status != "Completed" or d.log_count != count]
    r.add(
        f"{n} workflows x {1 / MANY_INTERVAL:g} lines/s: daemon CPU",
        f"{share:.1%} of a core",
        baseline=f"over {window_end - window_start:.1f} s, all {n} running",
        bar=f"<= {MANY_CPU_SHARE:.0%}",
        ok=share <= MANY_CPU_SHARE,
    )
    peak = max(rss_samples)
    r.add(
        f"{n} workflows: daemon RSS, max",
        f"{peak:.1f} MB",
        baseline=f"before {rss_samples[0]:.1f} MB",
        bar=f"<= {MANY_RSS_MB:g} MB",
        ok=peak <= MANY_RSS_MB,
    )
    r.add(
        f"{n} workflows: lines lost",
        f"{lost:,}",
        baseline=f"{n * count:,} printed; {len(bad)} runs not complete",
        bar="0",
        ok=lost == 0 and not bad,
    )


# ----------------------------------------------------------------------------------- main


def main() -> int:
    if sys.argv[1:] == ["--loadgen"]:
        return loadgen_main()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scale, bars not enforced")
    parser.add_argument("--scale", type=float, help="database scale (1.0 = 1M executions)")
    parser.add_argument("--data-dir", type=Path, help="where generated databases are cached")
    parser.add_argument("--work-dir", type=Path, help="for database copies (default: $TMPDIR)")
    parser.add_argument("--only", help=f"comma-separated sections of: {','.join(SECTIONS)}")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    if args.scale is not None:
        settings = dataclasses.replace(settings, scale=args.scale)
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    if only - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(only - set(SECTIONS)))}")
    report = Report(enforce=not args.quick)
    with (
        tempfile.TemporaryDirectory(prefix="wfm-scale-", dir=args.work_dir) as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        # A quick run builds its small database afresh (about a second) rather than leave
        # files behind in CI; full runs cache theirs.
        data_dir = args.data_dir or (
            Path(os.environ["WFM_BENCH_DATA"])
            if os.environ.get("WFM_BENCH_DATA")
            else work / "data"
            if args.quick
            else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wfm-bench"
        )
        params = scale_data.Parameters.for_scale(settings.scale, seed=1)
        data = data_dir / f"scale-{settings.scale:g}.db"
        began = time.monotonic()
        facts, reused = scale_data.ensure(params, data, progress=not args.quick)
        how = "reused" if reused else f"generated in {time.monotonic() - began:.1f} s"
        print(
            f"database {data} ({how}): {params.executions:,} executions, "
            f"{params.log_lines:,} log entries in {facts.log_rows:,} rows, "
            f"{facts.db_bytes / 1e6:,.1f} MB",
            flush=True,
        )
        started = time.monotonic()
        free = shutil.disk_usage(work).free
        if free < 2.5 * facts.db_bytes:
            raise SystemExit(f"{work}: {free / 1e9:.1f} GB free, want {2.5 * facts.db_bytes:,}")
        child = build_child(work)
        workflows = work / "workflows"
        write_workflows(workflows, child)
        ctx = Context(
            settings=settings,
            quick=args.quick,
            report=report,
            work=work,
            data=data,
            facts=facts,
            params=params,
            child=child,
            workflows=workflows,
            targets=pick_targets(data, facts, params),
        )
        if "startup" in only:
            bench_startup(ctx)
        if "retention" in only:
            bench_retention(ctx)
        main_sections = only - {"startup", "retention"}
        if main_sections:
            if have_supervisor() and main_sections & {"client", "peers"}:
                ctx.supervisor = Supervisord(work / "supervisord", workflows, settings.peer_lines)
                stack.callback(ctx.supervisor.stop)
            database, _ = copy_database(data, work / "main")
            daemon = Daemon(work / "main", database, workflows, ("--max-concurrent", "256"))
            stack.callback(daemon.stop)
            daemon.start()
            time.sleep(0.5)
            fresh_rss = daemon.rss_mb()
            for name, fn in (
                ("queries", bench_queries),
                ("search", bench_search),
                ("memory", lambda c, d: bench_memory(c, d, fresh_rss)),
                ("throughput", bench_throughput),
                ("follow", bench_follow),
                ("client", bench_client),
                ("peers", bench_peers),
                ("many", bench_many),
            ):
                if name in only:
                    fn(ctx, daemon)
    print(f"\n{time.monotonic() - started:.0f} s of measurement (+ data: {how})")
    if args.json:
        rows = [dataclasses.asdict(row) for row in report.rows]
        meta = {"scale": settings.scale, "quick": args.quick, "notes": report.notes}
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=1))
    missed = report.missed
    if missed and not args.quick:
        print("MISSED: " + "; ".join(f"{m.measure} ({m.value}, bar {m.bar})" for m in missed))
        return 1
    if missed:
        print(f"quick run (bars not enforced): {len(missed)} not met at this scale")
    else:
        print("all bars met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
