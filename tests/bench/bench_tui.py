"""The dashboard keeps up: `wfmctl tui` (headless, driven by Textual's pilot) against the
real daemon.

    python tests/bench/bench_tui.py            # full: the 1M-execution database, bars enforced
    python tests/bench/bench_tui.py --quick    # seconds: a 0.2% database, short follow

  keys        key press to repaint while following a workflow that prints as fast as it can
              (bench_ingest's child): the tree is toggled (`t`) every KEY_EVERY s and the time
              from the press to the first frame drawn after it is taken. Baseline: the same
              with nothing running. The dashboard's RSS and the log view's held entries show
              that memory stays bounded while millions of lines go by.
  first paint on a copy of scale_data.py's database (cached as bench_scale.py caches it):
              from starting the app to the first frame showing the workflows, the runs and a
              page of history; then opening its 10M-line execution to the first frame showing
              its last line. Baseline: the same on an empty (migrated) database.

The app runs in this process (the pilot drives it headless: every frame is composed as for a
terminal, then dropped), so RSS is the dashboard's own. Frames are seen by wrapping
`App._display`, which Textual calls with each composed screen update.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale_data
from bench_ingest import build_child, status_mb
from bench_scale import Daemon, Report, copy_database, empty_database, ms, pct, write_workflows
from textual import events
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable

from wfmctl import Client
from wfmctl.tui.app import WfmApp
from wfmctl.tui.execution import ExecutionPane
from wfmctl.tui.history import HistoryPane
from wfmctl.tui.logview import PAGE, PAGES_KEPT, LogView
from wfmctl.tui.panes import RunsPane, WorkflowsPane

KEY_BAR = 0.100  # a key press repaints within 100 ms (p99), while following
PAINT_BAR = 0.5  # first paint on the 1M-execution database
OPEN_BAR = 0.5  # opening the 10M-line execution: its last line on screen
HELD_BAR = PAGES_KEPT * PAGE  # entries the log view may hold, whatever the log's length
RSS_GROWTH_BAR = 100.0  # MB the dashboard may grow by while following millions of lines

KEY_EVERY = 0.1  # seconds between key presses
WAIT = 120.0  # seconds before giving up on a frame (a loaded machine, a 10 GB copy)
SIZE = (120, 40)


@dataclass(frozen=True)
class Settings:
    scale: float
    lines: int  # printed by the fast workflow
    presses: int  # at most, while it runs
    paints: int  # first paints per database


FULL = Settings(1.0, 5_000_000, 300, 5)
QUICK = Settings(0.002, 300_000, 20, 2)


class TimedApp(WfmApp):
    """WfmApp that records when each frame is composed."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(socket_path)
        self.frames: list[float] = []

    def _display(self, screen: Screen[Any], renderable: Any) -> None:
        if renderable is not None:
            self.frames.append(time.perf_counter())
        super()._display(screen, renderable)


async def frame_after(app: TimedApp, t0: float, check: Callable[[], bool] = lambda: True) -> float:
    """Seconds from t0 to the first frame after t0 drawn once `check()` holds."""
    deadline = time.monotonic() + WAIT
    while True:
        if check():
            seen = [f for f in app.frames if f > t0]
            if seen:
                return seen[0] - t0
        if time.monotonic() > deadline:
            raise SystemExit(f"no frame within {WAIT} s (condition met: {check()})")
        await asyncio.sleep(0.001)


def rss_mb() -> float:
    return status_mb(os.getpid(), "VmRSS")


# --------------------------------------------------------------------------------- keys


async def open_pane(app: TimedApp, pilot: Pilot[None], handle: str) -> ExecutionPane:
    """Open the execution's tab; its pane once its log view has the keys."""
    app.open_execution(handle)
    while True:
        panes = [p for p in app.query(ExecutionPane) if p.handle == handle and p.is_mounted]
        if panes and app.focused is panes[0].log_view:
            return panes[0]
        await pilot.pause(0.05)


def toggled(widget: Widget, before: bool) -> bool:
    return bool(widget.display) != before


async def press_latencies(
    app: TimedApp, pane: ExecutionPane, count: int, until: Callable[[], bool]
) -> list[float]:
    """Toggle the tree `count` times (or until `until()`), each press to its frame."""
    found: list[float] = []
    tree = pane.query_one("#x-tree")
    for _ in range(count):
        if until():
            break
        if app.focused is not pane.log_view:  # the keys go to this tab
            pane.log_view.focus()
            await asyncio.sleep(0.05)
        before = tree.display
        key = events.Key("t", "t")  # as the terminal driver's input thread sends it
        key.set_sender(app)
        assert app._driver is not None
        t0 = time.perf_counter()
        app._driver.send_message(key)
        found.append(await frame_after(app, t0, functools.partial(toggled, tree, before)))
        await asyncio.sleep(KEY_EVERY)
    return found


def bench_keys(report: Report, settings: Settings, work: Path) -> None:
    report.section("keys: press to repaint while following a workflow printing at full speed")
    child = build_child(work)
    workflows = work / "workflows"
    write_workflows(workflows, child)
    daemon = Daemon(work / "keys", work / "keys" / "wfm.db", workflows)
    daemon.start()
    result: dict[str, Any] = {}

    async def main() -> None:
        app = TimedApp(str(daemon.socket))
        async with app.run_test(size=SIZE) as pilot:
            with Client(daemon.socket) as client:
                idle_run = client.run("bench_lines", {"mode": "chunked", "count": "10"})
                client.wait(idle_run.handle)
            idle = await open_pane(app, pilot, idle_run.handle)
            await pilot.pause(0.5)
            presses = settings.presses // 4 + 5
            result["idle"] = await press_latencies(app, idle, presses, lambda: False)
            await pilot.pause(0.2)
            rss0 = rss_mb()
            with Client(daemon.socket) as client:
                run = client.run("bench_lines", {"mode": "chunked", "count": str(settings.lines)})
            view_pane = await open_pane(app, pilot, run.handle)

            def ended() -> bool:  # and the tree has read every event
                e = view_pane.execution
                return e is not None and e.ended_at is not None and view_pane.scan_done

            began = time.perf_counter()
            result["busy"] = await press_latencies(app, view_pane, settings.presses, ended)
            view = view_pane.query_one(LogView)
            result["held_peak"] = view.held()
            while view_pane.execution is None or view_pane.execution.ended_at is None:
                await pilot.pause(0.1)
            result["seconds"] = time.perf_counter() - began
            result["rss_growth"] = rss_mb() - rss0
            result["held"] = view.held()
            result["total"] = view.total

    try:
        asyncio.run(main())
    finally:
        daemon.stop()
    idle, busy = result["idle"], result["busy"]
    if not busy:
        report.note("the workflow ended before the first press: raise --lines")
        return
    base = pct(idle, 0.99)
    p99 = pct(busy, 0.99)
    median = ms(statistics.median(busy))
    report.add(
        "key to repaint p99, following",
        ms(p99),
        baseline=f"median {median}, p90 {ms(pct(busy, 0.9))}; idle p99 {ms(base)}",
        ratio=f"{p99 / base:.1f}x" if base else "",
        bar=f"<= {ms(KEY_BAR)}",
        ok=p99 <= KEY_BAR,
    )
    report.add(
        "lines followed",
        f"{result['total']:,}",
        baseline=f"in {result['seconds']:.1f} s; {len(busy)} presses meanwhile",
    )
    report.add(
        "log view entries held (peak of samples)",
        f"{max(result['held'], result['held_peak']):,}",
        baseline=f"of {result['total']:,} lines",
        bar=f"<= {HELD_BAR:,}",
        ok=max(result["held"], result["held_peak"]) <= HELD_BAR,
    )
    report.add(
        "dashboard RSS growth while following",
        f"{result['rss_growth']:.1f} MB",
        bar=f"<= {RSS_GROWTH_BAR:.0f} MB",
        ok=result["rss_growth"] <= RSS_GROWTH_BAR,
    )


# --------------------------------------------------------------------------- first paint


def painted(app: TimedApp) -> bool:
    """Workflows listed, runs counted, and a page of history in its table."""
    try:
        workflows = app.query_one(WorkflowsPane).query_one(DataTable).row_count
        runs = app.query_one(RunsPane).updates
        history = app.query_one(HistoryPane).pages
    except Exception:
        return False
    return workflows > 0 and runs > 0 and history > 0


def first_paint(socket: Path, big_handle: str | None) -> tuple[float, float | None]:
    """Seconds to the first full frame; then to the big execution's last line, if given."""
    out: list[float | None] = []

    async def main() -> None:
        t0 = time.perf_counter()
        app = TimedApp(str(socket))
        async with app.run_test(size=SIZE):
            out.append(await frame_after(app, t0, lambda: painted(app)))
            if big_handle is None:
                out.append(None)
                return
            with Client(socket) as client:
                last = client.status(big_handle).log_count - 1
            t1 = time.perf_counter()
            app.open_execution(big_handle)

            def shows_last() -> bool:
                panes = list(app.query(ExecutionPane))
                if not panes or not panes[0].is_mounted:
                    return False
                view = panes[0].query_one(LogView)
                bottom = int(view.scroll_y) + view.scrollable_content_region.height - 1
                return view.total > last and bottom >= last and view.line_at(last) is not None

            out.append(await frame_after(app, t1, shows_last))

    asyncio.run(main())
    assert out[0] is not None
    return out[0], out[1]


def bench_first_paint(report: Report, settings: Settings, work: Path, data_dir: Path) -> None:
    params = scale_data.Parameters.for_scale(settings.scale, seed=1)
    data = data_dir / f"scale-{settings.scale:g}.db"
    began = time.monotonic()
    facts, reused = scale_data.ensure(params, data, progress=settings.scale >= 0.1)
    how = "reused" if reused else f"generated in {time.monotonic() - began:.0f} s"
    report.section(
        f"first paint: {params.executions:,} executions, {params.log_lines:,} log entries ({how})"
    )
    empty_dir = work / "empty"
    empty = Daemon(empty_dir, empty_database(empty_dir / "wfm.db"), work / "workflows")
    database, copied = copy_database(data, work / "big")
    big = Daemon(work / "big", database, work / "workflows")
    times: dict[str, list[float]] = {"empty": [], "big": []}
    opens: list[float] = []
    for daemon in (empty, big):
        daemon.start()
        try:
            with Client(daemon.socket) as client:  # the daemon's first reads: not the app's
                client.history(limit=100)
            name = "big" if daemon is big else "empty"
            if daemon is empty:  # Textual's first start in this process (imports, CSS): once
                first_paint(daemon.socket, None)
            for _ in range(settings.paints):
                handle = facts.big_execution_handle if daemon is big else None
                paint, opened = first_paint(daemon.socket, handle)
                times[name].append(paint)
                if opened is not None:
                    opens.append(opened)
        finally:
            daemon.stop()
    paint, base = statistics.median(times["big"]), statistics.median(times["empty"])
    report.add(
        "first paint (median)",
        ms(paint),
        baseline=f"empty database {ms(base)}; worst {ms(max(times['big']))}",
        ratio=f"{paint / base:.2f}x",
        bar=f"<= {ms(PAINT_BAR)}",
        ok=paint <= PAINT_BAR,
    )
    opened = statistics.median(opens)
    report.add(
        f"open the {params.big_execution_lines:,}-line execution (median)",
        ms(opened),
        baseline=f"to its last line on screen; worst {ms(max(opens))}",
        bar=f"<= {ms(OPEN_BAR)}",
        ok=opened <= OPEN_BAR,
    )
    report.note(f"database copy took {copied:.1f} s (not measured)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scale, bars not enforced")
    parser.add_argument("--scale", type=float, help="database scale (1.0 = 1M executions)")
    parser.add_argument("--lines", type=int, help="lines the followed workflow prints")
    parser.add_argument("--data-dir", type=Path, help="where generated databases are cached")
    parser.add_argument("--only", help="keys or paint")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    if args.scale is not None:
        settings = Settings(args.scale, settings.lines, settings.presses, settings.paints)
    if args.lines is not None:
        settings = Settings(settings.scale, args.lines, settings.presses, settings.paints)
    report = Report(enforce=not args.quick)
    with tempfile.TemporaryDirectory(prefix="wfm-tui-") as tmp:
        work = Path(tmp)
        data_dir = args.data_dir or (
            Path(os.environ["WFM_BENCH_DATA"])
            if os.environ.get("WFM_BENCH_DATA")
            else work / "data"
            if args.quick
            else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wfm-bench"
        )
        if args.only in (None, "keys"):
            bench_keys(report, settings, work)
        if args.only in (None, "paint"):
            (work / "workflows").mkdir(exist_ok=True)
            with contextlib.suppress(FileExistsError):
                write_workflows(work / "workflows", build_child(work))
            bench_first_paint(report, settings, work, data_dir)
    if report.missed:
        print(f"MISSED: {', '.join(r.measure for r in report.missed)}", file=sys.stderr)
        return 1 if report.enforce else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
