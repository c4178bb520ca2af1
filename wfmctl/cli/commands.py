"""The wfmctl commands: one function per subcommand, each talking to wfmd through a Client.

Each command returns its exit code. Errors travel as `WfmError` to `cli.main`, which prints
them and picks the exit code; nothing here prints an error itself.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from wfmctl import protocol
from wfmctl.cli import render
from wfmctl.cli.args import Args, merge_params
from wfmctl.cli.exit_codes import EXIT_OK, exit_code_for
from wfmctl.cli.view import View
from wfmctl.client import UNEXPECTED_REPLY, Client, WfmError
from wfmctl.protocol import ErrorCode, Execution, LogEntry, LogPage

Command = Callable[[Client, Args, View], int]


def execute(args: Args, socket_path: str | None, view: View) -> int:
    if args.command == "mcp":  # a server: no connection up front, wfmd may be down
        return cmd_mcp(None, args, view)
    if args.command == "service":  # talks to systemd, not to wfmd
        return cmd_service(None, args, view)
    if args.command == "completion":  # a script; or live values, asked for with a timeout
        return cmd_completion(None, args, view)
    with Client(socket_path) as client:
        return COMMANDS[args.command](client, args, view)


# --------------------------------------------------------------------------- helpers


def follow(client: Client, handle: str, after: int, view: View, *, named: bool = True) -> Execution:
    """Print entries after `after` as they come; then a summary (stderr), which names the
    execution unless the caller printed its handle already (`named`). Returns the end."""
    if view.json or view.width is None or view.watching is None:  # not on a terminal
        items = client.follow(handle, after)  # log entries, then the Execution (or it raises)
        item = next(items)
        while isinstance(item, LogEntry):
            view.show(item, functools.partial(render.render_entry, item), flush=True)
            item = next(items)
    else:
        from wfmctl.cli import live  # only a terminal needs it (with `signal`)

        terminal_out = live.LiveFollow(
            view.out, view.watching, view.width, color=view.color, escape=view.escape_out
        )
        live_items = client.follow_live(handle, after)
        with terminal_out:
            shown = next(live_items)
            while not isinstance(shown, Execution):
                if isinstance(shown, LogEntry):
                    terminal_out.entry(shown)
                else:
                    terminal_out.partial(shown)
                shown = next(live_items)
            item = shown
    if view.json:
        view.doc(protocol.Finished(execution=item))
    else:
        view.status_text(render.execution_line(item, handle=named), item.status, err=True)
    return item


def watch(client: Client, handle: str, view: View) -> str:
    """The whole handle `handle` names, now: `@last` keeps meaning this execution, and a
    Ctrl-C can say which one goes on running (`view.watching`)."""
    view.watching = client.status(handle)
    return view.watching.handle


def detached_hint(execution: Execution) -> str:
    """What Ctrl-C while watching prints: the execution goes on, and how to get back to it."""
    short = render.short_handle(execution.handle)
    return (
        f"wfmctl: stopped watching; {short} ({execution.workflow_id}) goes on running\n"
        f"  follow it again: wfmctl logs -f {short}\n"
        f"  stop it:         wfmctl cancel {short}"
    )


def print_entries(entries: list[LogEntry], view: View) -> None:
    if view.width is not None and (view.escape_out or view.color):  # a terminal
        from wfmctl.cli import live

        texts = [
            live.render_for_terminal(e, color=view.color, escape=view.escape_out) for e in entries
        ]
        view.out.write("".join(text + "\n" for text in texts))
        view.out.flush()
        return
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
            close = render.did_you_mean(args.id, [w.id for w in reply.workflows])
            raise WfmError(ErrorCode.NOT_FOUND, f"no workflow with id {args.id!r}{close}")
        view.show(found[0], lambda: render.workflow_detail(found[0]) + render.problems(reply))
        return EXIT_OK
    view.show(reply, lambda: render.workflows_table(reply))
    return EXIT_OK


def cmd_run(client: Client, args: Args, view: View) -> int:
    if args.command_argv is not None:
        cwd = os.path.abspath(args.cwd) if args.cwd is not None else os.getcwd()
        execution = client.run_command(
            args.command_argv, cwd=cwd, env=dict(args.env or ()), timeout=args.timeout
        )
        return started(client, args, view, execution)
    params = merge_params(args.params_json, args.params)
    return started(client, args, view, client.run(args.workflow, params, timeout=args.timeout))


def cmd_rerun(client: Client, args: Args, view: View) -> int:
    params = merge_params(args.params_json, args.params)
    return started(client, args, view, client.rerun(args.handle, params, timeout=args.timeout))


def started(client: Client, args: Args, view: View, execution: Execution) -> int:
    """After run or rerun: the handle, then (--follow, --wait) watch it to its end."""
    handle = execution.handle
    view.watching = execution
    if args.follow:
        view.show(protocol.Accepted(execution=execution), lambda: handle, flush=True)
        return exit_code_for(follow(client, handle, -1, view, named=False))
    if args.wait:
        if not view.json:
            view.line(handle, flush=True)
        ended = client.wait(handle)
        if view.json:
            view.doc(ended)
        else:
            view.status_text(render.execution_line(ended, handle=False), ended.status)
        return exit_code_for(ended)
    view.show(execution, lambda: handle)
    return EXIT_OK


def cmd_status(client: Client, args: Args, view: View) -> int:
    execution = client.status(args.handle)
    if view.json:
        view.doc(execution)
    else:
        view.status_text(render.execution_detail(execution), execution.status)
    return EXIT_OK


def cmd_logs(client: Client, args: Args, view: View) -> int:
    handle: str = args.handle
    if args.follow:
        handle = watch(client, handle, view)
        after = -1 if args.after is None else args.after
        if args.tail is not None:  # like `tail -n N -f`: the last N, then live
            page = client.logs(handle, tail=args.tail)
            if view.json:
                for entry in page.entries:
                    view.doc(entry)
            else:
                print_entries(page.entries, view)
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
    execution = client.wait(watch(client, args.handle, view))
    if view.json:
        view.doc(execution)
    else:
        view.status_text(render.execution_line(execution), execution.status)
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
    view.table(render.history_table(page.executions, full=args.full))
    if page.next_before is not None and len(page.executions) >= args.limit:
        view.note(f"(more: repeat with --before {page.next_before})")
    if not page.executions and args.workflow and not args.workflow.startswith("cmd:"):
        # Nothing: perhaps a typo. A workflow no longer installed keeps its history, so
        # this is a hint, not an error.
        known = [w.id for w in client.workflows().workflows]
        if args.workflow not in known:
            close = render.did_you_mean(args.workflow, known)
            view.note(f"(no workflow {args.workflow!r} is installed{close})")
    return EXIT_OK


def cmd_params(client: Client, args: Args, view: View) -> int:
    reply = client.params(args.handle)
    view.show(reply, lambda: render.params_table(reply))
    return EXIT_OK


def cmd_mcp(client: Client | None, args: Args, view: View) -> int:
    """Serve MCP on stdio; its tools connect to wfmd per call (see wfmctl.mcp)."""
    from wfmctl import mcp  # lazy: the MCP SDK is an optional extra

    return mcp.main(getattr(args, "socket", None))


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
            f"to stop, {reply.queued} NotStarted run(s) start after the next start"
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


def cmd_completion(client: Client | None, args: Args, view: View) -> int:
    from wfmctl.cli import completion  # lazy: only this command needs it

    return completion.main(args, view.out)


COMMANDS: dict[str, Command] = {
    "ping": cmd_ping,
    "workflows": cmd_workflows,
    "run": cmd_run,
    "rerun": cmd_rerun,
    "status": cmd_status,
    "logs": cmd_logs,
    "wait": cmd_wait,
    "cancel": cmd_cancel,
    "history": cmd_history,
    "params": cmd_params,
    "mcp": cmd_mcp,
    "shutdown": cmd_shutdown,
    "service": cmd_service,
    "completion": cmd_completion,
}
