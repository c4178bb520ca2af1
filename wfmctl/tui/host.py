"""What the tabs ask of the application (`app.WfmApp` provides it), and what they hand it.

A Protocol, so that the tabs name the app's services without importing the app module,
which imports them (no import cycle).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from wfmctl.protocol import Workflow

if TYPE_CHECKING:
    from textual.app import App


class HistoryFilter:
    """What the history tab asks the daemon for: executions, or with `query` the log lines
    that match it."""

    def __init__(
        self,
        workflow_id: str | None = None,
        status: str | None = None,
        since: float | None = None,
        query: str | None = None,
    ) -> None:
        self.workflow_id = workflow_id
        self.status = status
        self.since = since
        self.query = query

    def key(self) -> tuple[object, ...]:
        return (self.workflow_id, self.status, self.since, self.query)


class Host(Protocol):
    def deliver(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """`fn(*args)` on the event loop, from a worker thread."""

    def open_execution(self, handle: str, at: int | None = None) -> None:
        """Show the execution's tab; with `at`, its log at that entry rather than the end."""

    def close_execution(self, handle: str) -> None: ...

    def cancel(self, handle: str) -> None: ...

    def rerun(self, handle: str) -> None: ...

    def open_form(self, workflow: Workflow) -> None: ...

    def load_history(self, wanted: HistoryFilter, before: str | None) -> None: ...

    def load_search(self, wanted: HistoryFilter, before: int | None) -> None: ...

    def load_stats(self, wanted: HistoryFilter) -> None: ...

    def delete(self, handle: str) -> None:
        """Remove a finished execution, after asking the user."""


def host(app: App[Any]) -> Host:
    """The running app as the tabs' Host."""
    return cast(Host, app)
