"""One execution's tab: its progress tree beside its log, its status line, cancel and rerun.

A live execution and a past one open alike. Two worker threads feed it:

- the watcher reads the status, opens the log view at the end of the log, and keeps it
  there as the log grows, at most PAGE entries per look (earlier ones are fetched by the
  view if ever scrolled to). If the daemon goes away it retries and carries on from the last
  entry it saw, until the execution has ended;
- the scanner reads the whole log in order, for its events only, so the tree of a run
  opened halfway (or of a past run) is complete; it paces itself, so under a firehose the
  tree may trail the log (the status line says how far it has read).

Each thread hands results to the event loop with `call_from_thread`, which waits for the
loop: a slow screen slows the reading, never grows a queue.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static, TabbedContent, TabPane, Tree
from textual.widgets.tree import TreeNode

from wfmctl import protocol
from wfmctl.client import Client, WfmError
from wfmctl.protocol import Execution, LogEntry
from wfmctl.tui import text
from wfmctl.tui.host import Host, host
from wfmctl.tui.link import Link, daemon_gone
from wfmctl.tui.logview import PAGE, LogView
from wfmctl.tui.progress import DONE, FAILED, Progress

# Entries per read while scanning for events: a page decodes in about a millisecond, which
# is how long the scanner holds the interpreter (and the screen waits) at a time.
SCAN_PAGE = 2_000
SCAN_SHARE = 0.3  # of the interpreter's time the scanner may take while it reads a backlog
LIVE_POLL = 0.1  # seconds between looks at a live log's end: ten updates a second
STATUS_EVERY = 1.0  # seconds between status reads while it runs (the ending comes at once)
RETRY = 1.0  # seconds between attempts while the daemon is away
TREE_REDRAW = 0.25  # seconds between redraws of the tree: events can come by thousands
STATE_FILES_SHOWN = 5  # the latest state files listed under the tree

STATE_MARKS = {DONE: ("✓", "green"), FAILED: ("✗", "red")}
RUNNING_MARK = ("…", "yellow")


def pane_id(handle: str) -> str:
    return f"x-{handle}"


def _label(name: str, state: str, detail: str = "") -> Text:
    mark, style = STATE_MARKS.get(state, RUNNING_MARK)
    label = Text(f"{mark} ", style=style)
    label.append(text.safe(name))
    if detail:
        label.append(f"  {text.safe(detail)}", style="dim")
    return label


class ExecutionPane(TabPane):
    """The tab of one execution, by handle."""

    BINDINGS = [
        Binding("c", "cancel", "Cancel"),
        Binding("r", "rerun", "Rerun"),
        Binding("t", "toggle_tree", "Tree"),
        Binding("ctrl+w,x", "close", "Close tab"),
    ]

    DEFAULT_CSS = """
    ExecutionPane { padding: 0; }
    ExecutionPane #x-status { height: 1; background: $boost; padding: 0 1; }
    ExecutionPane Tree { width: 36%; min-width: 20; border-right: solid $primary-darken-2; }
    ExecutionPane LogView { width: 1fr; }
    """

    def __init__(self, link: Link, handle: str, title: str, at: int | None = None) -> None:
        super().__init__(title, id=pane_id(handle))
        self.link = link
        self.handle = handle
        self.at = at  # the entry to open the log at (a search hit); None: the end
        self.execution: Execution | None = None
        self.progress = Progress()
        self._drawn = -1
        self.scanned = -1  # the tree holds the events of entries 0..scanned
        self.scan_done = False
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("loading…", id="x-status")
            with Horizontal():
                yield Tree(Text("progress"), id="x-tree")
                yield LogView(self._fetch, id="x-log")

    @property
    def log_view(self) -> LogView:
        return self.query_one(LogView)

    def on_mount(self) -> None:
        self.query_one(Tree).root.expand()
        self.set_interval(TREE_REDRAW, self._tick)
        self.run_worker(self._watch, thread=True, group="watch", exit_on_error=False)

    def on_unmount(self) -> None:
        self.stop()

    def stop(self) -> None:
        """End the workers: each returns at its next look (within LIVE_POLL)."""
        self._stop.set()

    # ------------------------------------------------------------------ worker threads

    def _app(self) -> Host:
        return host(self.app)

    def _fetch(self, after: int, limit: int) -> list[LogEntry]:
        return self.link.call(lambda c: c.logs(self.handle, after=after, limit=limit).entries)

    def _watch(self) -> None:
        """The status now and then, and the end of the log as it grows (worker thread).

        Polls rather than follows: a follow hands over every line, and a workflow printing a
        million lines a second would keep this thread decoding (holding the GIL the screen
        needs). A poll reads at most PAGE entries; when more than that arrived since the last
        one, it jumps to the last PAGE and the view fetches the skipped ones if scrolled to.
        Across a daemon restart it carries on from the last entry it saw."""
        app = self._app()
        last: int | None = None  # the last entry handed to the view
        status_due = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= status_due:
                    execution = self.link.call(lambda c: c.status(self.handle))
                    status_due = time.monotonic() + STATUS_EVERY
                    app.deliver(self._show, execution, execution.log_count)
                    if last is None:  # first look: the view opens at the end, the scan starts
                        last = execution.log_count - 1
                        self.run_worker(self._scan, thread=True, group="scan", exit_on_error=False)
                    if execution.status in protocol.FINISHED_STATUSES and last >= (
                        execution.log_count - 1
                    ):
                        return
                assert last is not None  # set at the first look, above
                page = self.link.call(functools.partial(self._page_after, last))
                if len(page.entries) == PAGE and not page.finished:  # behind: to the end
                    page = self.link.call(lambda c: c.logs(self.handle, tail=PAGE))
                if page.entries:
                    last = page.entries[-1].seq
                    app.deliver(self._live, page.entries)
                if page.finished:
                    status_due = 0.0  # the ending, at once
                    continue
                if len(page.entries) < PAGE:
                    self._stop.wait(LIVE_POLL)
            except WfmError as err:
                if not daemon_gone(err):
                    app.deliver(self._failed, err.message)
                    return
                self._stop.wait(RETRY)

    def _page_after(self, after: int, client: Client) -> protocol.LogPage:
        return client.logs(self.handle, after=after, limit=PAGE)

    def _scan_page(self, after: int, client: Client) -> protocol.LogPage:
        return client.logs(self.handle, after=after, limit=SCAN_PAGE)

    def _scan(self) -> None:
        """Every event of the log, from its start to its end, for the tree (worker thread).

        Pages of raw output are read and dropped: a run opened halfway, or long ended, gets
        its whole tree. Reading a backlog it pauses as long as each page took (SCAN_SHARE), so
        that a long log leaves the screen its share of the interpreter; once caught up it
        polls every LIVE_POLL."""
        app = self._app()
        after = -1
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                page = self.link.call(functools.partial(self._scan_page, after))
            except WfmError as err:
                if not daemon_gone(err):
                    return
                self._stop.wait(RETRY)
                continue
            events = [e for e in page.entries if e.type != "raw_output"]
            if page.entries:
                after = page.entries[-1].seq
            app.deliver(self._scanned, events, after, page.finished)
            if page.finished:
                return
            if len(page.entries) == SCAN_PAGE:  # a backlog: leave the screen its share
                took = time.monotonic() - began
                self._stop.wait(took * (1 - SCAN_SHARE) / SCAN_SHARE)
            else:
                self._stop.wait(LIVE_POLL)

    # ------------------------------------------------------------------ on the event loop

    def _show(self, execution: Execution, log_count: int) -> None:
        if self._stop.is_set():  # closed: the tab is going away
            return
        first = self.execution is None
        if first:  # the tab says whose run it is, once known
            with contextlib.suppress(Exception):  # a tab not (or no longer) in the tabs
                tabs = self.app.query_one(TabbedContent)
                tabs.get_tab(self).label = Text(
                    f"{text.safe(execution.workflow_id)} {text.short(self.handle)}"
                )
        self.execution = execution
        self.log_view.set_total(log_count)
        if first and self.at is not None:
            self.log_view.show_line(self.at)
        self._status_line()

    def _status_line(self) -> None:
        if self.execution is None:
            return
        done, total = self.progress.counts()
        phases = f"  phases {done}/{total}" if total else ""
        if not self.scan_done and self.log_view.total - self.scanned > PAGE:
            phases += f" (read to line {self.scanned + 1:,})"
        follow = "" if self.log_view.following else "  (paused: end follows)"
        self.query_one("#x-status", Static).update(
            Text(f"{text.summary(self.execution)}{phases}  {self.log_view.total} lines{follow}")
        )

    def _tick(self) -> None:
        if self._stop.is_set():  # closed: the tab is going away
            return
        self._draw_tree()
        self._status_line()
        self.log_view.keep_following()

    def _live(self, entries: list[LogEntry]) -> None:
        if self._stop.is_set():  # closed: the tab is going away
            return
        self.log_view.add_live(entries)

    def _scanned(self, events: list[LogEntry], upto: int, finished: bool) -> None:
        if self._stop.is_set():  # closed: the tab is going away
            return
        self.progress.apply(events)
        self.scanned = upto
        self.scan_done = finished

    def _failed(self, message: str) -> None:
        if self._stop.is_set():  # closed: the tab is going away
            return
        self.query_one("#x-status", Static).update(Text(text.safe(message), style="red"))

    def _draw_tree(self) -> None:
        if self.progress.changes == self._drawn:
            return
        self._drawn = self.progress.changes
        tree: Tree[None] = self.query_one(Tree)
        root: TreeNode[None] = tree.root
        root.remove_children()
        done, total = self.progress.counts()
        root.set_label(Text(f"phases {done}/{total}" if total else "phases"))
        for number in sorted(self.progress.phases):
            phase = self.progress.phases[number]
            name = f"{number}. {phase.name}" if number >= 0 else "(no phase)"
            node = root.add(_label(name, phase.state, phase.error), expand=True)
            for task in phase.tasks.values():
                tnode = node.add(_label(task.task_id, task.state, task.message), expand=True)
                for agent in task.agents.values():
                    tnode.add_leaf(_label(agent.name, agent.state, agent.message))
        for path in self.progress.state_files[-STATE_FILES_SHOWN:]:
            root.add_leaf(Text(f"◆ {text.safe(path)}", style="dim"))

    # ------------------------------------------------------------------ actions

    def action_cancel(self) -> None:
        host(self.app).cancel(self.handle)

    def action_rerun(self) -> None:
        host(self.app).rerun(self.handle)

    def action_toggle_tree(self) -> None:
        tree = self.query_one(Tree)
        tree.display = not tree.display

    def action_close(self) -> None:
        host(self.app).close_execution(self.handle)
