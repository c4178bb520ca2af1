"""The commands that manage history itself: prune, delete, info, export.

Each returns its exit code; errors travel as `WfmError` to `cli.main`, as in `commands`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from wfmctl import protocol
from wfmctl.cli import render
from wfmctl.cli.args import Args
from wfmctl.cli.exit_codes import EXIT_OK
from wfmctl.client import Client
from wfmctl.protocol import InfoReply, PruneReply

if TYPE_CHECKING:
    from wfmctl.export import ExportWriter

# Bytes buffered before each write to the export file: few system calls at 1M lines/s.
EXPORT_BUFFER = 1024 * 1024


class View(Protocol):
    """What these commands need of `commands.View` (which imports this module lazily)."""

    def show(
        self, message: protocol.Message, text: Callable[[], str], *, flush: bool = False
    ) -> None: ...


def cmd_prune(client: Client, args: Args, view: View) -> int:
    client.timeout = None  # a first prune of a large history takes minutes: it is waited for
    reply = client.prune(
        dry_run=args.dry_run,
        older_than=args.older_than,
        keep=args.keep,
        workflow_id=args.workflow,
    )
    view.show(reply, lambda: prune_text(reply))
    return EXIT_OK


def cmd_delete(client: Client, args: Args, view: View) -> int:
    client.timeout = None  # it waits its turn behind a retention run
    reply = client.delete(list(args.handles))
    view.show(reply, lambda: prune_text(reply))
    return EXIT_OK


def cmd_info(client: Client, args: Args, view: View) -> int:
    reply = client.info()
    view.show(reply, lambda: info_text(reply))
    return EXIT_OK


def cmd_export(client: Client, args: Args, view: View) -> int:
    import sys

    from wfmctl.export import ExportWriter

    if args.output is None or args.output == "-":
        out = sys.stdout.buffer
        sys.stdout.flush()
        write(client, args.handle, ExportWriter(out, args.format))
        out.flush()
        return EXIT_OK
    if os.path.exists(args.output) and not os.path.isfile(args.output):
        # A device or a FIFO (/dev/null, a pipe): written in place, never replaced.
        with open(args.output, "wb", buffering=EXPORT_BUFFER) as out:
            write(client, args.handle, ExportWriter(out, args.format))
        return EXIT_OK
    # A file is written beside the target and renamed once complete: no half-written
    # export under the name asked for.
    partial = f"{args.output}.partial"
    try:
        with open(partial, "wb", buffering=EXPORT_BUFFER) as out:
            write(client, args.handle, ExportWriter(out, args.format))
        os.replace(partial, args.output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return EXIT_OK


def write(client: Client, handle: str, writer: ExportWriter) -> None:
    for item in client.export(handle):
        if isinstance(item, list):
            writer.rows(item)
        else:
            writer.start(item)
    writer.end()


def size(n: int | None) -> str:
    """Bytes for people: 1.5 MiB."""
    if n is None:
        return render.EMPTY
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # not reached


def prune_text(reply: PruneReply) -> str:
    verb = "would remove" if reply.dry_run else "removed"
    freed = "holding" if reply.dry_run else "freed"
    lines = []
    if reply.executions:
        lines.append(
            render.table(
                ["HANDLE", "WORKFLOW", "ENDED", "ENTRIES"],
                [
                    (
                        e.handle or render.EMPTY,
                        e.workflow_id,
                        render.format_time(e.ended_at),
                        e.log_count,
                    )
                    for e in reply.executions
                ],
            )
        )
        if reply.executions_removed > len(reply.executions):
            lines.append(f"... and {reply.executions_removed - len(reply.executions)} more")
    lines.append(
        f"{verb} {reply.executions_removed} execution(s), {reply.log_entries_removed} log"
        f" entries, {freed} {size(reply.bytes_freed)}, in {reply.duration:.2f} s"
    )
    return "\n".join(lines)


def info_text(reply: InfoReply) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(reply.counts.items())) or "none"
    oldest = render.EMPTY
    if reply.oldest is not None:
        oldest = f"{reply.oldest.handle} ({render.format_time(reply.oldest.created_at)})"
    last = render.EMPTY
    if reply.last_retention is not None:
        run = reply.last_retention
        last = (
            f"{render.format_time(run.started_at)} ({run.trigger}): removed"
            f" {run.executions_removed} execution(s), {run.log_entries_removed} log entries,"
            f" freed {size(run.bytes_freed)} in {run.duration:.2f} s"
        )
    policy = reply.policy
    pairs: list[tuple[str, object]] = [
        ("database", reply.database),
        ("file size", f"{size(reply.file_bytes)} (WAL {size(reply.wal_bytes)})"),
        (
            "in use",
            f"{size(reply.bytes_in_use)}: {reply.page_count - reply.free_pages} of"
            f" {reply.page_count} pages of {reply.page_size} B in use",
        ),
        ("auto-vacuum", reply.auto_vacuum),
        ("executions", counts),
        ("oldest", oldest),
        ("last retention", last),
        ("next retention", render.format_time(reply.next_retention_at)),
    ]
    for key in (
        "max_age_days",
        "max_executions",
        "max_db_bytes",
        "retention_interval",
        "compress_after",
        "archive_dir",
    ):
        value = policy.get(key)
        if key == "max_db_bytes" and isinstance(value, int):
            value = f"{size(value)} ({value})"
        pairs.append((key, "off" if value is None else value))
    for workflow, limits in sorted(policy.get("workflows", {}).items()):
        pairs.append((f"workflow {workflow}", limits))
    return render.key_values(pairs)
