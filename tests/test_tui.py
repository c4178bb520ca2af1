"""`wfmctl tui` under Textual's pilot, against the real daemon: what it lists, what it shows
of a run, and how it copes with the daemon going away."""

from __future__ import annotations

from pathlib import Path

from conftest import Daemon, MakeDaemon, metadata, text_field, write_workflow
from test_cli_support import run_python
from textual.pilot import Pilot
from textual.widgets import DataTable, TabbedContent
from tui_support import run_app, screen, until, until_shown

from wfmctl.cli.exit_codes import EXIT_USAGE
from wfmctl.tui.app import WfmApp
from wfmctl.tui.history import HistoryPane


def table_rows(app: WfmApp, selector: str) -> list[list[str]]:
    table: DataTable[object] = app.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def write_gate(workflow_dir: Path, gate: Path) -> None:
    """`gate`: a workflow that prints, then waits until the file `gate` exists."""
    body = f"""
    print("waiting", flush=True)
    while not os.path.exists({str(gate)!r}):
        time.sleep(0.02)
    print("through", flush=True)
    """
    write_workflow(workflow_dir, "gate", body, metadata("gate", text_field("note")))


def test_workflows_are_listed_with_their_descriptions(daemon: Daemon) -> None:
    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        text = await until_shown(pilot, "multi_phase")
        assert "echo_params" in text and "always_fails" in text
        assert "Print a message a number of times" in text
        await pilot.press("down")  # echo_params, second by id
        await until_shown(pilot, "fields: message, count")

    run_app(daemon.socket, scenario)


def test_history_newest_first_filtered_and_paged(daemon: Daemon) -> None:
    handles = [daemon.run_and_wait("echo_params", message=f"m{n}") for n in range(3)]
    failed = daemon.run_and_wait("always_fails")

    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        await pilot.press("3")
        await until(pilot, lambda: len(table_rows(app, "#hist-table")) == 4, "four rows")
        shown = [row[0] for row in table_rows(app, "#hist-table")]
        assert shown == [h[:8] for h in [failed, *reversed(handles)]]
        # Filter by status: the select, then the time (an age, as the CLI takes it).
        pane = app.query_one(HistoryPane)
        pane.query_one("#hist-status").value = "Failed"  # type: ignore[attr-defined]
        await until(pilot, lambda: len(table_rows(app, "#hist-table")) == 1, "one failure")
        assert table_rows(app, "#hist-table")[0][0] == failed[:8]
        await pilot.click("#hist-since")
        await pilot.press(*"1d", "enter")
        await until(pilot, lambda: len(table_rows(app, "#hist-table")) == 1, "still one")
        await pilot.press("/")  # the workflow filter
        await pilot.press(*"echo_params", "enter")
        await until(pilot, lambda: table_rows(app, "#hist-table") == [], "no failed echo")
        assert "0 shown" in screen(pilot)

    run_app(daemon.socket, scenario)


def test_history_pages_as_the_cursor_moves_down(daemon: Daemon) -> None:
    with daemon.client() as client:
        started = [client.run("echo_params", {"message": str(n)}).handle for n in range(25)]
        for handle in started:
            client.wait(handle)

    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        app.query_one(HistoryPane).page_size = 10
        await pilot.press("3")
        await pilot.press("ctrl+r")  # again, in pages of 10
        await until(pilot, lambda: len(table_rows(app, "#hist-table")) == 10, "a page")
        assert "10 shown (more below)" in screen(pilot)
        for _ in range(3):
            await pilot.press("pagedown")
            await pilot.pause(0.2)
        await until(pilot, lambda: len(table_rows(app, "#hist-table")) == 25, "all")
        shown = [row[0] for row in table_rows(app, "#hist-table")]
        assert shown == [h[:8] for h in reversed(started)]  # in order, none twice
        assert "25 shown" in screen(pilot) and "more below" not in screen(pilot)

    run_app(daemon.socket, scenario)


def test_runs_show_live_status_running_then_queued(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate-open"
    write_gate(workflow_dir, gate)
    daemon = make_daemon(extra_args=["--max-concurrent", "1"]).start()

    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        await pilot.press("2")
        await until_shown(pilot, "0 running, 0 queued")
        with daemon.client() as client:
            first = client.run("gate").handle
            second = client.run("gate").handle
        await until_shown(pilot, "1 running, 1 queued")
        rows = table_rows(app, "#runs-table")
        assert [(r[0], r[2]) for r in rows] == [(first[:8], "Running"), (second[:8], "NotStarted")]
        gate.touch()
        await until_shown(pilot, "0 running, 0 queued")
        assert table_rows(app, "#runs-table") == []

    run_app(daemon.socket, scenario)


def test_banner_while_the_daemon_is_away_then_reconnects(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()

    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        await until_shown(pilot, "echo_params")
        daemon.stop()
        text = await until_shown(pilot, "wfmd is not reachable")
        assert text.splitlines()[0].strip().startswith("wfmd is not reachable")
        daemon.start()
        await until(pilot, lambda: "not reachable" not in screen(pilot), "banner gone")
        assert app.connected is True
        assert app.query_one(TabbedContent).active == "workflows"

    run_app(daemon.socket, scenario)


def test_starts_while_the_daemon_is_down(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()

    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        await until_shown(pilot, "wfmd is not reachable")
        daemon.start()
        await until_shown(pilot, "echo_params")

    run_app(daemon.socket, scenario)


def test_without_textual_one_line_says_how_to_install_it() -> None:
    # Textual made unimportable, as when the tui extra is not installed.
    script = (
        "import sys; sys.modules['textual'] = None; "
        "from wfmctl.cli.main import main; sys.exit(main(['tui']))"
    )
    proc = run_python("-c", script)
    assert proc.returncode == EXIT_USAGE
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "pip install 'wfm[tui]'" in line


def test_tui_takes_the_common_options() -> None:
    from wfmctl.cli.parser import build_parser

    args = build_parser().parse_args(["tui", "--socket", "/x/wfmd.sock"])
    assert (args.command, args.socket) == ("tui", "/x/wfmd.sock")


def test_tui_is_in_the_help() -> None:
    proc = run_python("-m", "wfmctl", "--help")
    assert proc.returncode == 0
    assert "tui" in proc.stdout and "dashboard" in proc.stdout
