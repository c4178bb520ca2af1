"""The history tab: past and present executions, newest first, or the log lines a search
finds; a line of statistics for what the filters select; delete.

Every list is paged from the daemon by keyset (`before`), so the millionth execution or the
thousandth match is as quick to reach as the first. The tab asks the app (`Host`) for pages
as the filters change and as the cursor nears the end of what is loaded; the app answers
through `show_page`, `show_hits` and `show_stats`, which drop answers to filters since changed.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Select, Static, TabPane

from wfmctl.cli import render
from wfmctl.cli.args import parse_time
from wfmctl.protocol import ALL_STATUSES, Execution, SearchHit, StatsReply
from wfmctl.tui import text
from wfmctl.tui.host import HistoryFilter, Host, host
from wfmctl.tui.logview import entry_text
from wfmctl.tui.panes import ExecutionTable

HISTORY_PAGE = 100  # executions per history request: a few screens, one small frame
HITS_PAGE = 50  # matching lines per search request: the daemon bounds each request's work
MORE_MARGIN = 5  # rows before the end of what is loaded at which the next page is asked
# The statistics line's window without a `since` filter: recent enough to matter, and cheap
# on a long history (whole-history statistics scan every execution).
STATS_WINDOW_DAYS = 30


class HitsTable(DataTable[Text]):
    """Matching log lines, newest first; Enter opens the execution at the line."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.hits: list[SearchHit] = []

    def on_mount(self) -> None:
        self.add_columns("handle", "workflow", "line", "text")

    def fill(self, hits: list[SearchHit], *, append: bool) -> None:
        if not append:
            self.clear()
            self.hits = []
        for hit in hits:
            self.add_row(
                Text(text.short(hit.handle)),
                text.cell(hit.workflow_id),
                Text(str(hit.entry.seq + 1), justify="right"),
                text.cell(entry_text(hit.entry)),
            )
        self.hits += hits

    def selected(self) -> SearchHit | None:
        return self.hits[self.cursor_row] if 0 <= self.cursor_row < len(self.hits) else None


def stats_since(wanted: HistoryFilter, now: float) -> float:
    """Where the statistics line starts: the `since` filter, else STATS_WINDOW_DAYS ago."""
    return wanted.since if wanted.since is not None else now - STATS_WINDOW_DAYS * 86400


def stats_line(wanted: HistoryFilter, reply: StatsReply) -> str:
    """What the filters select, summed over workflows: outcomes, success, durations (of one
    workflow only: percentiles do not add up)."""
    window = f"last {STATS_WINDOW_DAYS} days" if wanted.since is None else "since then"
    rows = reply.workflows
    runs = sum(w.runs for w in rows)
    if not runs:
        return f"{window}: no runs"
    completed = sum(w.completed for w in rows)
    failed = sum(w.failed for w in rows)
    cancelled = sum(w.cancelled for w in rows)
    active = sum(w.active for w in rows)
    parts = [f"{runs} runs", f"{completed} completed", f"{failed} failed"]
    parts += [f"{cancelled} cancelled"] if cancelled else []
    parts += [f"{active} active"] if active else []
    ended = completed + failed + cancelled
    parts += [f"{completed / ended:.0%} success"] if ended else []
    if len(rows) == 1 and rows[0].p50_duration is not None:
        w = rows[0]
        p50, p95 = render.format_duration(w.p50_duration), render.format_duration(w.p95_duration)
        parts.append(f"took p50 {p50} p95 {p95}")
    return f"{window}: " + " · ".join(parts)


class HistoryPane(TabPane):
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "search", "Search"),
        Binding("d,delete", "delete", "Delete"),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    DEFAULT_CSS = """
    HistoryPane #hist-filters { height: 1; }
    HistoryPane #hist-filters Input { width: 1fr; }
    HistoryPane #hist-filters Select { width: 22; }
    HistoryPane #hist-count, HistoryPane #hist-stats { height: 1; color: $text-muted; }
    HistoryPane #hist-hits { display: none; }
    HistoryPane.searching #hist-hits { display: block; }
    HistoryPane.searching #hist-table { display: none; }
    """

    def __init__(self) -> None:
        super().__init__("History", id="history")
        self.filter = HistoryFilter()
        self.page_size = HISTORY_PAGE
        self.hits_page = HITS_PAGE
        self.next_before: str | None = None
        self.next_hit: int | None = None
        self.fetching = False
        self.shown = 0  # rows in the table in view
        self.pages = 0  # pages shown so far

    def compose(self) -> ComposeResult:
        with Vertical():
            with Horizontal(id="hist-filters"):
                yield Input(placeholder="workflow id", id="hist-workflow", compact=True)
                yield Select(
                    [(s, s) for s in ALL_STATUSES],
                    prompt="any status",
                    id="hist-status",
                    compact=True,
                )
                yield Input(
                    placeholder="since: 2h, today, 2026-11-26", id="hist-since", compact=True
                )
            yield Input(
                placeholder='search the logs: words, "a phrase", prefix*',
                id="hist-search",
                compact=True,
            )
            yield Static("", id="hist-count")
            yield Static("", id="hist-stats")
            yield ExecutionTable(id="hist-table")
            yield HitsTable(id="hist-hits")

    def _app(self) -> Host:
        return host(self.app)

    @property
    def searching(self) -> bool:
        return self.filter.query is not None

    def _say(self, message: str | Text) -> None:
        self.query_one("#hist-count", Static).update(message)

    def read_filter(self) -> HistoryFilter | None:
        """The filters as typed, or None (and a message) if the time cannot be read."""
        workflow = self.query_one("#hist-workflow", Input).value.strip() or None
        status_value = self.query_one("#hist-status", Select).value
        status = status_value if isinstance(status_value, str) else None
        since_text = self.query_one("#hist-since", Input).value.strip()
        query = self.query_one("#hist-search", Input).value.strip() or None
        since = None
        if since_text:
            try:
                since = parse_time(since_text)
            except ValueError as exc:
                self._say(Text(str(exc), style="red"))
                return None
        return HistoryFilter(workflow, status, since, query)

    def reload(self) -> None:
        wanted = self.read_filter()
        if wanted is None:
            return
        self.filter = wanted
        self.set_class(self.searching, "searching")
        self.next_before = None
        self.next_hit = None
        self.shown = 0
        self.fetching = True
        if self.searching:
            self._app().load_search(self.filter, None)
        else:
            self._app().load_history(self.filter, None)
        self._app().load_stats(self.filter)

    def _current(self, wanted: HistoryFilter) -> bool:
        return wanted.key() == self.filter.key()

    def show_page(
        self, wanted: HistoryFilter, before: str | None, page: list[Execution], nxt: str | None
    ) -> None:
        if not self._current(wanted):
            return  # an answer to filters since changed
        table = self.query_one(ExecutionTable)
        if before is None:
            selected = table.selected_handle()  # kept where it is still listed
            table.fill(page, keep_cursor=False)
            if selected is not None and selected in table.rows:
                table.move_cursor(row=table.get_row_index(selected))
            self.shown = len(page)
        else:
            table.append(page)
            self.shown += len(page)
        self.next_before = nxt if len(page) >= self.page_size else None
        self.fetching = False
        self.pages += 1
        more = " (more below)" if self.next_before else ""
        self._say(f"{self.shown} shown{more}")

    def show_hits(
        self,
        wanted: HistoryFilter,
        before: int | None,
        hits: list[SearchHit],
        nxt: int | None,
        backlog: int,
    ) -> None:
        if not self._current(wanted):
            return
        table = self.query_one(HitsTable)
        table.fill(hits, append=before is not None)
        self.shown = len(table.hits)
        self.next_hit = nxt
        self.fetching = False
        self.pages += 1
        more = " (more below)" if nxt is not None else ""
        behind = f"; {backlog:,} log rows not indexed yet" if backlog else ""
        self._say(f"{self.shown} matching lines{more}{behind}")

    def show_stats(self, wanted: HistoryFilter, reply: StatsReply) -> None:
        if self._current(wanted):
            self.query_one("#hist-stats", Static).update(stats_line(wanted, reply))

    def show_error(self, wanted: HistoryFilter, message: str) -> None:
        """A refusal (a query with no word, say): said instead of the rows, which are stale."""
        if self._current(wanted):
            self.fetching = False
            self.next_before = self.next_hit = None
            self.query_one(HitsTable).fill([], append=False)
            self.query_one(ExecutionTable).clear()
            self.shown = 0
            self._say(Text(text.safe(message), style="red"))

    def on_input_submitted(self) -> None:
        self.reload()
        self.call_after_refresh(self.table().focus)

    def table(self) -> DataTable[Text]:
        """The table in view: the matching lines while searching, else the executions."""
        return self.query_one(HitsTable if self.searching else ExecutionTable)

    def on_select_changed(self) -> None:
        self.reload()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.fetching or event.cursor_row < self.shown - MORE_MARGIN:
            return
        if isinstance(event.data_table, HitsTable):
            if self.next_hit is not None:
                self.fetching = True
                self._app().load_search(self.filter, self.next_hit)
        elif self.next_before is not None:
            self.fetching = True
            self._app().load_history(self.filter, self.next_before)

    def on_data_table_row_selected(self) -> None:
        self.action_open()

    def _selected(self) -> tuple[str, int | None] | None:
        """The handle under the cursor, and the matching line's seq in a search."""
        if self.searching:
            hit = self.query_one(HitsTable).selected()
            return None if hit is None else (hit.handle, hit.entry.seq)
        handle = self.query_one(ExecutionTable).selected_handle()
        return None if handle is None else (handle, None)

    def action_open(self) -> None:
        selected = self._selected()
        if selected is not None:
            self._app().open_execution(*selected)

    def action_delete(self) -> None:
        selected = self._selected()
        if selected is not None:
            self._app().delete(selected[0])

    def action_filter(self) -> None:
        self.query_one("#hist-workflow", Input).focus()

    def action_search(self) -> None:
        self.query_one("#hist-search", Input).focus()

    def action_reload(self) -> None:
        self.reload()
