"""`wfmctl tui`'s execution tabs and launch form under Textual's pilot, against the real
daemon: launch through the form and watch the run complete, a field error, cancel, rerun,
a run from before a daemon restart, and the log window over a long log."""

from __future__ import annotations

from pathlib import Path

from conftest import Daemon, metadata, text_field, write_workflow
from textual.pilot import Pilot
from tui_support import run_app, screen, until, until_shown

from wfmctl.tui.app import WfmApp
from wfmctl.tui.execution import ExecutionPane
from wfmctl.tui.form import LaunchForm
from wfmctl.tui.logview import PAGE, PAGES_KEPT, LogView, entry_text
from wfmctl.tui.progress import DONE


def pane(app: WfmApp, handle: str | None = None) -> ExecutionPane:
    panes = [p for p in app.query(ExecutionPane) if handle is None or p.handle == handle]
    assert len(panes) == 1, panes
    return panes[0]


def ended(app: WfmApp, status: str) -> bool:
    panes = list(app.query(ExecutionPane))
    return bool(panes) and any(
        p.execution is not None and p.execution.status == status for p in panes
    )


def test_launch_through_the_form_and_watch_it_complete(daemon: Daemon) -> None:
    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        await until_shown(pilot, "multi_phase")
        await pilot.press("down", "down", "enter")  # multi_phase, third by id
        await until_shown(pilot, "run multi_phase")
        form = app.screen
        assert isinstance(form, LaunchForm)
        text = screen(pilot)
        assert "default: 3" in text and "number 1..5" in text  # defaults and ranges offered
        await pilot.press(*"2", "tab", *"0")  # 2 phases, no delay
        await pilot.press("ctrl+s")
        await until(pilot, lambda: ended(app, "Completed"), "the run completed")
        execution = pane(app)
        await until(pilot, lambda: execution.progress.counts() == (2, 2), "both phases done")
        assert all(p.state == DONE for p in execution.progress.phases.values())
        await until_shown(pilot, "phases 2/2")
        with daemon.client() as client:
            [last] = client.logs(execution.handle, tail=1).entries
        await until_shown(pilot, entry_text(last)[:40])  # following: the end is in view
        assert "Completed in" in screen(pilot)
        with daemon.client() as client:
            params = client.params(execution.handle).params
        assert params == {"phases": "2", "delay": "0"}

    run_app(daemon.socket, scenario)


# The form at 80x24 after the daemon refused the parameters (a snapshot of the screen).
FIELD_ERRORS = """\
╭─ run echo_params ────────────────────────────────────────────────────────────╮
│ Print a message a number of times, then show argv and the execution id       │
│                                                                              │
│ Message *                                                                    │
│                                                                              │
│ text · What to print                                                         │
│ missing required field 'message'                                             │
│                                                                              │
│ Count                                                                        │
│   11                                                                         │
│ number 1..10 · How many times to print it                                    │
│ value 11 is above the maximum of 10                                          │
│ ▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔                                            │
│  Launch (ctrl+s)    Back (esc)                                               │
│ ▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁                                            │
│                                                                              │
│                                                                              │
│                                                                              │
│                                                                              │
│                                                                              │
│                                                                              │
│                                                                              │
│                                                                              │
╰──────────────────────────────────────────────────────────────────────────────╯"""


def test_a_field_error_is_shown_at_its_field(daemon: Daemon) -> None:
    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        await until_shown(pilot, "echo_params")
        await pilot.press("down", "enter")  # echo_params
        await until_shown(pilot, "run echo_params")
        await pilot.press("tab", *"11", "ctrl+s")  # no message (required), count too high
        text = await until_shown(pilot, "above the maximum of 10")
        assert text == FIELD_ERRORS  # each problem under its field, nothing else moved
        assert isinstance(app.screen, LaunchForm)  # still open, nothing ran
        with daemon.client() as client:
            assert client.history().executions == []
        assert app.screen.focused is app.screen.query_one("#f-message")  # the first problem
        await pilot.press(*"hello", "tab", "end", "backspace", "backspace", "3", "ctrl+s")
        await until(pilot, lambda: ended(app, "Completed"), "the corrected run completed")

    run_app(daemon.socket, scenario)


def test_recent_values_are_offered(daemon: Daemon) -> None:
    daemon.run_and_wait("echo_params", message="from before", count=2)

    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        await until_shown(pilot, "echo_params")
        await pilot.press("down", "enter")
        text = await until_shown(pilot, "recent: from before")
        assert "recent: 2" in text
        await pilot.press(*"fr")  # completed from the recent values
        await pilot.press("right")
        assert app.screen.query_one("#f-message").value == "from before"  # type: ignore[attr-defined]

    run_app(daemon.socket, scenario)


def write_gate(workflow_dir: Path, gate: Path) -> None:
    body = f"""
    print("waiting", flush=True)
    while not os.path.exists({str(gate)!r}):
        time.sleep(0.02)
    """
    write_workflow(workflow_dir, "gate", body, metadata("gate", text_field("note")))


def test_cancel_and_rerun_from_the_execution_tab(
    daemon: Daemon, workflow_dir: Path, tmp_path: Path
) -> None:
    write_gate(workflow_dir, tmp_path / "never")
    with daemon.client() as client:
        client.workflows(rescan=True)
        handle = client.run("gate", {"note": "a note"}).handle

    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        await pilot.press("2")
        await until_shown(pilot, handle[:8])
        await pilot.press("enter")
        await until(pilot, lambda: ended(app, "Running"), "open and running")
        await until_shown(pilot, "waiting")
        await pilot.press("c")
        text = await until_shown(pilot, "Cancelled")
        assert "cancelled by request" in text
        await pilot.press("r")
        await until(pilot, lambda: len(app.query(ExecutionPane)) == 2, "a second tab")
        again = next(p for p in app.query(ExecutionPane) if p.handle != handle)
        await until(pilot, lambda: again.execution is not None, "the rerun shown")
        with daemon.client() as client:
            assert client.params(again.handle).params == {"note": "a note"}
            assert client.status(again.handle).rerun_of == handle
            client.cancel(again.handle)
        await pilot.press("ctrl+w")
        await until(pilot, lambda: len(app.query(ExecutionPane)) == 1, "tab closed")

    run_app(daemon.socket, scenario)


def test_a_run_from_before_a_daemon_restart_opens_from_history(daemon: Daemon) -> None:
    handle = daemon.run_and_wait("multi_phase", phases=1, delay=0)
    daemon.restart()

    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        await pilot.press("3")
        await until_shown(pilot, handle[:8])
        await pilot.press("enter")
        await until(pilot, lambda: ended(app, "Completed"), "opened")
        execution = pane(app, handle)
        await until(pilot, lambda: execution.progress.counts() == (1, 1), "tree from the scan")
        with daemon.client() as client:
            [last] = client.logs(handle, tail=1).entries
        await until_shown(pilot, entry_text(last)[:40])
        assert "phases 1/1" in screen(pilot)

    run_app(daemon.socket, scenario)


LINES = 30_000


def test_a_long_log_opens_at_its_end_and_pages_back(daemon: Daemon, workflow_dir: Path) -> None:
    body = f"""
    out = sys.stdout
    for n in range({LINES}):
        out.write(f"line {{n}}\\n")
    """
    write_workflow(workflow_dir, "long", body, metadata("long"))
    with daemon.client() as client:
        client.workflows(rescan=True)
        handle = client.wait(client.run("long").handle).handle

    async def scenario(app: WfmApp, pilot: Pilot[None]) -> None:
        app.open_execution(handle)
        await until_shown(pilot, f"line {LINES - 1}")
        view = app.query_one(LogView)
        assert view.total == LINES
        assert view.held() <= 2 * PAGE  # the pages on screen, not the log
        await pilot.press("home")
        await until_shown(pilot, "line 0")
        assert not view.following
        view.scroll_to(y=LINES // 2, animate=False, immediate=True)
        await until_shown(pilot, f"line {LINES // 2}")
        for y in range(0, LINES, PAGE):  # everywhere: still a window
            view.scroll_to(y=y, animate=False, immediate=True)
            await pilot.pause(0)
        await until(pilot, lambda: view.held() > 0, "pages held")
        assert view.held() <= PAGES_KEPT * PAGE
        await pilot.press("end")
        await until_shown(pilot, f"line {LINES - 1}")
        assert view.following

    run_app(daemon.socket, scenario)
