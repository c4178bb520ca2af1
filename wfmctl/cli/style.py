"""Colour on a terminal: which text gets which SGR sequence.

Colour is applied to text that is already escaped (`terminal.escape`), so the only escape
sequences that reach the terminal are these. It is on when the stream is a terminal, unless
`NO_COLOR` is set to anything but the empty string (https://no-color.org) or `--no-color`
is given; pipes and files never get it.
"""

from __future__ import annotations

import os

from wfmctl.protocol import LogEntry

RESET = "\x1b[0m"
GREEN = "\x1b[32m"
RED = "\x1b[31m"
YELLOW = "\x1b[33m"
CYAN = "\x1b[36m"
DIM = "\x1b[2m"
BOLD = "\x1b[1m"

STATUS_COLORS = {
    "Completed": GREEN,
    "Failed": RED,
    "Cancelled": YELLOW,
    "Running": CYAN,
    "NotStarted": DIM,
}


def wanted(is_terminal: bool, no_color_flag: bool) -> bool:
    """Whether a stream gets colour."""
    return is_terminal and not no_color_flag and not os.environ.get("NO_COLOR")


def paint(text: str, sgr: str) -> str:
    return f"{sgr}{text}{RESET}" if sgr and text else text


def status(word: str) -> str:
    return paint(word, STATUS_COLORS.get(word, ""))


def entry_color(entry: LogEntry) -> str:
    """stderr lines in yellow; events in cyan, their failures red and completions green."""
    if entry.type == "raw_output" or entry.event is None:
        return YELLOW if entry.stream == "stderr" else ""
    if entry.type.endswith("_failed"):
        return RED
    if entry.type.endswith("_completed"):
        return GREEN
    return CYAN


def status_in(text: str, word: str) -> str:
    """`text` with the status `word` coloured where it first stands as a value: at the start,
    or after two spaces (a column gap, or a key's padding)."""
    if text.startswith(word):
        return status(word) + text[len(word) :]
    at = text.find("  " + word)
    if at < 0:
        return text
    at += 2
    return text[:at] + status(word) + text[at + len(word) :]


def history_statuses(table: str) -> str:
    """A history table with its STATUS column coloured (found by the header's position)."""
    lines = table.split("\n")
    column = lines[0].find("STATUS")
    if column < 0:
        return table
    for i, line in enumerate(lines[1:], start=1):
        word = line[column:].split(" ", 1)[0]
        if word in STATUS_COLORS:
            lines[i] = line[:column] + status(word) + line[column + len(word) :]
    return "\n".join(lines)
