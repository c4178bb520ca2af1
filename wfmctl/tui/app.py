"""The dashboard: tabs for workflows, runs and history, one more per open execution, a
banner while the daemon is away, and a footer of keys.

Every daemon request runs in a worker thread through `Link` (the client blocks); results
come back with `call_from_thread`. One monitor thread polls the daemon every `POLL`
seconds for the running and queued executions, which also tells whether it is there: when
it goes away the banner shows and the polling goes on, and when it is back the banner goes
and the workflows and history are read again.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static, TabbedContent

from wfmctl.client import Client, WfmError
from wfmctl.protocol import Execution, Workflow
from wfmctl.tui import text
from wfmctl.tui.confirm import Confirm
from wfmctl.tui.execution import ExecutionPane, pane_id
from wfmctl.tui.form import LaunchForm
from wfmctl.tui.history import HistoryPane, stats_since
from wfmctl.tui.host import HistoryFilter
from wfmctl.tui.link import Link, daemon_gone
from wfmctl.tui.logview import LogView
from wfmctl.tui.panes import RunsPane, WorkflowsPane

POLL = 1.0  # seconds between looks at the running executions (and at the daemon)
RUNS_SHOWN = 200  # running and queued executions listed, each


class WfmApp(App[None]):
    """`wfmctl tui`: the daemon at `socket_path` (default: `$WFM_SOCKET`, else the user's)."""

    TITLE = "wfm"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("1", "tab('workflows')", "Workflows", show=False),
        Binding("2", "tab('runs')", "Runs", show=False),
        Binding("3", "tab('history')", "History", show=False),
    ]

    DEFAULT_CSS = """
    #banner { display: none; height: auto; background: $error; color: $text; padding: 0 1; }
    #banner.gone { display: block; }
    """

    def __init__(self, socket_path: str | None = None) -> None:
        super().__init__()
        self.link = Link(socket_path)
        self.connected: bool | None = None  # None until the first look
        self.poll = POLL
        self._stop = threading.Event()
        self._poke = threading.Event()  # look at the daemon now, not at the next POLL
        self._opening: set[str] = set()  # execution tabs being added

    def compose(self) -> ComposeResult:
        yield Static("", id="banner")
        with TabbedContent(id="tabs"):
            yield WorkflowsPane()
            yield RunsPane()
            yield HistoryPane()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(WorkflowsPane).query_one(DataTable).focus()
        self.run_worker(self._monitor, thread=True, group="monitor", exit_on_error=False)
        # Textual's widgets and styles live as long as the app: a full collection that walks
        # them again and again stalls a key press by tens of ms, so they leave the collector.
        self.call_after_refresh(gc.freeze)

    def on_unmount(self) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        """Let every worker thread end: the monitor, and each execution's follow."""
        self._stop.set()
        self._poke.set()
        for pane in self.query(ExecutionPane):
            pane.stop()
        self.link.close()

    # ------------------------------------------------------------------ from worker threads

    def deliver(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """`fn(*args)` on the event loop, from a worker thread; dropped once the app stops."""
        if self._stop.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the app stopped meanwhile
            self.call_from_thread(fn, *args, **kwargs)

    def _monitor(self) -> None:
        """Running and queued executions every POLL seconds; the daemon's comings and goings."""
        while not self._stop.is_set():
            try:
                running = self.link.call(
                    lambda c: c.history(status="Running", limit=RUNS_SHOWN).executions
                )
                queued = self.link.call(
                    lambda c: c.history(status="NotStarted", limit=RUNS_SHOWN).executions
                )
                self.deliver(self._runs, running, queued)
            except WfmError as err:
                if daemon_gone(err):
                    self.deliver(self._gone, err.code)
                else:
                    self.deliver(self.notify, text.safe(err.message), severity="error")
            self._poke.wait(self.poll)
            self._poke.clear()

    # ------------------------------------------------------------------ on the event loop

    def _runs(self, running: list[Execution], queued: list[Execution]) -> None:
        if self.connected is not True:
            self.connected = True
            self.query_one("#banner", Static).remove_class("gone")
            self.load_workflows()
            self.query_one(HistoryPane).reload()
        self.query_one(RunsPane).show(running, list(reversed(queued)))

    def _gone(self, code: str) -> None:
        self.connected = False
        banner = self.query_one("#banner", Static)
        banner.update(
            f"wfmd is not reachable ({code}) at {text.safe(self.link.socket_path)}; "
            "reconnecting… (start it with: wfmd)"
        )
        banner.add_class("gone")

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """Keys go to the tab's main widget: its table, or an execution's log."""
        pane = event.pane
        if isinstance(pane, ExecutionPane):
            views = pane.query(LogView)  # none in a tab being closed
            if views:
                views.first().focus()
            return
        if isinstance(pane, HistoryPane) and self.connected:
            pane.reload()  # runs have ended or begun since it was last shown
        tables = [t for t in pane.query(DataTable) if t.display]  # history hides one
        if tables:
            tables[-1].focus()

    def load_workflows(self) -> None:
        def work() -> None:
            try:
                reply = self.link.call(lambda c: c.workflows())
            except WfmError:
                self._poke.set()  # the monitor tells whether the daemon is gone
                return
            self.deliver(self.query_one(WorkflowsPane).show, reply.workflows)

        self.run_worker(work, thread=True, group="workflows", exit_on_error=False)

    def _history_worker(
        self, wanted: HistoryFilter, ask: Callable[[Client], Any], show: Callable[[Any], None]
    ) -> None:
        """`ask` the daemon in a worker thread, then `show(reply)` on the event loop; a
        refusal is shown on the history tab (and a daemon gone, by the banner)."""
        pane = self.query_one(HistoryPane)

        def work() -> None:
            try:
                reply = self.link.call(ask)
            except WfmError as err:
                if not daemon_gone(err):
                    self.deliver(pane.show_error, wanted, err.message)
                return
            self.deliver(show, reply)

        self.run_worker(work, thread=True, group="history", exit_on_error=False)

    def load_history(self, wanted: HistoryFilter, before: str | None) -> None:
        pane = self.query_one(HistoryPane)
        self._history_worker(
            wanted,
            lambda c: c.history(
                limit=pane.page_size,
                before=before,
                workflow_id=wanted.workflow_id,
                status=wanted.status,  # type: ignore[arg-type]
                since=wanted.since,
            ),
            lambda page: pane.show_page(wanted, before, page.executions, page.next_before),
        )

    def load_search(self, wanted: HistoryFilter, before: int | None) -> None:
        pane = self.query_one(HistoryPane)
        assert wanted.query is not None
        query = wanted.query
        self._history_worker(
            wanted,
            lambda c: c.search(
                query,
                workflow_id=wanted.workflow_id,
                status=wanted.status,
                since=wanted.since,
                limit=pane.hits_page,
                before=before,
            ),
            lambda page: pane.show_hits(wanted, before, page.hits, page.next_before, page.backlog),
        )

    def load_stats(self, wanted: HistoryFilter) -> None:
        pane = self.query_one(HistoryPane)
        self._history_worker(
            wanted,
            lambda c: c.stats(
                workflow_id=wanted.workflow_id, since=stats_since(wanted, time.time())
            ),
            lambda reply: pane.show_stats(wanted, reply),
        )

    # ------------------------------------------------------------------ executions

    def open_execution(self, handle: str, at: int | None = None) -> None:
        """Show the execution's tab, opening it if needed; with `at`, its log at that entry."""
        tabs = self.query_one(TabbedContent)
        for open_pane in self.query(ExecutionPane):
            if open_pane.handle == handle:
                tabs.active = pane_id(handle)
                if at is not None:
                    open_pane.log_view.show_line(at)
                return
        if handle in self._opening:  # asked twice before the tab is there
            return
        self._opening.add(handle)
        pane = ExecutionPane(self.link, handle, text.short(handle), at=at)

        async def add() -> None:
            try:
                await tabs.add_pane(pane)
            finally:
                self._opening.discard(handle)
            tabs.active = pane_id(handle)

        self.run_worker(add(), group="tabs")

    def close_execution(self, handle: str) -> None:
        """Close the execution's tab; if it was in view, show the runs."""
        tabs = self.query_one(TabbedContent)
        for pane in self.query(ExecutionPane):
            if pane.handle == handle:
                in_view = tabs.active == pane_id(handle)
                pane.stop()
                tabs.remove_pane(pane_id(handle))
                if in_view:
                    tabs.active = "runs"

    def cancel(self, handle: str) -> None:
        def work() -> None:
            try:
                ended = self.link.call(lambda c: c.cancel(handle), once=True)
            except WfmError as err:
                self.deliver(self.notify, text.safe(err.message), severity="warning")
                return
            self.deliver(self.notify, f"cancel requested: {text.summary(ended)}")
            self._poke.set()

        self.run_worker(work, thread=True, group="act", exit_on_error=False)

    def delete(self, handle: str) -> None:
        """Ask, then remove the execution and its log (the daemon refuses one not finished);
        its tab closes and the history is read again."""

        def work() -> None:
            try:
                removed = self.link.call(lambda c: c.delete([handle]), once=True)
            except WfmError as err:
                self.deliver(self.notify, text.safe(err.message), severity="error")
                return
            entries = removed.log_entries_removed
            self.deliver(self.notify, f"deleted {text.short(handle)} and {entries:,} log entries")
            self.deliver(self._deleted, handle)

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(work, thread=True, group="act", exit_on_error=False)

        question = (
            f"Delete execution {text.short(handle)} and its whole log? This cannot be undone."
        )
        self.push_screen(Confirm(question), answered)

    def _deleted(self, handle: str) -> None:
        self.close_execution(handle)
        self.query_one(HistoryPane).reload()

    def rerun(self, handle: str) -> None:
        """Run the execution's workflow again with the same parameters (the daemon's rerun,
        which records `rerun_of`); open the new run."""

        def work() -> None:
            try:
                started = self.link.call(lambda c: c.rerun(handle), once=True)
            except WfmError as err:
                self.deliver(self.notify, text.safe(err.message), severity="error")
                return
            self.deliver(self.open_execution, started.handle)
            self._poke.set()

        self.run_worker(work, thread=True, group="act", exit_on_error=False)

    # ------------------------------------------------------------------ launching

    def open_form(self, workflow: Workflow) -> None:
        def work() -> None:
            try:
                recent = self.link.call(lambda c: c.param_history(workflow.id)).values
            except WfmError:
                recent = {}
            self.deliver(self._push_form, workflow, recent)

        self.run_worker(work, thread=True, group="form", exit_on_error=False)

    def _push_form(self, workflow: Workflow, recent: dict[str, list[str]]) -> None:
        def launched(execution: Execution | None) -> None:
            if execution is not None:
                self.open_execution(execution.handle)
                self._poke.set()

        self.push_screen(LaunchForm(self.link, workflow, recent), launched)
