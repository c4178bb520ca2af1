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
from wfmctl.cli.exit_codes import EXIT_ERROR, EXIT_OK, EXIT_USAGE, exit_code_for
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
    if args.command == "tui":  # connects by itself, and waits for wfmd if it is down
        return cmd_tui(None, args, view)
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
    if not view.json:  # stored rows in bulk: no object per line
        for rows in client.log_row_pages(handle, -1 if args.after is None else args.after):
            view.rows(rows.rows)
        return EXIT_OK
    # Everything after `after`, page by page, collected for one JSON document.
    collected: list[LogEntry] = []
    last: LogPage | None = None
    for page in client.log_pages(handle, after=args.after):
        last = page
        collected.extend(page.entries)
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


def cmd_search(client: Client, args: Args, view: View) -> int:
    if (args.query is None) == (args.regex is None):
        view.note("wfmctl search: give either QUERY or --regex PATTERN (see --help)")
        return EXIT_USAGE
    if args.regex is not None:
        return _regex_search(client, args, view)
    page = client.search(
        args.query,
        workflow_id=args.workflow,
        status=args.status,
        since=args.since,
        until=args.until,
        handle=args.handle,
        context=min(args.context, 100),
        limit=min(args.limit, 1000),
        before=args.before,
    )
    if view.json:
        view.doc(page)
        return EXIT_OK
    view.lines(render.search_hits(page, context=args.context > 0))
    if page.backlog:
        view.note(f"(the newest {page.backlog:,} log rows are not indexed yet)")
    if page.next_before is not None:
        view.note(f"(more: repeat with --before {page.next_before})")
    return EXIT_OK


def _regex_search(client: Client, args: Args, view: View) -> int:
    from wfmctl.cli import regex_search  # lazy: only --regex needs it

    try:
        pattern = regex_search.compile_pattern(args.regex)
    except ValueError as exc:
        view.note(f"wfmctl search: {exc}")
        return EXIT_USAGE
    hits, stopped = regex_search.regex_search(
        client,
        pattern,
        workflow_id=args.workflow,
        status=args.status,
        since=args.since,
        until=args.until,
        handle=args.handle,
        limit=min(args.limit, 1000),
        context=min(args.context, 100),
    )
    page = protocol.SearchPage(hits=hits)
    if view.json:
        view.doc(page)
    else:
        view.lines(render.search_hits(page, context=args.context > 0))
    if stopped is not None:
        view.note(f"(the search {stopped}: narrow it with --handle, --workflow or --since)")
    return EXIT_OK


def cmd_stats(client: Client, args: Args, view: View) -> int:
    reply = client.stats(workflow_id=args.workflow, since=args.since)
    view.show(reply, lambda: render.stats_table(reply))
    return EXIT_OK


def cmd_import(client: Client, args: Args, view: View) -> int:
    """A dry run, shown; then, once the user agrees (or gave --yes), the import."""
    import os
    import sys

    from wfmctl.cli import importing  # lazy: only this command needs it

    source = os.path.abspath(os.path.expanduser(args.path or importing.DEFAULT_SOURCE))
    plan = client.import_history(source, dry_run=True)
    if args.dry_run or not plan.imported:
        view.show(plan, lambda: importing.summary(plan))
        return EXIT_OK
    if not args.yes:
        view.note(importing.summary(plan))
        if not sys.stdin.isatty():
            view.note("wfmctl: not importing without a yes: run again with --yes")
            return EXIT_USAGE
        if not importing.confirm(
            f"import {importing.count_of(plan.imported, 'execution')}? [y/N] "
        ):
            view.note("nothing imported")
            return EXIT_ERROR
    report = client.import_history(source)
    view.show(report, lambda: importing.summary(report))
    return EXIT_OK


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
    "tui": cmd_tui,
    "shutdown": cmd_shutdown,
    "service": cmd_service,
    "search": cmd_search,
    "stats": cmd_stats,
    "import": cmd_import,
    "completion": cmd_completion,
}


def _history_command(name: str) -> Command:
    """A command of `cli.history_commands`, imported when it runs."""

    def run(client: Client, args: Args, view: View) -> int:
        from wfmctl.cli import history_commands

        command: Command = getattr(history_commands, f"cmd_{name}")
        return command(client, args, view)

    return run


# retention: prune, delete, info, export
COMMANDS.update({name: _history_command(name) for name in ("prune", "delete", "info", "export")})
