"""The launch form: one input per field of a workflow's metadata, sent as a `run` request.

Each field type gets its widget: text and numbers an input (a number's range in its hint),
select a drop-down, file_path and state_file an input with a file picker (F2), and
phase_selector an input hinting at the phases there are. A required field's default is
filled in; a non-required one's is shown as the placeholder (the workflow applies it when
the field is left empty, as the daemon passes nothing for it). Recent values (the daemon's
param history) are offered as completions and listed in the hint.

The daemon does the checking, as it would for any client: its `invalid_params` message is
split per field (`problems.py`) and shown under each, so the form and the daemon can never
disagree on what is valid.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, DirectoryTree, Input, Label, Select, Static

from wfmctl.cli.render import describe_type
from wfmctl.client import WfmError
from wfmctl.protocol import ErrorCode, Execution, Field, Workflow
from wfmctl.tui import text
from wfmctl.tui.link import Link
from wfmctl.tui.problems import GENERAL, split_problems

RECENT_SHOWN = 3  # recent values listed in a field's hint (all are offered as completions)
PATH_TYPES = ("file_path", "state_file")


def input_id(name: str) -> str:
    return f"f-{name}"


def _safe_id(name: str) -> str:
    """A field name as a widget id: ids allow letters, digits, `_` and `-` only."""
    return "".join(c if c.isalnum() or c in "_-" else f"_{ord(c):x}_" for c in name)


class FilePicker(ModalScreen[str | None]):
    """A directory tree; Enter on a file picks it. `pattern` (a glob) filters the files."""

    BINDINGS = [Binding("escape", "dismiss_none", "Back")]
    DEFAULT_CSS = """
    FilePicker { align: center middle; }
    FilePicker DirectoryTree { width: 90%; height: 80%; border: round $primary; }
    """

    def __init__(self, start: Path, pattern: str | None) -> None:
        super().__init__()
        self.start = start
        self.pattern = pattern

    def compose(self) -> ComposeResult:
        pattern = self.pattern

        class Filtered(DirectoryTree):
            def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
                return [
                    p
                    for p in paths
                    if not pattern or p.is_dir() or fnmatch.fnmatch(p.name, pattern)
                ]

        tree = Filtered(self.start)
        tree.border_title = f"pick a file{f' ({pattern})' if pattern else ''}"
        yield tree

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(str(event.path))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class LaunchForm(ModalScreen[Execution | None]):
    """The form of one workflow; dismissed with the accepted execution, or None."""

    BINDINGS = [
        Binding("escape", "dismiss_none", "Back"),
        Binding("ctrl+s", "launch", "Launch"),
        Binding("f2", "pick", "Pick file"),
    ]

    DEFAULT_CSS = """
    LaunchForm { align: center middle; }
    LaunchForm #form { width: 100%; max-width: 100; height: 100%; max-height: 40;
                       border: round $primary; background: $surface; padding: 0 1; }
    LaunchForm .hint { color: $text-muted; }
    LaunchForm .problem, LaunchForm #form-problems { color: $error; display: none; }
    LaunchForm .problem.shown, LaunchForm #form-problems.shown { display: block; }
    LaunchForm Input, LaunchForm Select { margin: 0 0 0 2; width: 1fr; }
    LaunchForm Label { margin-top: 1; text-style: bold; }
    LaunchForm #form-buttons { height: 3; }
    """

    def __init__(self, link: Link, workflow: Workflow, recent: dict[str, list[str]]) -> None:
        super().__init__()
        self.link = link
        self.workflow = workflow
        self.recent = recent
        self.sending = False

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        w = self.workflow
        with VerticalScroll(id="form") as form:
            form.border_title = f"run {text.safe(w.id)}"
            if w.description:
                yield Static(Text(text.safe(w.description)), classes="hint")
            for f in w.fields:
                yield Label(Text(self._label(f)))
                yield self._widget(f)
                yield Static(Text(self._hint(f)), classes="hint")
                yield Static("", id=f"p-{_safe_id(f.name)}", classes="problem")
            if not w.fields:
                yield Static("this workflow takes no parameters", classes="hint")
            yield Static("", id="form-problems")
            with Horizontal(id="form-buttons"):
                yield Button("Launch (ctrl+s)", id="form-launch", variant="primary")
                yield Button("Back (esc)", id="form-back")

    def _label(self, f: Field) -> str:
        name = text.safe(f.label or f.name)
        return f"{name}{' *' if f.required else ''}"

    def _hint(self, f: Field) -> str:
        parts = [describe_type(f.field_type)]
        if f.field_type.type in PATH_TYPES:
            parts.append("F2 picks a file")
        if f.description:
            parts.append(text.safe(f.description))
        recent = self.recent.get(f.name, [])
        if recent:
            shown = ", ".join(text.safe(v) for v in recent[:RECENT_SHOWN])
            parts.append(f"recent: {shown}")
        return " · ".join(p for p in parts if p)

    def _widget(self, f: Field) -> Input | Select[str]:
        wid = input_id(_safe_id(f.name))
        kind = f.field_type.type
        if kind == "select":
            options = f.field_type.options or []
            value: Any = f.default if f.default in options else Select.NULL
            if f.required and value is Select.NULL and options:
                value = options[0]
            return Select(
                [(text.safe(o), o) for o in options],
                value=value,
                allow_blank=not f.required,
                prompt="(not given)",
                id=wid,
                compact=True,
            )
        recent = self.recent.get(f.name, [])
        placeholder = ""
        if f.default is not None and not f.required:
            placeholder = f"default: {f.default}"
        elif kind == "phase_selector" and f.field_type.total_phases:
            placeholder = f"phases 1-{f.field_type.total_phases}, e.g. 1,3"
        elif recent:
            placeholder = f"recent: {recent[0]}"
        return Input(
            value=f.default if f.required and f.default is not None else "",
            placeholder=text.safe(placeholder),
            suggester=SuggestFromList(recent) if recent else None,
            id=wid,
            compact=True,
        )

    def on_mount(self) -> None:
        if self.workflow.fields:
            self.query_one(f"#{input_id(_safe_id(self.workflow.fields[0].name))}").focus()

    # ------------------------------------------------------------------ values

    def values(self) -> dict[str, str]:
        """The fields given: empty inputs and blank selects are left out (not given)."""
        params: dict[str, str] = {}
        for f in self.workflow.fields:
            widget = self.query_one(f"#{input_id(_safe_id(f.name))}")
            if isinstance(widget, Select):
                if isinstance(widget.value, str):
                    params[f.name] = widget.value
            elif isinstance(widget, Input) and widget.value != "":
                params[f.name] = widget.value
        return params

    def show_problems(self, problems: dict[str, list[str]]) -> None:
        for f in self.workflow.fields:
            self._say(f"#p-{_safe_id(f.name)}", problems.get(f.name, []))
        self._say("#form-problems", problems.get(GENERAL, []))
        placed = [f for f in self.workflow.fields if problems.get(f.name)]
        if placed:
            self.query_one(f"#{input_id(_safe_id(placed[0].name))}").focus()

    def _say(self, selector: str, lines: list[str]) -> None:
        static = self.query_one(selector, Static)
        static.update(Text("\n".join(text.safe(line) for line in lines)))
        static.set_class(bool(lines), "shown")

    # ------------------------------------------------------------------ actions

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "form-launch":
            self.action_launch()
        else:
            self.action_dismiss_none()

    def on_input_submitted(self) -> None:
        self.action_launch()

    def action_launch(self) -> None:
        if self.sending:
            return
        self.sending = True
        params = self.values()
        self._say("#form-problems", ["starting…"])
        self.run_worker(lambda: self._send(params), thread=True, exit_on_error=False)

    def _send(self, params: dict[str, str]) -> None:
        wid = self.workflow.id
        try:
            execution = self.link.call(lambda c: c.run(wid, params), once=True)
        except WfmError as err:
            self._deliver(self._refused, err)
            return
        self._deliver(self.dismiss, execution)

    def _deliver(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the app stopped meanwhile
            self.app.call_from_thread(fn, *args)

    def _refused(self, err: WfmError) -> None:
        self.sending = False
        if err.code == ErrorCode.INVALID_PARAMS:
            names = [f.name for f in self.workflow.fields]
            self.show_problems(split_problems(err.message, names))
        else:
            self.show_problems({GENERAL: [err.message]})

    def action_pick(self) -> None:
        focused = self.focused
        field = next(
            (
                f
                for f in self.workflow.fields
                if focused is not None and focused.id == input_id(_safe_id(f.name))
            ),
            None,
        )
        if (
            field is None
            or field.field_type.type not in PATH_TYPES
            or not isinstance(focused, Input)
        ):
            self.notify("F2 picks a file for a file or state file field", severity="warning")
            return
        typed = Path(focused.value).expanduser() if focused.value else Path.cwd()
        start = typed if typed.is_dir() else typed.parent if typed.parent.is_dir() else Path.cwd()
        target = focused

        def picked(path: str | None) -> None:
            if path is not None:
                target.value = path

        self.app.push_screen(FilePicker(start, field.field_type.pattern), picked)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
