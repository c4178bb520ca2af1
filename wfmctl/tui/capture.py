"""The screen as plain text: what the tests compare and the README shows.

Textual exports screenshots as SVG; this renders the same composition into a recording
console and exports its text instead, one line per screen row, trailing spaces removed.
"""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from textual.app import App


def screen_text(app: App[Any]) -> str:
    """The current screen of a running app (e.g. under `run_test`), as text."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    # The same call as App.export_screenshot, which Textual offers for SVG only.
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    console.print(update)
    lines = console.export_text(styles=False).splitlines()
    return "\n".join(line.rstrip() for line in lines[:height])
