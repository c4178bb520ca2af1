"""A log as a window over the daemon's copy: `LogView` holds a few pages, never the log.

Sequence numbers are contiguous from 0, so line y of the view is the entry with seq y, and
the view's height is simply the number of entries. Pages of `PAGE` entries are fetched when
a line of theirs is drawn (`GetLogs` after the page's start), kept in an LRU of
`PAGES_KEPT` pages, and dropped when scrolled far away. Opening a 10M-line log fetches the
one or two pages on screen; scrolling anywhere fetches what comes into view.

Live entries (from a follow) are added to the pages they belong to when those are held, and
only move the end otherwise. While `following`, the view stays at the end; moving up (keys or
wheel) stops following, and End (or `f`) starts again.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import var
from textual.scroll_view import ScrollView
from textual.strip import Strip

from wfmctl.cli import render, terminal
from wfmctl.protocol import LogEntry

PAGE = 500  # entries per fetch: a screenful many times over, a small frame
PAGES_KEPT = 40  # pages held (20,000 entries): scrolling back and forth refetches little
MAX_WIDTH = 2000  # cells of a line drawn; a 1 MiB line is cut, not laid out

PENDING_TEXT = "…"
STDERR_STYLE = Style(color="red")
EVENT_STYLE = Style(color="cyan", bold=True)
MARKED_STYLE = Style(reverse=True)  # the line a search hit opened the log at
CENTER_TRIES = 20  # refreshes to wait for a new view's layout before the marked line is shown

# Fetches entries after `after` (exclusive), at most `limit`; runs in a worker thread.
Fetch = Callable[[int, int], list[LogEntry]]


def entry_text(entry: LogEntry) -> str:
    """The line as shown: events rendered as `wfmctl logs` does, control characters escaped,
    tabs expanded."""
    text = terminal.escape(render.render_entry(entry))
    if "\n" in text:  # an event's multi-line message: one screen line per entry
        text = text.replace("\n", " ⏎ ")
    return text.expandtabs(8) if "\t" in text else text


class LogView(ScrollView, can_focus=True):
    """The log of one execution, drawn from pages fetched on demand."""

    BINDINGS = [
        Binding("up", "scroll_up", "Up", show=False),
        Binding("down", "scroll_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "scroll_home", "Start", show=False),
        Binding("end,f", "follow", "Follow"),
    ]

    DEFAULT_CSS = """
    LogView { background: $surface; }
    """

    following: var[bool] = var(True)

    def __init__(self, fetch: Fetch, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._fetch = fetch
        self.total = 0  # entries known to exist: seq 0 .. total-1
        self._pages: OrderedDict[int, list[LogEntry]] = OrderedDict()
        self._wanted: set[int] = set()  # pages being fetched
        self._width = 0
        self.marked: int | None = None  # the seq of the line shown with MARKED_STYLE
        self._centering = False  # the marked line is still to be brought into view

    # ------------------------------------------------------------------ feeding

    def set_total(self, total: int) -> None:
        """The log has (at least) `total` entries: grow the view to them."""
        if total > self.total:
            self.total = total
            self._resize()

    def add_live(self, entries: Sequence[LogEntry]) -> None:
        """Entries that just arrived, in order: kept where their page is held, else counted."""
        if not entries:
            return
        for entry in entries:
            number, offset = divmod(entry.seq, PAGE)
            page = self._pages.get(number)
            if page is None:
                if offset != 0:
                    continue  # drawn later from a fetch, if ever scrolled to
                page = self._pages[number] = []
                self._evict()
            if len(page) == offset:
                page.append(entry)
        self.total = max(self.total, entries[-1].seq + 1)
        self._resize()

    def _resize(self) -> None:
        self.virtual_size = Size(self._width, self.total)
        if self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
            # Before the first layout the view has no height yet: once more after it.
            self.call_after_refresh(self._keep_following)
        self.refresh()

    def _keep_following(self) -> None:
        if self.following and self.scroll_y < self.max_scroll_y:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def keep_following(self) -> None:
        """At the end if following: the owner calls this now and then, as a layout change
        (a horizontal scrollbar appearing, a resize) may have moved the end out of view."""
        self._keep_following()

    def on_resize(self) -> None:
        self.call_after_refresh(self._keep_following)
        self.call_after_refresh(self._center_marked)

    # ------------------------------------------------------------------ following

    # Following stops on the user's moves up (keys, wheel), never on a scroll position the
    # layout changed by itself (a scrollbar appearing, a resize).

    def on_mouse_scroll_up(self) -> None:
        self.following = False

    def show_line(self, seq: int) -> None:
        """Stop following; mark entry `seq` and bring it to the middle of the view (once the
        view has its size, if it has none yet)."""
        self.following = False
        self.marked = seq
        self._centering = True
        self.set_total(seq + 1)
        self._center_marked()

    def _center_marked(self, tries: int = CENTER_TRIES) -> None:
        """Scroll the marked line to the middle; again after the next refresh until the view
        is laid out (a tab just added has no size, then a size but not yet its scroll range)."""
        if self.marked is None or not self._centering:
            return
        height = self.scrollable_content_region.height
        target = min(max(0, self.marked - height // 2), self.max_scroll_y)
        if height:
            self.scroll_to(y=target, animate=False, immediate=True)
        if (height and abs(self.scroll_y - target) < 1) or tries <= 1:
            self._centering = False
        else:
            self.call_after_refresh(self._center_marked, tries - 1)
        self.refresh()

    def action_follow(self) -> None:
        self.following = True
        self.scroll_end(animate=False, immediate=True, x_axis=False)

    def action_scroll_up(self) -> None:
        self.following = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.following = False
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self.following = False
        super().action_scroll_home()

    # ------------------------------------------------------------------ pages

    def _evict(self) -> None:
        """Drop the least recently drawn pages beyond PAGES_KEPT (never those on screen)."""
        top = int(self.scroll_y) // PAGE
        bottom = (int(self.scroll_y) + self.size.height) // PAGE
        while len(self._pages) > PAGES_KEPT:
            for number in self._pages:
                if not top <= number <= bottom:
                    del self._pages[number]
                    break
            else:
                return

    def _want(self, number: int, after: int) -> None:
        if number in self._wanted:
            return
        self._wanted.add(number)
        self.run_worker(
            lambda: self._load(number, after), thread=True, group="log-pages", exit_on_error=False
        )

    def _load(self, number: int, after: int) -> None:
        """In a worker thread: fetch the rest of page `number`, after seq `after`."""
        limit = (number + 1) * PAGE - 1 - after
        try:
            entries = self._fetch(after, limit)
        except Exception:  # the daemon went away: the banner says so; drawn again later
            entries = []
        with contextlib.suppress(RuntimeError):  # the app stopped meanwhile
            self.app.call_from_thread(self._loaded, number, entries)

    def _loaded(self, number: int, entries: list[LogEntry]) -> None:
        self._wanted.discard(number)
        start = number * PAGE
        page = self._pages.get(number, [])
        merged = {e.seq: e for e in page}
        merged.update((e.seq, e) for e in entries if start <= e.seq < start + PAGE)
        rows: list[LogEntry] = []
        while start + len(rows) in merged:
            rows.append(merged[start + len(rows)])
        if rows:
            self._pages[number] = rows
            self._pages.move_to_end(number)
            self._evict()
            self.total = max(self.total, rows[-1].seq + 1)
            self.virtual_size = Size(self._width, self.total)
        self.refresh()

    def line_at(self, seq: int) -> LogEntry | None:
        """The entry with this seq if its page is held (asking for it otherwise)."""
        number, offset = divmod(seq, PAGE)
        page = self._pages.get(number)
        if page is not None:
            self._pages.move_to_end(number)
            if offset < len(page):
                return page[offset]
            self._want(number, number * PAGE + len(page) - 1)
        else:
            self._want(number, number * PAGE - 1)
        return None

    # ------------------------------------------------------------------ drawing

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        style = self.rich_style
        seq = scroll_y + y
        if seq >= self.total:
            return Strip.blank(width, style)
        entry = self.line_at(seq)
        if entry is None:
            text = Text(PENDING_TEXT, style=style, no_wrap=True)
            length = 1
        else:
            plain = entry_text(entry)[:MAX_WIDTH]
            if entry.type != "raw_output" and entry.event is not None:
                line_style = style + EVENT_STYLE
            elif entry.stream == "stderr":
                line_style = style + STDERR_STYLE
            else:
                line_style = style
            if seq == self.marked:
                line_style += MARKED_STYLE
            text = Text(plain, style=line_style, no_wrap=True, end="")
            length = cell_len(plain)
            if length > self._width:
                self._width = length
                self.virtual_size = Size(self._width, self.total)
                # A horizontal scrollbar may appear and take a row: stay at the end.
                self.call_after_refresh(self._keep_following)
        strip = Strip(text.render(self.app.console), length)
        return strip.crop_extend(scroll_x, scroll_x + width, style).apply_offsets(scroll_x, seq)

    def held(self) -> int:
        """Entries held now (for tests and the benchmark: the window's bound)."""
        return sum(len(page) for page in self._pages.values())
