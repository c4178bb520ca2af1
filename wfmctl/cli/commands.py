"""The wfmctl commands: one function per subcommand, each talking to wfmd through a Client.

Each command returns its exit code. Errors travel as `WfmError` to `cli.main`, which prints
them and picks the exit code; nothing here prints an error itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TextIO

from wfmctl import protocol
from wfmctl.cli import render, terminal
from wfmctl.cli.args import Args, merge_params
from wfmctl.cli.exit_codes import EXIT_OK, exit_code_for
from wfmctl.client import UNEXPECTED_REPLY, Client, WfmError
from wfmctl.protocol import ErrorCode, Execution, LogEntry, LogPage


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
    ) -> None:
        self.json = json
        self.out = out
        self.err = err
        self.escape_out = escape_out
        self.escape_err = escape_err

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

    def lines(self, texts: list[str]) -> None:
        """Several lines in one write, then a flush: the hot path of `logs`."""
        if texts:
            if self.escape_out:  # line by line: most lines pass escape()'s quick check
                texts = [terminal.escape(text) for text in texts]
            self.out.write("\n".join(texts) + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """Commentary that is not the command's output (stderr, so pipes stay clean)."""
        if self.escape_err:
            text = terminal.escape(text)
        print(text, file=self.err, flush=True)


Command = Callable[[Client, Args, View], int]


def execute(args: Args, socket_path: str | None, view: View) -> int:
    if args.command == "mcp":  # a server: no connection up front, wfmd may be down
        return cmd_mcp(None, args, view)
    if args.command == "service":  # talks to systemd, not to wfmd
        return cmd_service(None, args, view)
    if args.command == "tui":  # connects by itself, and waits for wfmd if it is down
        return cmd_tui(None, args, view)
    with Client(socket_path) as client:
        return COMMANDS[args.command](client, args, view)


# --------------------------------------------------------------------------- helpers


def follow(client: Client, handle: str, after: int, view: View) -> Execution:
    """Print entries after `after` as they come; then a summary (stderr). Returns the end."""
    items = client.follow(handle, after)  # log entries, then the Execution (or it raises)
    item = next(items)
    while isinstance(item, LogEntry):
        view.show(item, functools.partial(render.render_entry, item), flush=True)
        item = next(items)
    if view.json:
        view.doc(protocol.Finished(execution=item))
    else:
        view.note(render.execution_line(item))
    return item


def print_entries(entries: list[LogEntry], view: View) -> None:
    view.lines([render.render_entry(entry) for entry in entries])


# --------------------------------------------------------------------------- commands


def cmd_ping(client: Client, args: Args, view: View) -> int:
    pong = client.ping()
    view.show(pong, lambda: render.pong_detail(pong, client.hello.protocol))
    return EXIT_OK


def cmd_workflows(client: Client, args: Args, view: View) -> int:
    reply = client.workflows(rescan=args.rescan, workflow_id=args.id)
    if args.id is not None:
        found = [w for w in reply.workflows if w.id == args.id]
        if not found:
            raise WfmError(ErrorCode.NOT_FOUND, f"no workflow with id {args.id!r}")
        view.show(found[0], lambda: render.workflow_detail(found[0]) + render.problems(reply))
        return EXIT_OK
    view.show(reply, lambda: render.workflows_table(reply))
    return EXIT_OK


def cmd_run(client: Client, args: Args, view: View) -> int:
    params = merge_params(args.params_json, args.params)
    execution = client.run(args.workflow, params, timeout=args.timeout)
    handle = execution.handle
    if args.follow:
        view.show(protocol.Accepted(execution=execution), lambda: handle, flush=True)
        return exit_code_for(follow(client, handle, -1, view))
    if args.wait:
        if not view.json:
            view.line(handle, flush=True)
        ended = client.wait(handle)
        view.show(ended, lambda: render.execution_line(ended))
        return exit_code_for(ended)
    view.show(execution, lambda: handle)
    return EXIT_OK


def cmd_status(client: Client, args: Args, view: View) -> int:
    execution = client.status(args.handle)
    view.show(execution, lambda: render.execution_detail(execution))
    return EXIT_OK


def cmd_logs(client: Client, args: Args, view: View) -> int:
    handle: str = args.handle
    if args.follow:
        after = -1 if args.after is None else args.after
        if args.tail is not None:  # like `tail -n N -f`: the last N, then live
            page = client.logs(handle, tail=args.tail)
            for entry in page.entries:
                view.show(entry, functools.partial(render.render_entry, entry))
            if page.entries:
                after = page.entries[-1].seq
        follow(client, handle, after, view)
        return EXIT_OK
    if args.tail is not None:
        page = client.logs(handle, tail=args.tail)
        if view.json:
            view.doc(page)
        else:
            print_entries(page.entries, view)
        return EXIT_OK
    # Everything after `after`, page by page: printed as it arrives, collected for --json.
    collected: list[LogEntry] = []
    last: LogPage | None = None
    for page in client.log_pages(handle, after=args.after):
        last = page
        if view.json:
            collected.extend(page.entries)
        else:
            print_entries(page.entries, view)
    if view.json:
        assert last is not None  # log_pages yields at least one page
        view.doc(LogPage(entries=collected, next_after=last.next_after, finished=last.finished))
    return EXIT_OK


def cmd_wait(client: Client, args: Args, view: View) -> int:
    execution = client.wait(args.handle)
    view.show(execution, lambda: render.execution_line(execution))
    return exit_code_for(execution)


def cmd_cancel(client: Client, args: Args, view: View) -> int:
    execution = client.cancel(args.handle)
    if view.json:
        view.doc(execution)
    elif execution.status in protocol.FINISHED_STATUSES:
        view.line(render.execution_line(execution))
    else:
        view.line(f"cancel requested: {render.execution_line(execution)}")
    return EXIT_OK


def cmd_history(client: Client, args: Args, view: View) -> int:
    page = client.history(
        limit=args.limit,
        offset=args.offset,
        before=args.before,
        workflow_id=args.workflow,
        status=args.status,
        since=args.since,
        until=args.until,
    )
    if view.json:
        view.doc(page)
        return EXIT_OK
    view.line(render.history_table(page.executions))
    if page.next_before is not None and len(page.executions) >= args.limit:
        view.note(f"(more: repeat with --before {page.next_before})")
    return EXIT_OK


def cmd_params(client: Client, args: Args, view: View) -> int:
    reply = client.params(args.handle)
    view.show(reply, lambda: render.params_table(reply))
    return EXIT_OK


def cmd_mcp(client: Client | None, args: Args, view: View) -> int:
    """Serve MCP on stdio; its tools connect to wfmd per call (see wfmctl.mcp)."""
    from wfmctl import mcp  # lazy: the MCP SDK is an optional extra

    return mcp.main(getattr(args, "socket", None))


def cmd_tui(client: Client | None, args: Args, view: View) -> int:
    """The dashboard (wfmctl.tui); it reaches wfmd through its own worker threads."""
    from wfmctl import tui  # lazy: Textual is an optional extra

    return tui.main(getattr(args, "socket", None))


def cmd_shutdown(client: Client, args: Args, view: View) -> int:
    reply = client.request(protocol.Shutdown())
    if not isinstance(reply, protocol.Stopping):
        client.close()
        raise WfmError(
            UNEXPECTED_REPLY, f"expected 'stopping' from wfmd, got {type(reply).__name__}"
        )
    client.close()
    view.show(
        reply,
        lambda: (
            f"wfmd (pid {reply.pid}) is stopping: {reply.running} running execution(s) "
            f"to stop, {reply.queued} queued run(s) stay queued"
        ),
        flush=True,
    )
    if not args.no_wait:
        wait_exited(reply.pid)
        if not view.json:
            view.note("wfmd stopped")
    return EXIT_OK


# How often `shutdown` looks whether wfmd has exited: it takes from milliseconds to the cancel
# grace period (10 s) and more.
EXIT_POLL = 0.05


def wait_exited(pid: int) -> None:
    """Until process `pid` has exited (gone, or a zombie its parent has not reaped yet)."""
    import time

    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in (b"Z", b"X"):
            return
        time.sleep(EXIT_POLL)


def cmd_service(client: Client | None, args: Args, view: View) -> int:
    """Install, remove or show the systemd user units (wfmctl.cli.service)."""
    from wfmctl.cli import service  # lazy: only this command needs it

    return service.main(args, view.json, view.out)


COMMANDS: dict[str, Command] = {
    "ping": cmd_ping,
    "workflows": cmd_workflows,
    "run": cmd_run,
    "status": cmd_status,
    "logs": cmd_logs,
    "wait": cmd_wait,
    "cancel": cmd_cancel,
    "history": cmd_history,
    "params": cmd_params,
    "mcp": cmd_mcp,
    "tui": cmd_tui,
    "shutdown": cmd_shutdown,
    "service": cmd_service,
}
