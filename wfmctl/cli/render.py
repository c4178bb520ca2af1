"""Human-readable formatting for wfmctl: pure functions from protocol values to text.

Nothing here does I/O or reads the clock except through a `now` argument that defaults to
the current time, so everything can be tested with fixed inputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wfmctl.protocol import (
    Execution,
    Field,
    FieldType,
    LogEntry,
    ParamsReply,
    Pong,
    SearchPage,
    StatsReply,
    Workflow,
    WorkflowList,
)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
COLUMN_GAP = "  "
EMPTY = "-"  # shown for a missing value in tables and detail blocks

# Indentation of event lines: phases at the margin, tasks under them, agents under tasks.
PHASE_INDENT = ""
TASK_INDENT = "  "
AGENT_INDENT = "    "


# --------------------------------------------------------------------------- values


def format_time(ts: float | None) -> str:
    """Seconds since the epoch as local time, `2026-11-26 14:03:07`."""
    if ts is None:
        return EMPTY
    return time.strftime(TIME_FORMAT, time.localtime(ts))


def format_duration(seconds: float | None) -> str:
    """`0.4s`, `59.9s`, `3m04s`, `2h05m`, `3d04h`; truncated, never rounded up."""
    if seconds is None:
        return EMPTY
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{math.floor(seconds * 10) / 10:.1f}s"
    total = int(seconds)
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def signal_name(signum: int) -> str:
    import signal  # lazy: only a signal number to show needs it; see test_status_skips_argparse

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def duration_of(execution: Execution, now: float | None = None) -> float | None:
    """How long it ran (or has been running); None if it never started."""
    if execution.started_at is None:
        return None
    end = execution.ended_at
    if end is None:
        end = time.time() if now is None else now
    return end - execution.started_at


def outcome(execution: Execution) -> str:
    """Why it ended (or why it waits): the daemon's `reason`, which every ending sets."""
    return execution.reason or ""


def summarize(execution: Execution, now: float | None = None) -> str:
    """One line: `Completed in 1.2s`, `Failed after 3.0s: exit status 3`, `Running for 5s`."""
    took = format_duration(duration_of(execution, now))
    why = outcome(execution)
    match execution.status:
        case "Completed":
            return f"Completed in {took}"
        case "Failed" | "Cancelled":
            text = f"{execution.status} after {took}" if execution.started_at else execution.status
            return f"{text}: {why}" if why else text
        case "Running":
            return f"Running for {took}"
        case _:
            since = format_time(execution.created_at)
            return f"{execution.status} since {since}" + (f": {why}" if why else "")


def execution_line(execution: Execution, now: float | None = None, *, handle: bool = True) -> str:
    """`<short handle>  <workflow>  <summary>`: the result line of wait, cancel and logs -f;
    without the handle for run --wait and run --follow, which printed it first."""
    line = f"{execution.workflow_id}  {summarize(execution, now)}"
    return f"{short_handle(execution.handle)}  {line}" if handle else line


# --------------------------------------------------------------------------- handles

SHORT_HANDLE = 8  # characters of a handle shown in tables, as git and docker show ids


def short_handle(handle: str) -> str:
    return handle[:SHORT_HANDLE]


def short_handles(handles: Sequence[str]) -> list[str]:
    """Each handle's shortest prefix of at least SHORT_HANDLE characters that no other
    handle in `handles` shares (prefixes shown together must each name one row)."""
    out = []
    for handle in handles:
        length = SHORT_HANDLE
        for other in handles:
            if other != handle:
                while length < len(handle) and other.startswith(handle[:length]):
                    length += 1
        out.append(handle[:length])
    return out


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """`; did you mean 'a' or 'b'?` for the known names close to a mistyped one, else ''."""
    import difflib  # only a mistyped name needs it

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return "; did you mean " + " or ".join(map(repr, close)) + "?" if close else ""


def fit(text: str, width: int | None) -> str:
    """Each line cut to `width` columns with an ellipsis (None: as is), for a terminal."""
    if width is None or width < 2:
        return text
    return "\n".join(
        line if len(line) <= width else line[: width - 1] + "…" for line in text.splitlines()
    )


# --------------------------------------------------------------------------- layout


def _cell(value: object) -> str:
    """A table cell on one line: control characters would break the alignment."""
    text = EMPTY if value is None else str(value)
    return " ".join(text.split()) if any(c in text for c in "\n\r\t") else text


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    cells = [[_cell(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [value.ljust(width) for value, width in zip(row[:-1], widths, strict=False)]
        lines.append(COLUMN_GAP.join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def key_values(pairs: Iterable[tuple[str, object]]) -> str:
    """`key:   value` lines with the values aligned."""
    items = [(k, EMPTY if v is None or v == "" else str(v)) for k, v in pairs]
    width = max((len(k) for k, _ in items), default=0) + 1
    return "\n".join(f"{(k + ':').ljust(width)}  {v}" for k, v in items)


def _indent_continuation(text: str, indent: str) -> str:
    """Multi-line messages: later lines aligned under the first one's text."""
    return text.replace("\n", "\n" + indent + "  ")


# --------------------------------------------------------------------------- log entries


def render_entry(entry: LogEntry) -> str:
    """One log entry as a line of text: raw output exactly as printed, events decorated."""
    if entry.type == "raw_output" or entry.event is None:
        return entry.line
    return render_event(entry.type, entry.event)


def render_event(kind: str, event: Mapping[str, Any]) -> str:
    def f(name: str) -> str:
        value = event.get(name)
        return "?" if value is None else str(value)

    def opt(name: str, sep: str = ": ") -> str:
        value = event.get(name)
        return "" if value is None or value == "" else f"{sep}{value}"

    match kind:
        case "phase_started":
            total = event.get("total_phases")
            of = f"/{total}" if total is not None else ""
            line, indent = f"▶ phase {f('phase')}{of}: {f('name')}", PHASE_INDENT
        case "phase_completed":
            line, indent = f"✓ phase {f('phase')} done: {f('name')}", PHASE_INDENT
        case "phase_failed":
            line = f"✗ phase {f('phase')} failed: {f('name')}{opt('error')}"
            indent = PHASE_INDENT
        case "task_started":
            total = event.get("total_tasks")
            of = f" (of {total})" if total is not None else ""
            line, indent = f"• task {f('task_id')} started{of}{opt('description')}", TASK_INDENT
        case "task_progress":
            line, indent = f"• task {f('task_id')}{opt('message')}", TASK_INDENT
        case "task_completed":
            line, indent = f"✓ task {f('task_id')} done{opt('result')}", TASK_INDENT
        case "task_failed":
            line, indent = f"✗ task {f('task_id')} failed{opt('error')}", TASK_INDENT
        case "agent_started":
            line, indent = f"▸ {f('agent_name')} started{opt('description')}", AGENT_INDENT
        case "agent_message":
            line, indent = f"{f('agent_name')}{opt('message')}", AGENT_INDENT
        case "agent_completed":
            line, indent = f"✓ {f('agent_name')} done{opt('result')}", AGENT_INDENT
        case "agent_failed":
            line, indent = f"✗ {f('agent_name')} failed{opt('error')}", AGENT_INDENT
        case "state_file_created":
            line = f"◆ state file {f('file_path')}{opt('description')}"
            indent = TASK_INDENT
        case _:
            fields = " ".join(f"{k}={v}" for k, v in event.items() if k != "type")
            line, indent = f"· {kind}{': ' + fields if fields else ''}", TASK_INDENT
    return indent + _indent_continuation(line, indent)


# --------------------------------------------------------------------------- executions


def execution_detail(execution: Execution, now: float | None = None) -> str:
    """The `status` view: every field of one execution, then its parameters."""
    e = execution
    rows: list[tuple[str, object]] = [
        ("handle", e.handle),
        ("workflow", workflow_label(e)),
        ("status", e.status),
        ("outcome", outcome(e)),
        ("ended by", e.ended_by),
        ("created", format_time(e.created_at)),
        ("started", format_time(e.started_at)),
        ("ended", format_time(e.ended_at)),
        ("duration", format_duration(duration_of(e, now))),
    ]
    if e.rerun_of is not None:
        rows.append(("rerun of", e.rerun_of))
    if e.command is not None:
        rows.append(("command", _shell_words(e.command)))
    if e.cwd is not None:
        rows.append(("directory", e.cwd))
    if e.env:
        rows.append(("environment", " ".join(f"{k}={v}" for k, v in e.env.items())))
    if e.queue_position is not None:
        rows.append(("queue position", e.queue_position))
    if e.exit_code is not None:
        rows.append(("exit code", e.exit_code))
    if e.signal is not None:
        rows.append(("signal", f"{e.signal} ({signal_name(e.signal)})"))
    if e.timeout is not None:
        rows.append(("timeout", format_duration(e.timeout)))
    rows.append(("log entries", e.log_count))
    text = key_values(rows)
    if e.params:
        text += "\nparams:\n" + _indent(table(("NAME", "VALUE"), sorted(e.params.items())))
    return text


def _shell_words(argv: list[str]) -> str:
    """A command line as a shell would take it back."""
    import shlex  # only a command's status needs it

    return shlex.join(argv)


def workflow_label(e: Execution) -> str:
    """The workflow's id, and its name where it says more than the id."""
    if e.workflow_name and e.workflow_name != e.workflow_id:
        return f"{e.workflow_id} ({e.workflow_name})"
    return e.workflow_id


TABLE_TIME_FORMAT = "%Y-%m-%d %H:%M"  # to the minute: a history row fits 80 columns


def history_table(
    executions: Sequence[Execution], now: float | None = None, *, full: bool = False
) -> str:
    """Newest first: short handles and workflow ids (with `full`, whole handles and the
    workflows' names too), and the outcome where the status alone does not say it."""
    if not executions:
        return "no executions"
    handles = [e.handle for e in executions]
    shown = handles if full else short_handles(handles)
    rows = [
        (
            handle,
            workflow_label(e) if full else e.workflow_id,
            e.status,
            time.strftime(TABLE_TIME_FORMAT, time.localtime(e.created_at)),
            format_duration(duration_of(e, now)),
            "" if e.status == "Completed" else outcome(e),
        )
        for handle, e in zip(shown, executions, strict=True)
    ]
    return table(("HANDLE", "WORKFLOW", "STATUS", "CREATED", "TOOK", "OUTCOME"), rows)


def params_table(reply: ParamsReply) -> str:
    head = f"{reply.handle}  {reply.workflow_id}"
    if not reply.params:
        return head + "\nno parameters"
    return head + "\n" + table(("NAME", "VALUE"), sorted(reply.params.items()))


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


# --------------------------------------------------------------------------- workflows


def describe_type(ft: FieldType) -> str:
    """`number 1..10`, `select a|b`, `file_path *.txt`, `phase_selector 3 phases`."""
    parts = [ft.type]
    if ft.min is not None or ft.max is not None:
        parts.append(f"{_num(ft.min)}..{_num(ft.max)}")
    if ft.options is not None:
        parts.append("|".join(ft.options))
    if ft.pattern:
        parts.append(ft.pattern)
    if ft.total_phases is not None:
        parts.append(f"{ft.total_phases} phases")
    if ft.phase is not None:
        parts.append(f"phase {ft.phase}")
    return " ".join(parts)


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def workflows_table(reply: WorkflowList) -> str:
    if reply.workflows:
        rows = [(w.id, w.name, ", ".join(f.name for f in w.fields)) for w in reply.workflows]
        text = table(("ID", "NAME", "FIELDS"), rows)
    else:
        text = "no workflows"
    return text + problems(reply) + directories(reply)


def directories(reply: WorkflowList) -> str:
    """The directories scanned, in order, and which of them do not exist."""
    if not reply.directories:
        return ""
    lines = [f"  {d.path}" + ("" if d.exists else "  (does not exist)") for d in reply.directories]
    return "\n\nscanned, in order:\n" + "\n".join(lines)


def problems(reply: WorkflowList) -> str:
    """Skipped files with their reasons, then id conflicts; empty if there are none."""
    text = ""
    if reply.skipped:
        text += f"\n\nskipped {len(reply.skipped)} file(s):\n"
        text += "\n".join(f"  {s.path}: {s.reason}" for s in reply.skipped)
    if reply.conflicts:
        text += "\n\nconflicts:\n" + "\n".join(f"  {c}" for c in reply.conflicts)
    return text


def workflow_detail(workflow: Workflow) -> str:
    text = key_values(
        [
            ("id", workflow.id),
            ("name", workflow.name),
            ("description", workflow.description),
            ("path", workflow.path),
        ]
    )
    if not workflow.fields:
        return text + "\nfields:       none"
    return text + "\nfields:\n" + _indent(fields_table(workflow.fields))


def fields_table(fields: Sequence[Field]) -> str:
    rows = [
        (
            f.name,
            describe_type(f.field_type),
            "yes" if f.required else "no",
            f.default,
            f.cli_arg,
            _field_text(f),
        )
        for f in fields
    ]
    return table(("NAME", "TYPE", "REQUIRED", "DEFAULT", "ARG", "DESCRIPTION"), rows)


def _field_text(field: Field) -> str:
    if field.label and field.description:
        return f"{field.label}: {field.description}"
    return field.label or field.description


# --------------------------------------------------------------------------- daemon


def pong_detail(pong: Pong, protocol_version: int | None = None) -> str:
    storage = "ok" if pong.storage_ok else f"ERROR: {pong.storage_error or 'unknown'}"
    rows: list[tuple[str, object]] = [
        ("wfmd", pong.daemon_version),
        ("pid", pong.pid),
        ("uptime", format_duration(pong.uptime)),
        ("socket", pong.socket),
        ("database", pong.database),
        ("storage", storage),
        # The status words of `history` and `status`: the state has one name everywhere.
        ("executions", f"{pong.running} Running, {pong.queued} NotStarted"),
    ]
    if pong.containment is not None:  # absent from daemons older than the field
        rows.append(("containment", pong.containment))
    if pong.search_backlog is not None:
        behind = pong.search_backlog
        rows.append(("search index", f"{behind:,} rows behind" if behind else "up to date"))
    if protocol_version is not None:
        rows.append(("protocol", protocol_version))
    return key_values(rows)


# --------------------------------------------------------------------------- search


def search_hits(page: SearchPage, *, context: bool) -> list[str]:
    """One line per match (`HANDLE WORKFLOW TIME #SEQ line`); with context, a block per
    match: its header, then the lines around it with the match marked by `>`."""
    if not page.hits:
        return ["no matches"]
    out: list[str] = []
    handles = [hit.handle for hit in page.hits]
    shown = dict(zip(handles, short_handles(handles), strict=True))
    for hit in page.hits:
        head = f"{shown[hit.handle]}  {hit.workflow_id}  {format_time(hit.entry.ts)}"
        if not context:
            out.append(f"{head}  #{hit.entry.seq}  {render_entry(hit.entry)}")
            continue
        if out:
            out.append("--")
        out.append(head)
        for entry in (*hit.before, hit.entry, *hit.after):
            mark = ">" if entry.seq == hit.entry.seq else " "
            out.append(f"{mark} {entry.seq:>6}  {render_entry(entry)}")
    return out


# --------------------------------------------------------------------------- stats


def stats_table(reply: StatsReply) -> str:
    """One row per workflow; below, each workflow's last failure."""
    since = f" since {format_time(reply.since)}" if reply.since is not None else ""
    if not reply.workflows:
        return f"no executions{since}"
    rows = [
        (
            w.workflow_id,
            w.runs,
            w.completed,
            w.failed,
            w.cancelled,
            EMPTY if w.success_rate is None else f"{w.success_rate:.0%}",
            format_duration(w.p50_duration),
            format_duration(w.p95_duration),
            format_time(w.last_run),
        )
        for w in reply.workflows
    ]
    headers = ("WORKFLOW", "RUNS", "OK", "FAILED", "CANCELLED", "SUCCESS", "P50", "P95", "LAST RUN")
    lines = [table(headers, rows)]
    failures = [w for w in reply.workflows if w.last_failure is not None]
    if failures:
        lines.append(f"\nlast failure{since}:")
        lines.extend(
            f"  {w.workflow_id}  {format_time(w.last_failure)}"
            f"  {short_handle(w.last_failure_handle or '')}"
            f"  {w.last_failure_reason or EMPTY}"
            for w in failures
        )
    return "\n".join(lines)
