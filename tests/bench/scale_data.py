"""A realistic wfm database at scale, written directly in the project's own layout.

    python tests/bench/scale_data.py --out ~/.cache/wfm-bench/scale-1.db        # full
    python tests/bench/scale_data.py --out /tmp/scale-0.01.db --scale 0.01      # 1%, seconds

At `--scale 1`: 1,000,000 executions of 50 workflows over two years (`created_at` increasing
with the id), 2-4 parameters each with values that repeat the way real ones do, and
100,000,000 log entries in rows of 20-500 lines (~80-byte lines, stdout and stderr, and
valid `__WF_EVENT__:{...}` event rows with their `event` column set), one execution of
them holding 10,000,000 lines. Every count scales with `--scale` except the number of
workflows.

The file is created by the daemon's own code (`open_database` runs the real migrations),
then filled with big `executemany` transactions with the journal off: a database built the
way the daemon builds it would take days. At the end it is closed and opened once more the
way a daemon start and stop would (`open_database`, `close_database`), so that the one-off
work a first start does on a database never opened by wfmd (statistics for the query
planner) is not charged to the first measured start.

No execution is NotStarted or Running: a daemon starting on the database would spawn the
former and recover the latter (marking them Failed), which would both change the data
between runs and add work to start-up that has nothing to do with the size of history.

The output is cached: `--out PATH` is skipped when it exists and its sidecar `PATH.json`
records the same parameters (scale, seed, generator version, schema). The database is
written as `PATH.partial` and renamed only once complete.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import itertools
import json
import math
import os
import random
import sys
import time
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wfmd.events import event_type
from wfmd.store import search
from wfmd.store.database import PAGE_SIZE, close_database, load_migrations, open_database
from wfmd.store.logs import SEQ_BITS

# Bump whenever the generated data changes, so that cached databases are rebuilt.
GENERATOR_VERSION = 2  # 2: the search index is built too

FULL_EXECUTIONS = 1_000_000
FULL_LOG_LINES = 100_000_000
FULL_BIG_EXECUTION_LINES = 10_000_000
INDEX_BATCH_BYTES = 64 * 1024 * 1024  # per transaction while building the search index
WORKFLOWS = 50  # not scaled: a user has tens of workflows whatever the size of history
SPAN_DAYS = 730  # two years of history

# Lines per stored row. The writer stores what one pipe read delivered (merged within a
# millisecond); for children that print steadily that is tens to hundreds of lines.
ROW_LINES = (20, 500)
STDERR_SHARE = 0.15  # of raw output rows

STATUS_WEIGHTS = {"Completed": 0.78, "Failed": 0.17, "Cancelled": 0.05}
CANCELLED_BEFORE_START = 0.1  # of Cancelled: never spawned, no output
# Share of workflows that report progress as structured events.
EVENT_WORKFLOWS = 0.5

# Rows per executemany batch and executions per transaction: big enough that SQLite, not
# Python, is the cost; small enough to keep memory flat at any scale.
EXECUTION_CHUNK = 20_000

POOL_LINES = 1 << 14  # distinct text lines rows are cut from
LINE_LENGTHS = (40, 119)  # characters before the newline: 80 bytes on average with it

# SQLite page cache during generation (KiB): holds the executions indexes, so inserting
# random UUID handles does not thrash.
GENERATION_CACHE_KIB = 1_000_000


@dataclass(frozen=True)
class Parameters:
    """Everything that decides the content; the sidecar must match it for a cache hit."""

    scale: float
    seed: int
    executions: int
    log_lines: int
    big_execution_lines: int
    workflows: int
    generator_version: int
    schema: str  # hash of the migrations and page size: a new layout means a new database

    @classmethod
    def for_scale(cls, scale: float, seed: int) -> Parameters:
        executions = max(WORKFLOWS * 2, round(FULL_EXECUTIONS * scale))
        big = max(1_000, round(FULL_BIG_EXECUTION_LINES * scale))
        lines = max(big + executions * 2, round(FULL_LOG_LINES * scale))
        layout = "\n".join([str(PAGE_SIZE), *(m.sql for m in load_migrations())])
        schema = hashlib.sha256(layout.encode()).hexdigest()[:16]
        return cls(scale, seed, executions, lines, big, WORKFLOWS, GENERATOR_VERSION, schema)


@dataclass(frozen=True)
class Facts:
    """What the generator knows about its output; benchmarks pick their targets from it."""

    big_execution_id: int
    big_execution_handle: str
    first_created_ms: int
    last_created_ms: int
    workflow_ids: list[str]
    log_rows: int
    params: int
    db_bytes: int
    seconds: float


# --------------------------------------------------------------------------- content


_COMPONENTS = [
    "fetcher",
    "parser",
    "indexer",
    "uploader",
    "scheduler",
    "worker-1",
    "worker-2",
    "worker-3",
    "cache",
    "db",
    "http",
    "auth",
    "compiler",
    "linker",
    "tests",
]
_VERBS = ["build", "sync", "backup", "deploy", "index", "report", "migrate", "scan", "train"]
_NOUNS = ["docs", "photos", "site", "db", "mail", "models", "logs", "repo", "assets", "data"]


_FILLER = "".join(random.Random(0).choices("abcdefghijklmnopqrstuvwxyz0123456789 ", k=4096))


def _fit(text: str, rng: random.Random) -> bytes:
    """`text` cut or padded to a realistic length, with its newline."""
    length = rng.randint(*LINE_LENGTHS)
    if len(text) < length:
        at = rng.randrange(len(_FILLER) - length)
        text += " " + _FILLER[at : at + length]
    return text[:length].rstrip().encode() + b"\n"


def _stdout_line(rng: random.Random, i: int) -> bytes:
    stamp = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
    stamp += f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z"
    comp = rng.choice(_COMPONENTS)
    kind = i % 6
    if kind == 0:
        text = f"{stamp} INFO  {comp}: processed item {rng.randint(1, 10**6)} in "
        text += f"{rng.random() * 50:.1f} ms"
    elif kind == 1:
        text = (
            f"{stamp} DEBUG {comp}: cache hit ratio {rng.random():.3f} key={rng.getrandbits(64):x}"
        )
    elif kind == 2:
        mod = rng.choice(_NOUNS)
        text = f"[{rng.randint(1, 400)}/400] compiling src/{mod}/{rng.choice(_VERBS)}_{i}.c"
    elif kind == 3:
        text = f"{stamp} INFO  {comp}: wrote {rng.randint(1, 99999)} records to "
        text += f"/var/lib/{rng.choice(_NOUNS)}/part-{i:05d}.parquet"
    elif kind == 4:
        text = f"  {rng.randint(0, 100)}% |{'#' * rng.randint(0, 30)}| {rng.randint(1, 9999)}/9999"
    else:
        text = f"{stamp} INFO  {comp}: GET /api/v1/{rng.choice(_NOUNS)}/{rng.randint(1, 9999)}"
        text += f" 200 {rng.randint(100, 90000)}B {rng.random() * 300:.0f}ms"
    return _fit(text, rng)


def _stderr_line(rng: random.Random, i: int) -> bytes:
    kind = i % 4
    if kind == 0:
        text = f"WARNING: {rng.choice(_COMPONENTS)}: retrying request {rng.getrandbits(32):08x} "
        text += f"(attempt {rng.randint(1, 5)}/5)"
    elif kind == 1:
        text = f'  File "/usr/lib/python3/dist-packages/{rng.choice(_NOUNS)}/core.py", '
        text += f"line {rng.randint(1, 3000)}, in run"
    elif kind == 2:
        text = (
            f"{rng.choice(_VERBS)}: deprecated option --{rng.choice(_NOUNS)}-mode will be removed"
        )
    else:
        text = f"error: {rng.choice(_COMPONENTS)} timed out after {rng.randint(1, 60)}s"
    return _fit(text, rng)


class LinePool:
    """Many distinct lines in one buffer: k consecutive lines are a single slice."""

    def __init__(self, rng: random.Random, make: Any) -> None:
        lines = [make(rng, i) for i in range(POOL_LINES)]
        self.buffer = b"".join(lines)
        self.offsets = array("Q", itertools.accumulate((len(x) for x in lines), initial=0))

    def take(self, rng: random.Random, count: int) -> bytes:
        start = rng.randrange(POOL_LINES - count + 1)
        return self.buffer[self.offsets[start] : self.offsets[start + count]]


def _event(kind: str, **fields: Any) -> tuple[str, bytes]:
    line = b"__WF_EVENT__:" + json.dumps({"type": kind, **fields}).encode() + b"\n"
    # Written exactly as the daemon would store it: only lines it recognises are events.
    assert event_type(line[:-1]) == kind, line
    return kind, line


def event_script(rng: random.Random, phases: int) -> list[tuple[str, bytes]]:
    """The events of one run of a workflow with `phases` phases, in order."""
    names = ["prepare", "fetch", "process", "verify", "publish"]
    out = []
    for phase in range(1, phases + 1):
        name = names[(phase - 1) % len(names)]
        out.append(_event("phase_started", phase=phase, name=name, total_phases=phases))
        tasks = rng.randint(1, 3)
        for t in range(1, tasks + 1):
            task_id = f"{name}-{t}"
            out.append(
                _event(
                    "task_started",
                    phase=phase,
                    task_id=task_id,
                    description=f"{name} batch {t}",
                    total_tasks=tasks,
                )
            )
            if rng.random() < 0.5:
                agent = rng.choice(["claude", "reviewer", "planner"])
                out.append(
                    _event(
                        "agent_started",
                        task_id=task_id,
                        agent_name=agent,
                        description=f"{agent} on {task_id}",
                    )
                )
                out.append(
                    _event(
                        "agent_message",
                        task_id=task_id,
                        agent_name=agent,
                        message=f"looked at {rng.randint(1, 40)} files",
                    )
                )
                out.append(
                    _event("agent_completed", task_id=task_id, agent_name=agent, result="ok")
                )
            out.append(
                _event("task_progress", task_id=task_id, message=f"{rng.randint(1, 99)}% done")
            )
            if phase == phases and rng.random() < 0.3:
                out.append(
                    _event(
                        "state_file_created",
                        phase=phase,
                        file_path=f"/home/user/state/{task_id}.json",
                        description="checkpoint",
                    )
                )
            out.append(_event("task_completed", task_id=task_id, result=f"{rng.randint(1, 999)}"))
        out.append(_event("phase_completed", phase=phase, name=name))
    return out


@dataclass(frozen=True)
class FieldSpec:
    name: str
    cli_arg: str
    values: list[str]
    cum_weights: list[float]  # Zipf-like: a few values are used most of the time


def _field_catalog(rng: random.Random) -> list[FieldSpec]:
    def spec(name: str, values: list[str]) -> FieldSpec:
        weights = [1.0 / (k + 1) ** 1.1 for k in range(len(values))]
        return FieldSpec(name, f"--{name}", values, list(itertools.accumulate(weights)))

    paths = [f"/home/user/{rng.choice(_NOUNS)}/{rng.choice(_VERBS)}-{i}.csv" for i in range(200)]
    messages = [f"{rng.choice(_VERBS)} the {rng.choice(_NOUNS)} ({i})" for i in range(60)]
    return [
        spec("input", paths),
        spec("message", messages),
        spec("count", [str(n) for n in range(1, 11)]),
        spec("mode", ["fast", "full", "dry-run", "incremental"]),
        spec("target", ["staging", "production", "dev", "qa"]),
        spec("phases", ["1", "2", "3", "4"]),
        spec("branch", ["main", "develop", *[f"feature/{n}-{i}" for i, n in enumerate(_NOUNS)]]),
        spec("retries", [str(n) for n in range(6)]),
        spec("state", [f"/home/user/state/{rng.choice(_NOUNS)}-{i}.json" for i in range(50)]),
    ]


@dataclass(frozen=True)
class WorkflowSpec:
    id: str
    path: str
    fields: list[FieldSpec]
    phases: int  # 0: reports no structured events
    typical_lines: float


def _workflows(rng: random.Random, count: int) -> list[WorkflowSpec]:
    catalog = _field_catalog(rng)
    names = [f"{v}_{n}" for v in _VERBS for n in _NOUNS]
    rng.shuffle(names)
    out = []
    for i in range(count):
        wid = names[i % len(names)] + ("" if i < len(names) else f"_{i}")
        fields = rng.sample(catalog, rng.randint(2, 4))
        phases = rng.randint(1, 4) if rng.random() < EVENT_WORKFLOWS else 0
        out.append(
            WorkflowSpec(
                wid,
                f"/home/user/.local/share/wfm/workflows/{wid}",
                fields,
                phases,
                rng.lognormvariate(0, 1.0),
            )
        )
    return out


# --------------------------------------------------------------------------- generation


def _line_counts(rng: random.Random, weights: list[float], total: int) -> list[int]:
    """Split `total` lines in proportion to `weights` (0 weight: 0 lines, else at least 1)."""
    live = sum(1 for w in weights if w > 0)
    spare = total - live
    wsum = sum(weights)
    counts = [(1 + int(w * spare / wsum)) if w > 0 else 0 for w in weights]
    missing = total - sum(counts)
    order = sorted(range(len(weights)), key=lambda i: -weights[i])
    for i in itertools.islice(itertools.cycle(order), missing):
        counts[i] += 1
    return counts


class Generator:
    def __init__(self, params: Parameters) -> None:
        self.p = params
        self.rng = random.Random(params.seed)
        rng = self.rng
        self.workflows = _workflows(rng, params.workflows)
        self.stdout_pool = LinePool(random.Random(params.seed + 1), _stdout_line)
        self.stderr_pool = LinePool(random.Random(params.seed + 2), _stderr_line)
        self.scripts = {
            phases: [event_script(rng, phases) for _ in range(50)] for phases in range(1, 5)
        }
        self.log_rows = 0
        self.param_rows = 0

    def plan(self) -> tuple[list[int], list[int], list[str], list[int], int]:
        """Per execution (index = id - 1): created_at, workflow index, status, line count;
        and the id of the one big execution."""
        p, rng = self.p, self.rng
        n = p.executions
        end = int(time.time() * 1000)
        start = end - SPAN_DAYS * 86_400_000
        created = sorted(start + int(rng.random() * (end - start)) for _ in range(n))
        popularity = list(itertools.accumulate(1.0 / (k + 1) ** 0.8 for k in range(p.workflows)))
        wf = rng.choices(range(p.workflows), cum_weights=popularity, k=n)
        statuses = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()), k=n)
        big_id = n * 9 // 10
        statuses[big_id - 1] = "Completed"
        weights = []
        for i in range(n):
            silent = statuses[i] == "Cancelled" and rng.random() < CANCELLED_BEFORE_START
            w = 0.0 if silent else self.workflows[wf[i]].typical_lines * rng.lognormvariate(0, 1)
            weights.append(w)
        weights[big_id - 1] = 0.0
        lines = _line_counts(rng, weights, p.log_lines - p.big_execution_lines)
        lines[big_id - 1] = p.big_execution_lines
        return created, wf, statuses, lines, big_id

    def execution(
        self, eid: int, created: int, wf_index: int, status: str, lines: int, big: bool
    ) -> tuple[tuple[Any, ...], list[tuple[Any, ...]], Iterator[tuple[Any, ...]]]:
        """The execution row, its parameter rows, and its log rows (lazily)."""
        rng = self.rng
        wf = self.workflows[wf_index]
        handle = str(uuid.UUID(bytes=rng.randbytes(16), version=4))
        values = [
            f.values[bisect.bisect(f.cum_weights, rng.random() * f.cum_weights[-1])]
            for f in wf.fields
        ]
        params = [
            (eid, pos, f.name, v) for pos, (f, v) in enumerate(zip(wf.fields, values, strict=True))
        ]
        argv = [wf.path]
        for f, v in zip(wf.fields, values, strict=True):
            argv += [f.cli_arg, v]
        timeout_ms = 3_600_000 if rng.random() < 0.1 else None
        exit_code: int | None = None
        sig: int | None = None
        if status == "Cancelled" and lines == 0:
            started = ended = None
            reason = "cancelled before it started"
            ended = created + rng.randint(1_000, 600_000)
        else:
            started = created + int(rng.expovariate(1 / 300))
            duration = 6 * 3_600_000 if big else int(rng.lognormvariate(math.log(30_000), 1.5)) + 50
            ended = started + duration
            if status == "Completed":
                exit_code, reason = 0, "exited with status 0"
            elif status == "Cancelled":
                sig, reason = 15, "cancelled by request"
            else:
                roll = rng.random()
                if roll < 0.75:
                    exit_code = rng.choice([1, 1, 1, 2, 3, 127])
                    reason = f"exited with status {exit_code}"
                elif roll < 0.9:
                    sig, reason = 9, "killed by signal 9 (SIGKILL)"
                elif timeout_ms is not None:
                    sig, reason = 15, f"timed out after {timeout_ms // 1000:g} s"
                    ended = started + timeout_ms
                else:
                    reason = "interrupted: the daemon supervising it died"
        row = (
            eid,
            handle,
            wf.id,
            status,
            reason,
            created,
            started,
            ended,
            exit_code,
            sig,
            None,
            timeout_ms,
            lines,
            json.dumps(argv),
        )
        logs = self._log_rows(eid, wf, lines, started or created, ended) if lines else iter(())
        return row, params, logs

    def _log_rows(
        self, eid: int, wf: WorkflowSpec, lines: int, started: int, ended: int
    ) -> Iterator[tuple[Any, ...]]:
        rng = self.rng
        events: list[tuple[str, bytes]] = []
        if wf.phases:
            script = rng.choice(self.scripts[wf.phases])
            events = script[: min(len(script), lines // 5)]
        raw = lines - len(events)
        sizes = []
        while raw > 0:
            size = min(raw, rng.randint(*ROW_LINES))
            sizes.append(size)
            raw -= size
        # Events spread evenly among the raw rows, in script order.
        slots = [(k * (len(sizes) + 1)) // max(1, len(events)) for k in range(len(events))]
        base = eid << SEQ_BITS
        span = max(1, ended - started)
        seq = 0
        ev = 0
        for r in range(len(sizes) + 1):
            while ev < len(events) and slots[ev] <= r:
                kind, data = events[ev]
                yield (base | seq, 2, started + span * seq // lines, 1, kind, data)
                seq += 1
                ev += 1
            if r < len(sizes):
                size = sizes[r]
                if rng.random() < STDERR_SHARE:
                    stream, data = 2, self.stderr_pool.take(rng, size)
                else:
                    stream, data = 1, self.stdout_pool.take(rng, size)
                yield (base | seq, stream, started + span * seq // lines, size, None, data)
                seq += size
        assert seq == lines, (eid, seq, lines)


_INSERT_EXECUTION = (
    "INSERT INTO executions (id, handle, workflow_id, status, reason, created_at, started_at,"
    " ended_at, exit_code, signal, pid, timeout_ms, log_count, argv)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PARAM = (
    "INSERT INTO execution_params (execution_id, position, name, value) VALUES (?, ?, ?, ?)"
)
_INSERT_LOG = (
    "INSERT INTO execution_logs (id, stream, ts, lines, event, data) VALUES (?, ?, ?, ?, ?, ?)"
)


def generate(params: Parameters, out: Path, *, progress: bool = True) -> Facts:
    """Write the database to `out` (replacing it). Returns what the benchmarks need."""
    began = time.monotonic()
    partial = out.with_name(out.name + ".partial")
    for leftover in (partial, *(partial.with_name(partial.name + s) for s in ("-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
    gen = Generator(params)
    created, wf, statuses, lines, big_id = gen.plan()
    conn = open_database(partial)
    # Generation only: nothing here needs to survive a crash, the file is renamed when done.
    conn.pragma("journal_mode", "off")
    conn.pragma("synchronous", "off")
    conn.pragma("locking_mode", "exclusive")
    conn.pragma("cache_size", -GENERATION_CACHE_KIB)
    big_handle = ""
    n = params.executions
    for lo in range(0, n, EXECUTION_CHUNK):
        exec_rows = []
        param_rows: list[tuple[Any, ...]] = []
        log_iters = []
        for i in range(lo, min(n, lo + EXECUTION_CHUNK)):
            eid = i + 1
            row, prm, logs = gen.execution(
                eid, created[i], wf[i], statuses[i], lines[i], eid == big_id
            )
            if eid == big_id:
                big_handle = row[1]
            exec_rows.append(row)
            param_rows.extend(prm)
            log_iters.append(logs)
        with conn:
            conn.executemany(_INSERT_EXECUTION, exec_rows)
            conn.executemany(_INSERT_PARAM, param_rows)
            counted = _counting(itertools.chain.from_iterable(log_iters))
            conn.executemany(_INSERT_LOG, counted)
            gen.log_rows += counted.count
            gen.param_rows += len(param_rows)
        if progress:
            done = min(n, lo + EXECUTION_CHUNK)
            elapsed = time.monotonic() - began
            print(
                f"\r  {done:,}/{n:,} executions, {gen.log_rows:,} log rows, {elapsed:.0f} s",
                end="",
                file=sys.stderr,
                flush=True,
            )
    if progress:
        print(file=sys.stderr)
    _verify(conn, params)
    # Searchable, as a daemon's history is once its indexer has caught up: a daemon started
    # on it must not spend the measurements indexing.
    indexed = 0
    while done := search.index_batch(conn, INDEX_BATCH_BYTES):
        indexed += done
        if progress:
            print(f"\r  indexed for search: {indexed:,} rows", end="", file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    conn.pragma("locking_mode", "normal")
    conn.pragma("journal_mode", "wal")
    close_database(conn)
    # Once more as a daemon start and stop would: the one-off planner statistics.
    close_database(open_database(partial))
    for suffix in ("-wal", "-shm"):
        partial.with_name(partial.name + suffix).unlink(missing_ok=True)
    os.replace(partial, out)
    return Facts(
        big_execution_id=big_id,
        big_execution_handle=big_handle,
        first_created_ms=created[0],
        last_created_ms=created[-1],
        workflow_ids=[w.id for w in gen.workflows],
        log_rows=gen.log_rows,
        params=gen.param_rows,
        db_bytes=out.stat().st_size,
        seconds=round(time.monotonic() - began, 1),
    )


class _counting:
    """An iterator that counts what passes through it."""

    def __init__(self, source: Iterator[tuple[Any, ...]]) -> None:
        self._source = source
        self.count = 0

    def __iter__(self) -> _counting:
        return self

    def __next__(self) -> tuple[Any, ...]:
        item = next(self._source)
        self.count += 1
        return item


def _verify(conn: Any, params: Parameters) -> None:
    """Cheap consistency checks: counts agree between tables and with the parameters."""
    executions, log_count = conn.execute("SELECT count(*), sum(log_count) FROM executions").get
    stored_lines = conn.execute("SELECT sum(lines) FROM execution_logs").get
    active = conn.execute(
        "SELECT count(*) FROM executions WHERE status IN ('NotStarted', 'Running')"
    ).get
    expected = (params.executions, params.log_lines, params.log_lines, 0)
    got = (executions, log_count, stored_lines, active)
    if got != expected:
        raise RuntimeError(f"generated database is inconsistent: {got} != {expected}")


# --------------------------------------------------------------------------- cache


def sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def cached(params: Parameters, out: Path) -> Facts | None:
    """The facts of an existing database built with the same parameters, else None."""
    try:
        meta = json.loads(sidecar(out).read_text())
        facts = Facts(**meta["facts"])
        if meta["parameters"] == asdict(params) and out.stat().st_size == facts.db_bytes:
            return facts
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def ensure(params: Parameters, out: Path, *, progress: bool = True) -> tuple[Facts, bool]:
    """The database at `out`, built unless cached. Returns (facts, reused)."""
    facts = cached(params, out)
    if facts is not None:
        return facts, True
    out.parent.mkdir(parents=True, exist_ok=True)
    sidecar(out).unlink(missing_ok=True)
    facts = generate(params, out, progress=progress)
    sidecar(out).write_text(
        json.dumps({"parameters": asdict(params), "facts": asdict(facts)}, indent=1)
    )
    return facts, False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="database to write")
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 1M executions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args()
    params = Parameters.for_scale(args.scale, args.seed)
    if args.force:
        sidecar(args.out).unlink(missing_ok=True)
    facts, reused = ensure(params, args.out)
    verb = "reused" if reused else f"generated in {facts.seconds:.1f} s"
    print(
        f"{args.out}: {verb}; {params.executions:,} executions, {params.log_lines:,} lines in "
        f"{facts.log_rows:,} rows, {facts.db_bytes / 1e6:,.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
