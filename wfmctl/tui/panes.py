"""Two of the dashboard's fixed tabs, workflows and runs (running and queued), and the
table of executions they share with history (history.py).

Each is drawn from values the app hands it (fetched by its worker threads); neither talks to
the daemon itself.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static, TabPane

from wfmctl.protocol import Execution, Workflow
from wfmctl.tui import text
from wfmctl.tui.host import host


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
