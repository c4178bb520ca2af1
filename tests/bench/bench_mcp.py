"""The MCP bridge's latency: `wfmctl mcp` against the real daemon on 100,000 executions.

    python tests/bench/bench_mcp.py            # full: bars enforced (exit 1 if missed)
    python tests/bench/bench_mcp.py --quick    # seconds: a small database, no bars

It measures, in one run:

  handshake   spawn of a fresh `wfmctl mcp` to its `initialize` result, through the SDK's
              own stdio client; beside it, a bare interpreter importing the SDK's server
  yardsticks  the daemon's own `ping` round trip on one persistent wfmctl.Client, and the
              SDK's floor: a no-op tool on a bare MCPServer over stdio, same client
  tools       p50/p99 of get_workflow_status and of get_workflow_logs (limit 50) on random
              executions, over one persistent MCP session, after a warm-up

The database comes from `scale_data.py` (the daemon's own schema, filled directly): 100,000
executions with 1,000,000 log entries in all. A full run builds it once into `--data-dir`
(default `$WFM_BENCH_DATA` or `~/.cache/wfm-bench`) and reuses it; a quick run builds a small
one in its temporary directory. The daemon runs on a copy.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
import scale_data
from bench_scale import Daemon, Report, copy_database, ms, pct
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from wfmctl import Client

WFMCTL = str(Path(sys.executable).parent / "wfmctl")

Arguments = Callable[[int], dict[str, Any]]  # a tool's arguments for the i-th call

STATUS_P99_MS = 10.0
LOGS_P99_MS = 20.0


@dataclass(frozen=True)
class Settings:
    executions: int
    log_lines: int
    big_execution_lines: int
    handshakes: int
    calls: int  # per tool, after the warm-up
    warmup: int


FULL = Settings(100_000, 1_000_000, 10_000, 5, 2_000, 100)
QUICK = Settings(2_000, 20_000, 1_000, 2, 200, 20)


def parameters(settings: Settings) -> scale_data.Parameters:
    base = scale_data.Parameters.for_scale(settings.executions / scale_data.FULL_EXECUTIONS, 1)
    return dataclasses.replace(
        base,
        executions=settings.executions,
        log_lines=settings.log_lines,
        big_execution_lines=settings.big_execution_lines,
    )


def sample_handles(database: Path, executions: int, count: int) -> list[str]:
    rng = random.Random(42)
    ids = rng.sample(range(1, executions + 1), min(executions, count))
    with contextlib.closing(sqlite3.connect(database.as_uri() + "?immutable=1", uri=True)) as db:
        return [
            db.execute("SELECT handle FROM executions WHERE id = ?", (i,)).fetchone()[0]
            for i in ids
        ]


# The SDK's own floor: a bare MCPServer over stdio whose one tool returns a small fixed
# document, with an output schema like the bridge's tools. What the bridge adds is the rest.
NOOP_SERVER = """
from typing import TypedDict
from mcp.server.mcpserver import MCPServer

class Out(TypedDict):
    handle_id: str
    status: str

server = MCPServer("noop", log_level="WARNING")

@server.tool()
async def noop(handle_id: str) -> Out:
    return {"handle_id": handle_id, "status": "Completed"}

server.run("stdio")
"""


def server(socket: Path) -> StdioServerParameters:
    return StdioServerParameters(command=WFMCTL, args=["mcp", "--socket", str(socket)])


def noop_server(work: Path) -> StdioServerParameters:
    script = work / "noop_server.py"
    script.write_text(NOOP_SERVER)
    return StdioServerParameters(command=sys.executable, args=[str(script)])


# ------------------------------------------------------------------------------ measures


def ping_round_trips(socket: Path, rounds: int) -> list[float]:
    times = []
    with Client(socket, timeout=30) as client:
        for _ in range(rounds // 10):  # warm-up
            client.ping()
        for _ in range(rounds):
            began = time.perf_counter()
            client.ping()
            times.append(time.perf_counter() - began)
    return times


async def handshake(socket: Path) -> float:
    """Seconds from spawning `wfmctl mcp` to its `initialize` result."""
    began = time.perf_counter()
    async with (
        stdio_client(server(socket)) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return time.perf_counter() - began


def sdk_import_seconds() -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import mcp.server.mcpserver"], check=True)
    return time.perf_counter() - began


async def timed_calls(
    session: ClientSession, tool: str, arguments: Arguments, count: int
) -> list[float]:
    times = []
    for i in range(count):
        args = arguments(i)
        began = time.perf_counter()
        result = await session.call_tool(tool, args)
        times.append(time.perf_counter() - began)
        if result.is_error:
            raise SystemExit(f"{tool}({args}) failed: {result.content}")
    return times


async def tool_latencies(
    params: StdioServerParameters,
    tools: Mapping[str, tuple[str, Arguments]],
    settings: Settings,
) -> dict[str, list[float]]:
    """Per key, the round trips of `settings.calls` calls of its tool, after a warm-up,
    over one session; the tools are measured in turn."""
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        await session.list_tools()  # the client learns the output schemas once
        for tool, arguments in tools.values():
            await timed_calls(session, tool, arguments, settings.warmup)
        return {
            key: await timed_calls(session, tool, arguments, settings.calls)
            for key, (tool, arguments) in tools.items()
        }


def run(settings: Settings, quick: bool, data_dir: Path | None, report: Report) -> None:
    params = parameters(settings)
    with tempfile.TemporaryDirectory(prefix="wfm-mcp-bench-") as tmp:
        work = Path(tmp)
        if quick:
            data_dir = work / "data"
        elif data_dir is None:
            cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
            data_dir = Path(os.environ.get("WFM_BENCH_DATA") or Path(cache) / "wfm-bench")
        data = data_dir / f"mcp-{settings.executions}.db"
        began = time.monotonic()
        facts, reused = scale_data.ensure(params, data, progress=not quick)
        how = "reused" if reused else f"generated in {time.monotonic() - began:.1f} s"
        print(
            f"database {data} ({how}): {params.executions:,} executions, "
            f"{params.log_lines:,} log entries, {facts.db_bytes / 1e6:,.1f} MB",
            flush=True,
        )
        handles = sample_handles(data, params.executions, settings.calls)
        database, _ = copy_database(data, work / "daemon")
        workflows = work / "workflows"
        workflows.mkdir()
        daemon = Daemon(work / "daemon", database, workflows)
        daemon.start()
        try:
            measure(daemon.socket, handles, settings, report, work)
        finally:
            daemon.stop()


def measure(
    socket: Path, handles: list[str], settings: Settings, report: Report, work: Path
) -> None:
    report.section("handshake")
    shakes = [anyio.run(handshake, socket) for _ in range(settings.handshakes)]
    sdk = statistics.median(sdk_import_seconds() for _ in range(settings.handshakes))
    report.add(
        f"initialize, fresh wfmctl mcp (median of {len(shakes)})",
        f"{statistics.median(shakes):.2f} s",
        baseline=f"max {max(shakes):.2f} s; SDK import alone {sdk:.2f} s",
        ratio=f"{statistics.median(shakes) / sdk:.2f}",
    )

    report.section("yardstick: the daemon's own round trip")
    pings = ping_round_trips(socket, settings.calls)
    report.add("ping p50, persistent wfmctl.Client", ms(pct(pings, 0.5)))
    report.add("ping p99", ms(pct(pings, 0.99)))

    def handle(i: int) -> dict[str, Any]:
        return {"handle_id": handles[i % len(handles)]}

    def logs(i: int) -> dict[str, Any]:
        return {"handle_id": handles[-1 - i % len(handles)], "limit": 50}

    report.section(f"yardstick: the SDK's floor, a no-op tool ({settings.calls:,} calls)")
    floor = anyio.run(tool_latencies, noop_server(work), {"noop": ("noop", handle)}, settings)
    report.add("no-op tool p50, bare MCPServer over stdio", ms(pct(floor["noop"], 0.5)))
    report.add("no-op tool p99", ms(pct(floor["noop"], 0.99)))

    report.section(f"tools over one MCP session ({settings.calls:,} calls each)")
    tools = {"status": ("get_workflow_status", handle), "logs": ("get_workflow_logs", logs)}
    times = anyio.run(tool_latencies, server(socket), tools, settings)
    for key, tool, bar in (
        ("status", "get_workflow_status", STATUS_P99_MS),
        ("logs", "get_workflow_logs limit 50", LOGS_P99_MS),
    ):
        p50, p99 = pct(times[key], 0.5), pct(times[key], 0.99)
        report.add(
            f"{tool} p50",
            ms(p50),
            baseline=f"ping {ms(pct(pings, 0.5))}, no-op {ms(pct(floor['noop'], 0.5))}",
        )
        report.add(
            f"{tool} p99",
            ms(p99),
            baseline=f"ping {ms(pct(pings, 0.99))}, no-op {ms(pct(floor['noop'], 0.99))}",
            bar=f"<= {bar:g} ms",
            ok=p99 * 1000 <= bar,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small database, bars not enforced")
    parser.add_argument("--data-dir", type=Path, help="where the generated database is cached")
    args = parser.parse_args()
    report = Report(enforce=not args.quick)
    run(QUICK if args.quick else FULL, args.quick, args.data_dir, report)
    if report.missed and not args.quick:
        print(f"MISSED {len(report.missed)} bar(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
