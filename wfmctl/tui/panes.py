"""The dashboard's three fixed tabs: workflows, runs (running and queued), history.

Each is drawn from values the app hands it (fetched by its worker threads); none talks to
the daemon itself, except history, which asks the app for pages as the filters change and as
the cursor nears the end of what is loaded.

History search, statistics and deletion wait for the daemon's requests: search as one more
field of the filter row (`HistoryFilter`), statistics as a line beside `#hist-count`, and
delete as a key on the table, asking the app as cancel does.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Select, Static, TabPane

from wfmctl.cli.args import parse_time
from wfmctl.protocol import ALL_STATUSES, Execution, Workflow
from wfmctl.tui import text
from wfmctl.tui.host import HistoryFilter, Host, host

HISTORY_PAGE = 100  # executions per history request: a few screens, one small frame
MORE_MARGIN = 5  # rows before the end of the loaded history at which the next page is asked


def execution_row(e: Execution) -> tuple[Text, ...]:
    return (
        Text(text.short(e.handle)),
        text.cell(text.workflow_label(e)),
        text.status_cell(e),
        Text(text.when(e.created_at)),
        Text(text.took(e)),
        text.cell(e.reason or ""),
    )


EXECUTION_COLUMNS = ("handle", "workflow", "status", "created", "took", "reason")


class WorkflowsPane(TabPane):
    # Enter reaches the table first (RowSelected); the binding names it in the footer.
    BINDINGS = [Binding("enter", "launch", "Launch"), Binding("n", "launch", "Launch", show=False)]

    DEFAULT_CSS = """
    WorkflowsPane #wf-about { height: auto; max-height: 6; padding: 0 1; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__("Workflows", id="workflows")
        self.workflows: list[Workflow] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield DataTable(id="wf-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="wf-about")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("id", "name", "description")

    def show(self, workflows: list[Workflow]) -> None:
        table: DataTable[Text] = self.query_one(DataTable)
        keep = table.cursor_row
        self.workflows = sorted(workflows, key=lambda w: w.id)
        table.clear()
        for w in self.workflows:
            table.add_row(text.cell(w.id), text.cell(w.name), text.cell(w.description), key=w.id)
        if self.workflows:
            table.move_cursor(row=min(keep, len(self.workflows) - 1))
        self._describe()

    def selected(self) -> Workflow | None:
        table = self.query_one(DataTable)
        if not self.workflows or table.cursor_row >= len(self.workflows):
            return None
        return self.workflows[table.cursor_row]

    def on_data_table_row_highlighted(self) -> None:
        self._describe()

    def _describe(self) -> None:
        w = self.selected()
        about = self.query_one("#wf-about", Static)
        if w is None:
            about.update("no workflows")
            return
        fields = ", ".join(f.name for f in w.fields) or "none"
        about.update(Text(f"{text.safe(w.description)}\nfields: {text.safe(fields)}"))

    def on_data_table_row_selected(self) -> None:
        self.action_launch()

    def action_launch(self) -> None:
        w = self.selected()
        if w is not None:
            host(self.app).open_form(w)


class ExecutionTable(DataTable[Text]):
    """Executions, one per row, keyed by handle; Enter opens one."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.add_columns(*EXECUTION_COLUMNS)

    def fill(self, executions: list[Execution], *, keep_cursor: bool = True) -> None:
        keep = self.cursor_row
        self.clear()
        for e in executions:
            self.add_row(*execution_row(e), key=e.handle)
        if executions and keep_cursor:
            self.move_cursor(row=min(keep, len(executions) - 1))

    def append(self, executions: list[Execution]) -> None:
        for e in executions:
            if e.handle not in self.rows:
                self.add_row(*execution_row(e), key=e.handle)

    def selected_handle(self) -> str | None:
        if self.row_count == 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return None if key.value is None else str(key.value)


class RunsPane(TabPane):
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("c", "cancel", "Cancel"),
    ]

    def __init__(self) -> None:
        super().__init__("Runs", id="runs")
        self.updates = 0  # lists shown so far

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("", id="runs-count")
            yield ExecutionTable(id="runs-table")

    def show(self, running: list[Execution], queued: list[Execution]) -> None:
        self.query_one("#runs-count", Static).update(
            f"{len(running)} running, {len(queued)} queued"
        )
        self.query_one(ExecutionTable).fill([*running, *queued])
        self.updates += 1

    def on_data_table_row_selected(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        handle = self.query_one(ExecutionTable).selected_handle()
        if handle is not None:
            host(self.app).open_execution(handle)

    def action_cancel(self) -> None:
        handle = self.query_one(ExecutionTable).selected_handle()
        if handle is not None:
            host(self.app).cancel(handle)


class HistoryPane(TabPane):
    """Newest first, filtered by workflow, status and time; paged from the daemon by keyset
    (`before`), so the millionth execution is as quick to reach as the first."""

    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("slash", "filter", "Filter"),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    DEFAULT_CSS = """
    HistoryPane #hist-filters { height: 1; }
    HistoryPane #hist-filters Input { width: 1fr; }
    HistoryPane #hist-filters Select { width: 22; }
    HistoryPane #hist-count { height: 1; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__("History", id="history")
        self.filter = HistoryFilter()
        self.page_size = HISTORY_PAGE
        self.next_before: str | None = None
        self.fetching = False
        self.shown = 0  # rows in the table
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
            yield Static("", id="hist-count")
            yield ExecutionTable(id="hist-table")

    def _app(self) -> Host:
        return host(self.app)

    def read_filter(self) -> HistoryFilter | None:
        """The filters as typed, or None (and a message) if the time cannot be read."""
        workflow = self.query_one("#hist-workflow", Input).value.strip() or None
        status_value = self.query_one("#hist-status", Select).value
        status = status_value if isinstance(status_value, str) else None
        since_text = self.query_one("#hist-since", Input).value.strip()
        since = None
        if since_text:
            try:
                since = parse_time(since_text)
            except ValueError as exc:
                self.query_one("#hist-count", Static).update(Text(str(exc), style="red"))
                return None
        return HistoryFilter(workflow, status, since)

    def reload(self) -> None:
        wanted = self.read_filter()
        if wanted is None:
            return
        self.filter = wanted
        self.next_before = None
        self.shown = 0
        self.fetching = True
        self._app().load_history(self.filter, None)

    def show_page(
        self, wanted: HistoryFilter, before: str | None, page: list[Execution], nxt: str | None
    ) -> None:
        if wanted.key() != self.filter.key():
            return  # an answer to filters since changed
        table = self.query_one(ExecutionTable)
        if before is None:
            table.fill(page, keep_cursor=False)
            self.shown = len(page)
        else:
            table.append(page)
            self.shown += len(page)
        self.next_before = nxt if len(page) >= self.page_size else None
        self.fetching = False
        self.pages += 1
        more = " (more below)" if self.next_before else ""
        self.query_one("#hist-count", Static).update(f"{self.shown} shown{more}")

    def on_input_submitted(self) -> None:
        self.reload()
        self.call_after_refresh(self.query_one(ExecutionTable).focus)

    def on_select_changed(self) -> None:
        self.reload()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if (
            self.next_before is not None
            and not self.fetching
            and event.cursor_row >= self.shown - MORE_MARGIN
        ):
            self.fetching = True
            self._app().load_history(self.filter, self.next_before)

    def on_data_table_row_selected(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        handle = self.query_one(ExecutionTable).selected_handle()
        if handle is not None:
            self._app().open_execution(handle)

    def action_filter(self) -> None:
        self.query_one("#hist-workflow", Input).focus()

    def action_reload(self) -> None:
        self.reload()
