"""The dashboard's history tab beyond listing: search the logs and open a run at the match,
the statistics line, and delete (after a question), under Textual's pilot against the real
daemon."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import Daemon, MakeDaemon, metadata, write_workflow
from test_tui import table_rows
from textual.pilot import Pilot
from tui_support import run_app, screen, until, until_shown

from wfmctl.client import WfmError
from wfmctl.tui.app import WfmApp
from wfmctl.tui.confirm import Confirm
from wfmctl.tui.execution import ExecutionPane
from wfmctl.tui.history import HistoryPane


def indexed(daemon: Daemon, query: str, hits: int) -> None:
    """Wait until the daemon's background indexer makes `hits` lines match `query`."""
    deadline = time.monotonic() + 20
    with daemon.client() as client:
        while len(client.search(query).hits) < hits:
            assert time.monotonic() < deadline, f"{query!r} not indexed"
            time.sleep(0.1)


def test_search_lists_matching_lines_and_opens_the_run_at_one(
    make_daemon: MakeDaemon, workflow_dir: Path
) -> None:
    body = "for i in range(3000):\n    print(f'needle {i}' if i in (1500, 2800) else f'hay {i}')\n"
    write_workflow(workflow_dir, "haystack", body, metadata("haystack"))
    daemon = make_daemon().start()
    handle = daemon.run_and_wait("haystack")
    daemon.run_and_wait("echo_params", message="no match here")
    indexed(daemon, "needle", 2)

    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        await pilot.press("3")
        await until(pilot, lambda: len(table_rows(app, "#hist-table")) == 2, "two runs")
        await pilot.press("s", *"needle", "enter")
        await until_shown(pilot, "2 matching lines")
        rows = table_rows(app, "#hist-hits")
        assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
            (handle[:8], "haystack", "2801", "needle 2800"),
            (handle[:8], "haystack", "1501", "needle 1500"),
        ]
        await pilot.press("down", "enter")  # the older match
        await until(pilot, lambda: bool(app.query(ExecutionPane)), "the run's tab")
        view = app.query_one(ExecutionPane).log_view
        await until(pilot, lambda: "needle 1500" in screen(pilot), "the line on screen")
        assert view.marked == 1500 and not view.following
        assert view.scroll_y <= 1500 < view.scroll_y + view.size.height

        await pilot.press("3", "s", "ctrl+a", "ctrl+k", *"***", "enter")
        await until_shown(pilot, "nothing to search for")  # refused, said on the tab
        assert table_rows(app, "#hist-hits") == []
        await pilot.press("s", "ctrl+a", "ctrl+k", "enter")  # no query: executions again
        await until_shown(pilot, "2 shown")
        assert not app.query_one(HistoryPane).searching

    run_app(daemon.socket, scenario, size=(100, 30))


def test_the_stats_line_follows_the_filters(daemon: Daemon) -> None:
    for n in range(3):
        daemon.run_and_wait("echo_params", message=f"m{n}")
    daemon.run_and_wait("always_fails")

    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        await pilot.press("3")
        await until_shown(pilot, "last 30 days: 4 runs · 3 completed · 1 failed · 75% success")
        await pilot.press("/", *"echo_params", "enter")
        await until_shown(pilot, "3 runs · 3 completed · 0 failed · 100% success · took p50")
        await pilot.click("#hist-since")
        await pilot.press(*"1d", "enter")
        await until_shown(pilot, "since then: 3 runs")
        await pilot.click("#hist-since")
        await pilot.press("ctrl+a", "ctrl+k", "enter")
        await pilot.press("/", "ctrl+a", "ctrl+k", *"nothing_by_that_name", "enter")
        await until_shown(pilot, "last 30 days: no runs")

    run_app(daemon.socket, scenario)


def test_delete_asks_first_and_refuses_a_running_run(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate-open"
    body = f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.02)\n"
    write_workflow(workflow_dir, "gate", body, metadata("gate"))
    daemon = make_daemon().start()
    kept = daemon.run_and_wait("echo_params", message="kept")
    doomed = daemon.run_and_wait("echo_params", message="doomed")
    with daemon.client() as client:
        running = client.run("gate").handle

    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        await pilot.press("3")
        shown = [running[:8], doomed[:8], kept[:8]]
        await until(pilot, lambda: [r[0] for r in table_rows(app, "#hist-table")] == shown, "3")
        await pilot.press("down", "enter")  # open the doomed run's tab: deleting closes it
        await until(pilot, lambda: bool(app.query(ExecutionPane)), "its tab")
        await pilot.press("3", "d")
        await until(pilot, lambda: isinstance(app.screen, Confirm), "the question")
        assert isinstance(app.screen, Confirm) and doomed[:8] in app.screen.question
        await pilot.press("n")
        await pilot.press("d", "y")
        await until(
            pilot, lambda: [r[0] for r in table_rows(app, "#hist-table")] == shown[::2], "gone"
        )
        assert not app.query(ExecutionPane)
        await until_shown(pilot, "deleted")

        await pilot.press("up", "d", "y")  # the running one: the daemon says no
        await until_shown(pilot, "is Running: only finished")
        assert [r[0] for r in table_rows(app, "#hist-table")] == shown[::2]

    run_app(daemon.socket, scenario, size=(100, 30))
    with daemon.client() as client:
        with pytest.raises(WfmError) as gone:
            client.status(doomed)
        assert gone.value.code == "not_found"
        assert client.status(kept).status == "Completed"
    gate.touch()
