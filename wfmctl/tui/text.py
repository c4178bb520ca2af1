"""Protocol values as the dashboard's short cells and lines.

Built on `wfmctl.cli.render`, so the dashboard and the command line word things alike. All
text a workflow controls (names, descriptions, values, reasons) goes through `safe`: Textual
draws it as text, and markup-like brackets or control characters must stay inert.
"""

from __future__ import annotations

import time

from rich.text import Text

from wfmctl.cli import render, terminal
from wfmctl.protocol import Execution

SHORT_HANDLE = 8  # characters of a handle shown in tables and tab titles: unique in practice

STATUS_STYLES = {
    "Running": "bold yellow",
    "NotStarted": "dim",
    "Completed": "green",
    "Failed": "bold red",
    "Cancelled": "magenta",
}


def safe(text: str) -> str:
    """One line of workflow-controlled text, control characters escaped."""
    return " ".join(terminal.escape(text).split()) if text else ""


def cell(text: str, style: str = "") -> Text:
    """A table cell that Textual will not read as markup."""
    return Text(safe(text), style=style, no_wrap=True, overflow="ellipsis")


def status_cell(execution: Execution) -> Text:
    return Text(execution.status, style=STATUS_STYLES.get(execution.status, ""))


def short(handle: str) -> str:
    return handle[:SHORT_HANDLE]


def when(ts: float | None, now: float | None = None) -> str:
    """`14:03:07` today, else `2026-11-26 14:03`: what fits a column."""
    if ts is None:
        return render.EMPTY
    now = time.time() if now is None else now
    if time.strftime("%Y-%m-%d", time.localtime(ts)) == time.strftime(
        "%Y-%m-%d", time.localtime(now)
    ):
        return time.strftime("%H:%M:%S", time.localtime(ts))
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def took(execution: Execution, now: float | None = None) -> str:
    return render.format_duration(render.duration_of(execution, now))


def workflow_label(execution: Execution) -> str:
    return safe(render.workflow_label(execution))


def summary(execution: Execution, now: float | None = None) -> str:
    """`<workflow> <handle>: Completed in 1.2s` on one line."""
    return (
        f"{workflow_label(execution)} {short(execution.handle)}: "
        f"{safe(render.summarize(execution, now))}"
    )
