"""Where wfmctl's output goes, and in which form: JSON or text, escaped and coloured on a
terminal (`View`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from wfmctl import protocol
from wfmctl.cli import render, terminal
from wfmctl.protocol import Execution


class View:
    """Where output goes, and in which form.

    `escape_out` / `escape_err`: the stream is a terminal (and no --raw), so text from
    workflows is shown with its control characters escaped (see `terminal`). Every line goes
    through here, so nothing a workflow controls reaches a terminal raw.

    A plain class, not a dataclass: every `wfmctl` start would import `dataclasses` for a
    few attributes (see test_status_skips_argparse).
    """

    def __init__(
        self,
        json: bool,
        out: TextIO,
        err: TextIO,
        *,
        escape_out: bool = False,
        escape_err: bool = False,
        width: int | None = None,
        color: bool = False,
        color_err: bool = False,
    ) -> None:
        self.json = json
        self.out = out
        self.err = err
        self.escape_out = escape_out
        self.escape_err = escape_err
        self.width = width  # the terminal's columns when stdout is one, else None
        self.color = color  # colour on stdout (a terminal, and neither NO_COLOR nor --no-color)
        self.color_err = color_err  # ... on stderr
        # The execution being watched (run --follow/--wait, logs -f, wait): what Ctrl-C
        # leaves running, named in the hint `cli.main` prints then.
        self.watching: Execution | None = None

    def doc(self, message: protocol.Message) -> None:
        """A JSON document (or one JSON line of a stream), always UTF-8: JSON's own encoding,
        whatever the locale, so no character is ever replaced in machine-readable output."""
        import msgspec.json  # only --json needs it (it pulls in msgspec's schema support)

        data = msgspec.json.encode(protocol.to_builtins(message)) + b"\n"
        if self.escape_out:
            data = terminal.escape_json(data.decode()).encode()
        buffer = getattr(self.out, "buffer", None)
        if buffer is None:  # a text-only stream (tests): it takes any str
            self.out.write(data.decode())
        else:
            self.out.flush()
            buffer.write(data)
        self.out.flush()

    def show(
        self, message: protocol.Message, text: Callable[[], str], *, flush: bool = False
    ) -> None:
        """`message` as JSON with --json, else the human text (only rendered when shown)."""
        if self.json:
            self.doc(message)
        else:
            self.line(text(), flush=flush)

    def line(self, text: str, *, flush: bool = False) -> None:
        if self.escape_out:
            text = terminal.escape(text)
        print(text, file=self.out, flush=flush)

    def table(self, text: str) -> None:
        """A table: escaped as a line is, each row cut to the terminal's width, statuses
        coloured."""
        if self.escape_out:
            text = terminal.escape(text)
        text = render.fit(text, self.width)
        if self.color:
            from wfmctl.cli import style

            text = style.history_statuses(text)
        print(text, file=self.out)

    def status_text(self, text: str, status: str, *, err: bool = False) -> None:
        """A line or block that shows an execution's status: escaped, the status coloured."""
        if self.escape_err if err else self.escape_out:
            text = terminal.escape(text)
        if self.color_err if err else self.color:
            from wfmctl.cli import style

            text = style.status_in(text, status)
        print(text, file=self.err if err else self.out, flush=True)

    def lines(self, texts: list[str]) -> None:
        """Several lines in one write, then a flush: the hot path of `logs`."""
        if texts:
            if self.escape_out:  # line by line: most lines pass escape()'s quick check
                texts = [terminal.escape(text) for text in texts]
            self.out.write("\n".join(texts) + "\n")
        self.out.flush()

    def rows(self, rows: list[protocol.ExportRow]) -> None:
        """Stored rows as `logs` prints them: lines as printed, events rendered; in one write."""
        parts = []
        for row in rows:
            if row.type == "raw_output" or row.event is None:
                text = row.data.decode("utf-8", "replace")
                parts.append(text if text.endswith("\n") else text + "\n")
            else:
                parts.append(render.render_event(row.type, row.event) + "\n")
        text = "".join(parts)
        if self.escape_out:
            text = "\n".join(terminal.escape(line) for line in text.split("\n"))
        self.out.write(text)
        self.out.flush()

    def note(self, text: str) -> None:
        """Commentary that is not the command's output (stderr, so pipes stay clean)."""
        if self.escape_err:
            text = terminal.escape(text)
        print(text, file=self.err, flush=True)
