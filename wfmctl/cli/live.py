"""`run --follow` and `logs -f` on a terminal: log lines scroll, and a progress line stays at
the bottom (phase n/N and its name, the current task, elapsed time), built from the events.

A line that a progress bar rewrites with carriage returns (tqdm) is stored once its newline
comes; until then the daemon sends its latest state (`Follow.partial`), shown in the
progress line.

The progress line is the last line of the terminal, written without a newline; before any
log line is printed it is erased (`\\r` and erase-line), and it is drawn again afterwards:
at most every DRAW_INTERVAL while lines stream, and every TICK while none come (a timer
signal interrupts the wait for the next frame, so the elapsed time keeps moving).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any, TextIO

from wfmctl.cli import render, style
from wfmctl.protocol import Execution, LogEntry, PartialLine

ERASE = "\r\x1b[K"  # to the start of the line, and clear it
DRAW_INTERVAL = 0.05  # while lines stream: redrawn this often at most (20/s is smooth)
TICK = 0.25  # while nothing comes: the elapsed time moves on this often


class Progress:
    """Where an execution is, as its events say."""

    def __init__(self, execution: Execution) -> None:
        self.workflow = execution.workflow_id
        self.began = execution.started_at or execution.created_at
        self.phase = ""
        self.task = ""
        # Progress bars on their line now, by stream: their latest state (live, not stored).
        self.bars: dict[str, str] = {}

    def update(self, entry: LogEntry) -> None:
        self.bars.pop(entry.stream, None)  # the stream's line is finished
        event: Mapping[str, Any] = entry.event or {}
        match entry.type:
            case "phase_started":
                total = event.get("total_phases")
                number = f"{event.get('phase', '?')}" + (f"/{total}" if total else "")
                self.phase = f"phase {number} {event.get('name') or ''}".rstrip()
                self.task = ""
            case "phase_completed" | "phase_failed":
                self.task = ""
            case "task_started" | "task_progress":
                said = event.get("description" if entry.type == "task_started" else "message")
                self.task = f"task {event.get('task_id', '?')}" + (f": {said}" if said else "")
            case "task_completed" | "task_failed":
                self.task = ""

    def line(self, now: float, width: int) -> str:
        parts = [p for p in (self.workflow, self.phase, self.task, *self.bars.values()) if p]
        parts.append(render.format_duration(max(0.0, now - self.began)))
        text = " · ".join(parts)
        return text if len(text) < width else text[: max(1, width - 2)] + "…"


class LiveFollow:
    """Prints followed entries on a terminal under a progress line (see the module doc)."""

    def __init__(
        self, out: TextIO, execution: Execution, width: int, *, color: bool, escape: bool
    ) -> None:
        self.out = out
        self.progress = Progress(execution)
        self.width = width
        self.color = color
        self.escape = escape
        self.shown = False  # the progress line is on the screen
        self.drawn_at = 0.0
        self.busy = False  # printing: the timer leaves the terminal alone
        self._old_handler: Any = None

    def __enter__(self) -> LiveFollow:
        self._old_handler = signal.signal(signal.SIGALRM, self._tick)
        signal.setitimer(signal.ITIMER_REAL, TICK, TICK)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old_handler)
        self.erase()
        self.out.flush()

    def _tick(self, signum: int, frame: FrameType | None) -> None:
        if not self.busy:
            self.draw()
            self.out.flush()

    def entry(self, entry: LogEntry) -> None:
        self.busy = True
        try:
            self.erase()
            self.progress.update(entry)
            self.out.write(render_for_terminal(entry, color=self.color, escape=self.escape) + "\n")
            now = time.monotonic()
            if now - self.drawn_at >= DRAW_INTERVAL:
                self.draw()
            self.out.flush()
        finally:
            self.busy = False

    def partial(self, lines: list[PartialLine]) -> None:
        """The progress bars' latest states: shown in the progress line until their line
        ends (and is printed like any other)."""
        from wfmctl.cli import terminal

        self.busy = True
        try:
            self.progress.bars = {
                p.stream: terminal.escape(p.text) if self.escape else p.text for p in lines
            }
            self.draw()
            self.out.flush()
        finally:
            self.busy = False

    def erase(self) -> None:
        if self.shown:
            self.out.write(ERASE)
            self.shown = False

    def draw(self) -> None:
        text = self.progress.line(time.time(), self.width)
        self.out.write(ERASE + (style.paint(text, style.DIM) if self.color else text))
        self.shown = True
        self.drawn_at = time.monotonic()


def latest_state(line: str) -> str:
    """What a terminal shows once a line rewritten with carriage returns (a progress bar) is
    done: its last non-empty `\r`-separated state, with the `\r`s that end it. A line with
    one state or none is returned as it is."""
    if "\r" not in line:
        return line
    states = [state for state in line.split("\r") if state]
    if len(states) < 2:
        return line
    body = line.rstrip("\r")
    return states[-1] + "\r" * (len(line) - len(body))


def render_for_terminal(entry: LogEntry, *, color: bool, escape: bool) -> str:
    """An entry as a terminal shows it: a carriage-return progress bar as its latest state,
    control characters escaped (unless --raw), coloured (unless NO_COLOR or --no-color)."""
    from wfmctl.cli import terminal

    text = render.render_entry(entry)
    if escape:
        text = terminal.escape(latest_state(text))
    return style.paint(text, style.entry_color(entry)) if color else text
