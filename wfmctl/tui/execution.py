"""One execution's tab: its progress tree beside its log, its status line, cancel and rerun.

A live execution and a past one open alike. Two worker threads feed it:

- the watcher reads the status, sizes the log view to the entries that exist, and follows
  from there: each frame's events go to the progress tree, its last `PAGE` entries to the
  log view (earlier ones are fetched if ever scrolled to). If the daemon goes away it retries
  and follows on from the last entry it saw, until the execution has ended;
- the scanner reads the log from its start up to where following began, for the events
  only, so the tree of a run opened halfway (or of a past run) is complete. Events that
  arrive live meanwhile wait for it, so the tree always applies them in order.

Each thread hands results to the event loop with `call_from_thread`, which waits for the
loop: a slow screen slows the reading, never grows a queue.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static, TabPane, Tree
from textual.widgets.tree import TreeNode

from wfmctl import protocol
from wfmctl.client import Client, WfmError
from wfmctl.protocol import Execution, LogEntry
from wfmctl.tui import text
from wfmctl.tui.host import Host, host
from wfmctl.tui.link import Link, daemon_gone
from wfmctl.tui.logview import PAGE, LogView
from wfmctl.tui.progress import DONE, FAILED, Progress

SCAN_PAGE = 10_000  # entries per read while scanning for events: the daemon's page bound
RETRY = 1.0  # seconds between attempts to follow again while the daemon is away
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

    def __init__(self, link: Link, handle: str, title: str) -> None:
        super().__init__(title, id=pane_id(handle))
        self.link = link
        self.handle = handle
        self.execution: Execution | None = None
        self.progress = Progress()
        self._drawn = -1
        self._scan_done = False
        self._held_events: list[LogEntry] = []  # live events waiting for the scan
        self._stop = threading.Event()
        self._stream: Client | None = None

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
        """End the workers: the follow's connection is hung up."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            self.link.close_stream(stream)

    # ------------------------------------------------------------------ worker threads

    def _app(self) -> Host:
        return host(self.app)

    def _fetch(self, after: int, limit: int) -> list[LogEntry]:
        return self.link.call(lambda c: c.logs(self.handle, after=after, limit=limit).entries)

    def _watch(self) -> None:
        """Status, then follow until the end; across daemon restarts (worker thread)."""
        app = self._app()
        last = -1  # the last entry handed over
        scanning = False
        while not self._stop.is_set():
            try:
                execution = self.link.call(lambda c: c.status(self.handle))
                if not scanning:  # once: the scan covers what existed at the first look
                    scanning = True
                    upto = execution.log_count - 1
                    last = upto
                    scan = functools.partial(self._scan, upto)
                    self.run_worker(scan, thread=True, group="scan", exit_on_error=False)
                app.deliver(self._show, execution, execution.log_count)
                if execution.status in protocol.FINISHED_STATUSES and last >= (
                    execution.log_count - 1
                ):
                    return
                for entries, ended in self._follow(last):
                    if entries:
                        last = entries[-1].seq
                        events = [e for e in entries if e.type != "raw_output"]
                        app.deliver(self._live, events, entries[-PAGE:])
                    if ended is not None:
                        app.deliver(self._show, ended, ended.log_count)
                        return
            except WfmError as err:
                if not daemon_gone(err):
                    app.deliver(self._failed, err.message)
                    return
            self._stop.wait(RETRY)

    def _follow(self, after: int) -> Iterator[tuple[list[LogEntry], Execution | None]]:
        stream = self._stream = self.link.open_stream()
        try:
            if self._stop.is_set():
                return
            for frame in stream.stream(protocol.Follow(handle=self.handle, after=after)):
                if isinstance(frame, protocol.LogBatch):
                    yield frame.entries, None
                elif isinstance(frame, protocol.Finished):
                    yield [], frame.execution
        finally:
            self._stream = None
            self.link.close_stream(stream)

    def _scan_page(self, after: int, client: Client) -> protocol.LogPage:
        return client.logs(self.handle, after=after, limit=SCAN_PAGE)

    def _scan(self, upto: int) -> None:
        """The events of entries 0..upto, page by page (worker thread)."""
        after = -1
        while after < upto and not self._stop.is_set():
            try:
                page = self.link.call(functools.partial(self._scan_page, after))
            except WfmError as err:
                if not daemon_gone(err):
                    break
                self._stop.wait(RETRY)
                continue
            if not page.entries:
                break
            events = [e for e in page.entries if e.type != "raw_output" and e.seq <= upto]
            after = page.entries[-1].seq
            self._app().deliver(self._scanned, events, min(after, upto), False)
        self._app().deliver(self._scanned, [], upto, True)

    # ------------------------------------------------------------------ on the event loop

    def _show(self, execution: Execution, log_count: int) -> None:
        if self._stop.is_set():  # closed: the tab is going away
            return
        self.execution = execution
        self.log_view.set_total(log_count)
        self._status_line()

    def _status_line(self) -> None:
        if self.execution is None:
            return
        done, total = self.progress.counts()
        phases = f"  phases {done}/{total}" if total else ""
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

    def _live(self, events: list[LogEntry], tail: list[LogEntry]) -> None:
        if self._stop.is_set():  # closed: the tab is going away
            return
        if self._scan_done:
            self.progress.apply(events)
        else:
            self._held_events.extend(events)
        self.log_view.add_live(tail)

    def _scanned(self, events: list[LogEntry], upto: int, finished: bool) -> None:
        if self._stop.is_set():  # closed: the tab is going away
            return
        self.progress.apply(events)
        if finished and not self._scan_done:
            self._scan_done = True
            self.progress.last_seq = max(self.progress.last_seq, upto)
            self.progress.apply(self._held_events)
            self._held_events = []

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
