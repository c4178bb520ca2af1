"""The wfm wire protocol: message types and framing, shared by the daemon and every client.

Imports nothing but msgspec and the standard library, so that clients stay light.

A connection is a Unix stream socket carrying frames. A frame is a 4-byte big-endian
unsigned length followed by that many bytes of msgpack. The daemon speaks first with a
`Hello`; then the client sends one request at a time and reads frames until it gets a final
one (every response except `LogBatch` is final). See PROTOCOL.md.

Evolution rules: new fields always get defaults; a field never changes type; unknown fields
are ignored, so an older client can talk to a newer daemon and the other way round.

Unlike the rest of the code, this module does not use `from __future__ import annotations`:
msgspec reads every Struct's annotations when a decoder is built, and postponed ones are
strings it must compile and evaluate one by one, at each `wfmctl` start.
"""

import struct
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

PROTOCOL_VERSION = 1

# Large enough for several maximal (1 MiB) log lines per page, small enough that a hostile
# length prefix cannot make anyone allocate gigabytes. Senders cap pages by bytes to fit.
MAX_FRAME = 16 * 1024 * 1024

HEADER = struct.Struct(">I")

# Bounds on numbers in requests. Anything outside is refused when the frame is decoded
# (bad_request), so NaN, infinities and integers beyond SQLite's 64 bits never reach the
# daemon's logic.
Seconds = Annotated[float, Meta(ge=0, le=1e10)]  # a duration, or a time since the epoch
Seq = Annotated[int, Meta(ge=-1, le=2**32)]  # a log sequence number (-1: before the first)
Count = Annotated[int, Meta(ge=0, le=2**31)]  # a limit, an offset, a number of entries
# Identifiers are short; bounding them keeps absurd ones from reaching the database or
# being quoted back in a reply. Handles are UUIDs (36 characters) or prefixes of one.
Handle = Annotated[str, Meta(max_length=100)]
MAX_NAME = 200
Name = Annotated[str, Meta(max_length=MAX_NAME)]  # a workflow id or a field name

# Wherever a request takes a handle, `@last` names the newest execution and `@last:WORKFLOW`
# the newest of that workflow (the daemon resolves them, as it does prefixes).
LAST_HANDLE = "@last"

Status = Literal["NotStarted", "Running", "Completed", "Failed", "Cancelled"]
FINISHED_STATUSES: frozenset[str] = frozenset({"Completed", "Failed", "Cancelled"})
ALL_STATUSES: tuple[str, ...] = ("NotStarted", "Running", "Completed", "Failed", "Cancelled")

# How an execution ended (`Execution.ended_by`). A plain string on the wire, so that a client
# accepts words added later; these are the ones this version knows.
EndedBy = Literal[
    "exit",  # the workflow exited by itself (exit_code says how)
    "signal",  # a signal that wfmd did not send killed it
    "timeout",  # wfmd ended it at its timeout
    "cancelled",  # a cancel request, or shutdown, ended it (or it never started)
    "daemon_died",  # the daemon supervising it died; recorded by recovery
    "spawn_error",  # it could not be started
    "storage",  # wfmd ended it because the database refused writes for too long
    "internal",  # a bug in wfmd ended it; the reason says what
]


class ErrorCode(StrEnum):
    """Stable error codes. Clients branch on these, never on the message text.

    On the wire `Error.code` stays a plain string, so a client accepts codes added later.
    """

    BAD_FRAME = "bad_frame"  # undecodable or oversized frame; the connection is closed
    BAD_REQUEST = "bad_request"  # a well-formed frame that is not a valid request
    FORBIDDEN = "forbidden"  # a connection from another user; the connection is closed
    NOT_FOUND = "not_found"  # no execution or workflow by that id
    AMBIGUOUS = "ambiguous"  # a handle prefix that matches more than one execution
    INVALID_PARAMS = "invalid_params"  # parameters fail the workflow's metadata
    NOT_RUNNABLE = "not_runnable"  # e.g. cancelling an execution that already ended
    STORAGE = "storage"  # the database cannot accept writes (full disk, I/O error)
    SHUTTING_DOWN = "shutting_down"  # the daemon is stopping and accepts no new work
    INTERNAL = "internal"  # a bug in the daemon; the message says what
    BAD_SOURCE = "bad_source"  # a file to import that cannot be read, or holds no history


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every wire message."""


# --------------------------------------------------------------------------- shared values


class FieldType(Message, frozen=True):
    type: str
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    options: list[str] | None = None
    total_phases: int | None = None
    phase: int | None = None


class Field(Message, frozen=True):
    name: str
    field_type: FieldType
    label: str = ""
    description: str = ""
    cli_arg: str = ""
    required: bool = False
    default: str | None = None
    required_for_phases: list[int] | None = None


class Workflow(Message, frozen=True):
    id: str
    name: str
    description: str = ""
    fields: list[Field] = []
    path: str = ""


class SkippedFile(Message, frozen=True):
    path: str
    reason: str


class WorkflowDirectory(Message, frozen=True):
    """A directory the daemon scans for workflows, in the order scanned."""

    path: str
    exists: bool


class Execution(Message, frozen=True):
    handle: Handle
    workflow_id: str
    status: Status
    created_at: float  # seconds since the epoch
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None  # why it ended (or why it is waiting)
    log_count: int = 0  # number of log entries committed so far
    timeout: float | None = None
    params: dict[str, str] = {}
    ended_by: str | None = None  # an EndedBy word once it has ended; None from older daemons
    workflow_name: str | None = None  # the workflow's name when it was run
    queue_position: int | None = None  # while NotStarted: 1 is the next to start
    rerun_of: str | None = None  # the handle of the execution this one reran (`rerun`)
    command: list[str] | None = None  # a one-off command's argv (workflow_id `cmd:NAME`)
    cwd: str | None = None  # the working directory it runs in; None: older than the field
    env: dict[str, str] = {}  # variables set for it on top of the daemon's environment


class LogEntry(Message, frozen=True):
    seq: int
    ts: float  # daemon receive time, seconds since the epoch
    stream: Literal["stdout", "stderr"]
    type: str  # "raw_output" or an event type such as "phase_started"
    line: str  # the text without its newline; invalid UTF-8 replaced with U+FFFD
    event: dict[str, Any] | None = None  # the event's fields, for structured events


# --------------------------------------------------------------------------- requests


class Request(Message, frozen=True, tag_field="op"):
    """Base of requests; the tag goes in the `op` field."""


class Ping(Request, frozen=True, tag="ping"):
    pass


class ListWorkflows(Request, frozen=True, tag="workflows"):
    rescan: bool = False
    workflow_id: Name | None = None


class Run(Request, frozen=True, tag="run"):
    workflow_id: Name
    params: dict[str, Any] = {}
    timeout: Seconds | None = None  # None means the daemon's default; 0 means no limit


class GetStatus(Request, frozen=True, tag="status"):
    handle: Handle


class GetLogs(Request, frozen=True, tag="logs"):
    """A page of log entries: after `after` (exclusive) in order, or the last `tail` ones."""

    handle: Handle
    after: Seq | None = None
    limit: Count = 1000
    tail: Count | None = None


class GetLogRows(Request, frozen=True, tag="log_rows"):
    """The entries after `after` as stored rows (`ExportRow`), a few MiB per reply: the fast
    way to read a whole log, which `wfmctl logs` uses."""

    handle: Handle
    after: Seq = -1


class Follow(Request, frozen=True, tag="follow"):
    """Stream entries after `after` until the execution ends; then a final `Finished`.
    `partial`: also send the latest state of progress bars still on their line
    (`LogBatch.partial`)."""

    handle: Handle
    after: Seq = -1
    partial: bool = False


class Wait(Request, frozen=True, tag="wait"):
    """Answer with `Finished` once the execution has ended."""

    handle: Handle


class Cancel(Request, frozen=True, tag="cancel"):
    handle: Handle


class History(Request, frozen=True, tag="history"):
    limit: Count = 50
    offset: Count = 0
    before: Handle | None = None  # a handle: continue the listing after it (keyset paging)
    workflow_id: Name | None = None
    status: Status | None = None
    since: Seconds | None = None  # created at or after, seconds since the epoch
    until: Seconds | None = None  # created before
    count: bool = False  # also count every match (HistoryPage.total)


class GetParams(Request, frozen=True, tag="params"):
    handle: Handle


class ParamHistory(Request, frozen=True, tag="param_history"):
    workflow_id: Name
    field_name: Name | None = None
    limit: Count = 10


class Search(Request, frozen=True, tag="search"):
    """Log lines that match `query`, newest first (see PROTOCOL.md for the syntax)."""

    query: Annotated[str, Meta(max_length=1000)]
    workflow_id: Name | None = None
    status: Status | None = None
    since: Seconds | None = None  # executions created at or after
    until: Seconds | None = None  # executions created before
    handle: Handle | None = None  # only this execution
    context: Annotated[int, Meta(ge=0, le=100)] = 0  # lines before and after each match
    limit: Annotated[int, Meta(ge=1, le=1000)] = 20
    before: int | None = None  # `next_before` of the previous page


class Stats(Request, frozen=True, tag="stats"):
    """Per-workflow outcomes and durations of the executions created since `since`."""

    workflow_id: Name | None = None
    since: Seconds | None = None  # created at or after; None: the whole history


class ImportHistory(Request, frozen=True, tag="import"):
    """Copy the original workflow-manager's history into this database (see PROTOCOL.md)."""

    path: Annotated[str, Meta(max_length=4096)]  # absolute: the daemon's cwd is not yours
    dry_run: bool = False  # report what would be imported, change nothing


# A one-off command line: bounded like everything else in a request (the frame limit holds
# the total).
CommandArgv = Annotated[list[str], Meta(min_length=1, max_length=100_000)]


class RunCommand(Request, frozen=True, tag="run_command"):
    """Run any command line under the daemon, as a workflow runs (`wfmctl run -- CMD`);
    answered with `Accepted`. Its workflow_id is `cmd:` and the program's base name."""

    argv: CommandArgv
    cwd: str | None = None  # absolute; None: the daemon's default (the user's home)
    env: dict[str, str] = {}  # set on top of the daemon's environment, recorded
    timeout: Seconds | None = None  # None means the daemon's default; 0 means no limit


class Rerun(Request, frozen=True, tag="rerun"):
    """Run an execution's workflow again with its parameters, `params` overriding them;
    answered with `Accepted`. The new execution records `rerun_of`."""

    handle: Handle
    params: dict[str, Any] = {}
    timeout: Seconds | None = None  # None: the original's; 0 means no limit


class Shutdown(Request, frozen=True, tag="shutdown"):
    """Stop the daemon as SIGTERM would; answered with `Stopping` before it stops."""


# --- retention: prune, delete, info


class Prune(Request, frozen=True, tag="prune"):
    """Remove finished executions: those ended more than `older_than` seconds ago and those
    beyond the newest `keep` (either suffices), or, with neither, what the configured
    retention policy removes. `workflow_id` narrows it to one workflow; `dry_run` only says
    what would go. Answered with `PruneReply`."""

    dry_run: bool = False
    older_than: Seconds | None = None
    keep: Count | None = None
    workflow_id: Name | None = None


class Delete(Request, frozen=True, tag="delete"):
    """Remove these finished executions. Refused whole (not_runnable) if one of them is
    NotStarted or Running. Answered with `PruneReply`."""

    handles: Annotated[list[Handle], Meta(min_length=1, max_length=10_000)]


class GetInfo(Request, frozen=True, tag="info"):
    """The database and retention at a glance. Answered with `InfoReply`."""


class Export(Request, frozen=True, tag="export"):
    """One execution whole: `ExportStart`, then `ExportRows` frames with every log row
    committed so far, in order, then a final `ExportEnd`."""

    handle: Handle


RequestType = (
    Ping
    | ListWorkflows
    | Run
    | GetStatus
    | GetLogs
    | GetLogRows
    | Follow
    | Wait
    | Cancel
    | History
    | GetParams
    | ParamHistory
    | Search
    | Stats
    | ImportHistory
    | Shutdown
    | Prune
    | Delete
    | GetInfo
    | Export
    | Rerun
    | RunCommand
)


# --------------------------------------------------------------------------- responses


class Response(Message, frozen=True, tag_field="type"):
    """Base of responses; the tag goes in the `type` field."""


class Hello(Response, frozen=True, tag="hello"):
    protocol: int
    daemon_version: str


class Error(Response, frozen=True, tag="error"):
    code: str
    message: str


class Pong(Response, frozen=True, tag="pong"):
    daemon_version: str
    pid: int
    uptime: float
    database: str
    socket: str
    running: int
    queued: int
    storage_ok: bool = True
    storage_error: str | None = None
    containment: str | None = None
    search_backlog: int | None = None  # log rows not searchable yet; None: indexing is off


class WorkflowList(Response, frozen=True, tag="workflow_list"):
    workflows: list[Workflow]
    skipped: list[SkippedFile] = []
    conflicts: list[str] = []
    directories: list[WorkflowDirectory] = []  # scanned, in order; empty: older daemons


class Accepted(Response, frozen=True, tag="accepted"):
    execution: Execution


class StatusReply(Response, frozen=True, tag="status"):
    execution: Execution


class LogPage(Response, frozen=True, tag="log_page"):
    entries: list[LogEntry]
    next_after: int  # pass as `after` to continue
    finished: bool  # the execution has ended and `entries` reach its last line


class PartialLine(Message, frozen=True):
    """A line still being written with carriage returns (a progress bar), as a terminal
    would show it now: its latest state. Not stored, not numbered: the whole line is, once
    its newline comes."""

    stream: Literal["stdout", "stderr"]
    text: str


class LogBatch(Response, frozen=True, tag="log_batch"):
    """A non-final frame of a `Follow` stream."""

    entries: list[LogEntry]
    # With Follow.partial: the progress bars unterminated now (empty: none any more).
    partial: list[PartialLine] | None = None


class Finished(Response, frozen=True, tag="finished"):
    """Final frame of `Follow` and `Wait`."""

    execution: Execution


class HistoryPage(Response, frozen=True, tag="history_page"):
    executions: list[Execution]
    next_before: str | None = None  # pass as `before` for the next page; None at the end
    total: int | None = None  # every match of the filters, when the request asked to count


class ParamsReply(Response, frozen=True, tag="params"):
    handle: Handle
    workflow_id: str
    params: dict[str, str]


class ParamHistoryReply(Response, frozen=True, tag="param_history"):
    workflow_id: str
    values: dict[str, list[str]]  # field name -> distinct recent values, newest first


class SearchHit(Message, frozen=True):
    handle: str
    workflow_id: str
    entry: LogEntry  # the matching line
    position: int  # pass as `before` to continue after this match
    before: list[LogEntry] = []  # up to `context` lines before it, in order
    after: list[LogEntry] = []  # ... and after it


class SearchPage(Response, frozen=True, tag="search_page"):
    hits: list[SearchHit]  # newest first
    next_before: int | None = None  # pass as `before` for more; None: no more matches
    backlog: int = 0  # log rows not searchable yet (the indexer is behind by this many)


class WorkflowStats(Message, frozen=True):
    workflow_id: str
    runs: int
    completed: int
    failed: int
    cancelled: int
    active: int  # queued or running
    success_rate: float | None  # completed / ended, 0 to 1; None until one has ended
    p50_duration: float | None  # seconds, of the completed runs
    p95_duration: float | None
    last_run: float  # when the newest was created, seconds since the epoch
    last_failure: float | None = None  # when the newest Failed one was created
    last_failure_handle: str | None = None
    last_failure_reason: str | None = None


class StatsReply(Response, frozen=True, tag="stats"):
    workflows: list[WorkflowStats]  # ordered by workflow id
    since: float | None = None


class ImportReport(Response, frozen=True, tag="import_report"):
    path: str
    dry_run: bool
    found: int  # executions in the source
    imported: int  # copied now (on a dry run: that would be)
    already_present: int  # handles this history already holds: skipped
    unmapped: list[str] = []  # "<id>: why", one per execution that cannot be imported
    log_entries: int = 0  # log entries copied (would be)
    kept_as_raw: int = 0  # of those, entries whose JSON could not be mapped: kept as text
    unfinished: int = 0  # Running or NotStarted there: recorded as Failed
    out_of_order: int = 0  # newer than this history's oldest execution, yet listed below it
    # Of those imported, how many retention's age and count limits remove at its next run,
    # by workflow: the import's caller can give those workflows limits of their own first.
    retention_removes: dict[str, int] = {}


class Stopping(Response, frozen=True, tag="stopping"):
    """The reply to `Shutdown`, sent before the daemon stops."""

    pid: int  # the daemon's process id
    running: int  # executions it is stopping (they will be recorded as Cancelled)
    queued: int  # runs waiting for a slot: they stay queued and start after the next start


# --- retention


class Removed(Message, frozen=True):
    """An execution that a prune or delete removed (or would remove)."""

    handle: str
    workflow_id: str
    ended_at: float | None = None  # seconds since the epoch
    log_count: int = 0


# Executions a `PruneReply` lists at most; `executions_removed` counts them all.
MAX_REMOVED_LISTED = 1_000


class PruneReply(Response, frozen=True, tag="prune_reply"):
    dry_run: bool
    executions_removed: int  # dry: that would be removed
    log_entries_removed: int
    bytes_freed: int  # pages in use given back; dry: log bytes the executions hold
    duration: float  # seconds
    executions: list[Removed] = []  # the first MAX_REMOVED_LISTED of them, oldest first


class RetentionRun(Message, frozen=True):
    started_at: float  # seconds since the epoch
    duration: float
    trigger: str  # "schedule", "prune" or "delete"
    executions_removed: int
    log_entries_removed: int
    bytes_freed: int
    bytes_compressed: int = 0


class InfoReply(Response, frozen=True, tag="info"):
    database: str
    file_bytes: int  # the database file and its WAL
    wal_bytes: int
    page_size: int
    page_count: int
    free_pages: int
    bytes_in_use: int  # (page_count - free_pages) * page_size: what max_db_bytes limits
    auto_vacuum: str  # "incremental" gives freed space back to the file system
    counts: dict[str, int]  # executions by status
    oldest: Execution | None = None
    last_retention: RetentionRun | None = None
    next_retention_at: float | None = None  # None: no scheduled runs
    policy: dict[str, Any] = {}  # the retention settings in force


class ExportStart(Response, frozen=True, tag="export_start"):
    """The first frame of an export (not final): the execution, with its parameters."""

    execution: Execution


class ExportRow(Message, frozen=True, array_like=True):
    """Consecutive entries of one stream received together, as stored: entry k has sequence
    number `seq + k` and is line k of `data` (every line ends in a newline but maybe the
    last). A structured event is a row of its own, with its `type` and `event` fields."""

    seq: int
    ts: float
    stream: Literal["stdout", "stderr"]
    data: bytes
    type: str = "raw_output"
    event: dict[str, Any] | None = None


class ExportRows(Response, frozen=True, tag="export_rows"):
    """A non-final frame of an export."""

    rows: list[ExportRow]


class ExportEnd(Response, frozen=True, tag="export_end"):
    entries: int  # entries sent


class LogRows(Response, frozen=True, tag="log_rows"):
    rows: list[ExportRow]  # the entries after the request's `after`, in order
    next_after: int  # pass as `after` to continue
    finished: bool  # the execution has ended and `rows` reach its last line


ResponseType = (
    Hello
    | Error
    | Pong
    | WorkflowList
    | Accepted
    | StatusReply
    | LogPage
    | LogRows
    | LogBatch
    | Finished
    | HistoryPage
    | ParamsReply
    | ParamHistoryReply
    | SearchPage
    | StatsReply
    | ImportReport
    | Stopping
    | PruneReply
    | InfoReply
    | ExportStart
    | ExportRows
    | ExportEnd
)

NON_FINAL_RESPONSES: tuple[type[Response], ...] = (LogBatch, ExportStart, ExportRows)


# --------------------------------------------------------------------------- framing


class FrameError(Exception):
    """A frame that cannot be accepted: too large or undecodable."""


_encoder = msgspec.msgpack.Encoder()
# Built on first use: a client never decodes requests, and building a decoder resolves every
# type it can meet, which costs a short-lived `wfmctl` process milliseconds.
_request_decoder: msgspec.msgpack.Decoder[RequestType] | None = None
_response_decoder: msgspec.msgpack.Decoder[ResponseType] | None = None


def encode_frame(message: Message) -> bytes:
    body = _encoder.encode(message)
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds the maximum of {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    """Length announced by a 4-byte header; raises FrameError if over MAX_FRAME."""
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise FrameError(f"frame length {length} exceeds the maximum of {MAX_FRAME}")
    return int(length)


def decode_request(body: bytes) -> RequestType:
    """Raises msgspec.DecodeError (bad msgpack) or msgspec.ValidationError (bad shape)."""
    global _request_decoder
    if _request_decoder is None:
        _request_decoder = msgspec.msgpack.Decoder(RequestType)
    return _request_decoder.decode(body)


def decode_response(body: bytes) -> ResponseType:
    global _response_decoder
    if _response_decoder is None:
        _response_decoder = msgspec.msgpack.Decoder(ResponseType)
    return _response_decoder.decode(body)


def to_builtins(message: Message) -> Any:
    """A JSON-ready representation, used by `--json` output."""
    return msgspec.to_builtins(message)
