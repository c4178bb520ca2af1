"""A yes-or-no question before something that cannot be undone (deleting an execution)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Static


class Confirm(ModalScreen[bool]):
    """`question`, dismissed with True on `y`, False on `n` or Escape."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]
    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm Static { width: 60; height: auto; border: round $error; padding: 1 2; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        # Text, not markup: the question holds names a workflow chose.
        yield Static(
            Text.assemble(self.question, "\n\n", ("y", "bold"), " yes    ", ("n", "bold"), " no")
        )

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
