"""A small synchronous client for wfmd over its Unix socket.

Uses only the standard library `socket` module and the shared protocol module, so programs
that import it pay for neither trio nor apsw.

One `Client` is one connection. It carries one request at a time and is not thread-safe:
give each thread its own. If anything goes wrong on the wire (the daemon closes the
connection, a reply times out, a frame cannot be decoded, a stream is abandoned halfway),
the connection is closed and every later request raises `WfmError("disconnected")`; open
a new `Client` to carry on.

    with Client() as wfm:
        execution = wfm.run("simple_echo", {"message": "hi"})
        for item in wfm.follow(execution.handle):
            if isinstance(item, LogEntry):
                print(item.line)
            else:
                print("ended:", item.status)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import msgspec

from wfmctl import paths, protocol
from wfmctl.protocol import (
    Execution,
    HistoryPage,
    ImportReport,
    LogEntry,
    LogPage,
    LogRows,
    ParamHistoryReply,
    ParamsReply,
    Pong,
    SearchPage,
    StatsReply,
    Status,
    WorkflowList,
)

# Long enough for a daemon busy rescanning workflow directories, short enough that a hung
# daemon does not hang a script forever. Streaming requests (Follow, Wait) ignore it.
DEFAULT_TIMEOUT = 30.0

# Requests whose replies may take as long as an execution (or copying a whole history) does:
# their reads never time out.
STREAMING_REQUESTS: tuple[type[protocol.Request], ...] = (
    protocol.Follow,
    protocol.Wait,
    protocol.ImportHistory,
)

# Client-side error codes, next to the daemon's codes in `protocol.ErrorCode`.
UNREACHABLE = "unreachable"  # cannot connect to the socket
DISCONNECTED = "disconnected"  # the connection closed (or was closed) before a reply
TIMEOUT = "timeout"  # no reply within the client's timeout
UNEXPECTED_REPLY = "unexpected_reply"  # a valid frame of the wrong type for the request

R = TypeVar("R", bound=protocol.Response)


class WfmError(Exception):
    """An error reply from the daemon, or a client-side failure with its own code.

    `code` is stable (see `protocol.ErrorCode` and the constants in this module); branch on
    it, never on `message`.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class DaemonUnreachable(WfmError):
    """Nothing accepts connections on the socket: the daemon is not running (or elsewhere)."""

    def __init__(self, socket_path: str, cause: str) -> None:
        super().__init__(
            UNREACHABLE,
            f"cannot reach wfmd at {socket_path} ({cause}); is wfmd running? start it with: wfmd",
        )
        self.socket_path = socket_path


class Client:
    """A connection to wfmd. Connects and reads the daemon's `Hello` on construction.

    `timeout` bounds each single-reply request (None: wait forever); `Follow` and `Wait`
    always wait as long as the execution runs.
    """

    hello: protocol.Hello

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.socket_path = os.fspath(socket_path) if socket_path else paths.default_socket()
        self.timeout = timeout
        self._in_flight = False
        self._sock: socket.socket | None = self._connect()
        try:
            first = self._read_frame(timeout)
        except BaseException:
            self.close()
            raise
        if isinstance(first, protocol.Error):
            self.close()
            raise WfmError(first.code, first.message)
        if not isinstance(first, protocol.Hello):
            self.close()
            raise WfmError(UNEXPECTED_REPLY, f"expected a hello from wfmd, got {_tag(first)}")
        self.hello = first

    # ------------------------------------------------------------------ connection

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self.socket_path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            sock.close()
            raise DaemonUnreachable(self.socket_path, exc.strerror or str(exc)) from None
        except TimeoutError:
            sock.close()
            raise DaemonUnreachable(self.socket_path, "connection timed out") from None
        except OSError as exc:  # permission denied, path too long, ...
            sock.close()
            raise DaemonUnreachable(self.socket_path, exc.strerror or str(exc)) from None
        return sock

    def close(self) -> None:
        """Close the connection. Safe to call more than once."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    @property
    def closed(self) -> bool:
        return self._sock is None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ framing

    def _require_sock(self) -> socket.socket:
        if self._sock is None:
            raise WfmError(DISCONNECTED, f"the connection to wfmd at {self.socket_path} is closed")
        return self._sock

    def _fail(self, code: str, message: str) -> WfmError:
        """Close the (now unusable) connection and build the error to raise."""
        self.close()
        return WfmError(code, message)

    def _recv_exactly(self, sock: socket.socket, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = sock.recv_into(view[got:], n - got)
            except TimeoutError:
                raise self._fail(TIMEOUT, f"no reply from wfmd within {self.timeout:g}s") from None
            except OSError as exc:
                raise self._fail(DISCONNECTED, f"connection to wfmd lost: {exc}") from None
            if k == 0:
                raise self._fail(DISCONNECTED, "wfmd closed the connection before replying")
            got += k
        return bytes(buf)

    def _read_frame(self, timeout: float | None) -> protocol.ResponseType:
        sock = self._require_sock()
        sock.settimeout(timeout)
        header = self._recv_exactly(sock, protocol.HEADER.size)
        try:
            length = protocol.frame_length(header)
        except protocol.FrameError as exc:
            raise self._fail(protocol.ErrorCode.BAD_FRAME, str(exc)) from None
        body = self._recv_exactly(sock, length)
        try:
            return protocol.decode_response(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise self._fail(
                protocol.ErrorCode.BAD_FRAME, f"undecodable frame from wfmd: {exc}"
            ) from None

    def _send(self, req: protocol.Request) -> None:
        sock = self._require_sock()
        if self._in_flight:
            raise RuntimeError("a stream is still open on this connection; finish or close it")
        try:
            frame = protocol.encode_frame(req)
        except protocol.FrameError as exc:  # e.g. megabytes of parameters
            raise WfmError(protocol.ErrorCode.BAD_REQUEST, str(exc)) from None
        sock.settimeout(self.timeout)
        try:
            sock.sendall(frame)
        except TimeoutError:
            raise self._fail(
                TIMEOUT, f"wfmd did not accept a request within {self.timeout:g}s"
            ) from None
        except OSError as exc:
            raise self._fail(DISCONNECTED, f"connection to wfmd lost: {exc}") from None

    # ------------------------------------------------------------------ requests

    def stream(self, req: protocol.Request) -> Iterator[protocol.Response]:
        """Send `req` and yield every reply frame, up to and including the final one.

        Nothing is sent until the iterator is first advanced. An `Error` frame raises
        `WfmError`. Abandoning the iterator before the final frame closes the connection
        (the rest of the stream would otherwise be read as the reply to the next request).
        """
        self._send(req)
        timeout = None if isinstance(req, STREAMING_REQUESTS) else self.timeout
        self._in_flight = True
        try:
            while True:
                frame = self._read_frame(timeout)
                if isinstance(frame, protocol.Error):
                    self._in_flight = False
                    raise WfmError(frame.code, frame.message)
                if not isinstance(frame, protocol.NON_FINAL_RESPONSES):
                    self._in_flight = False
                    yield frame
                    return
                yield frame
        finally:
            if self._in_flight:
                self._in_flight = False
                self.close()

    def request(self, req: protocol.Request) -> protocol.Response:
        """Send a single-reply request and return its reply; `Error` raises `WfmError`.

        Non-final frames (which a single-reply request should not get) are skipped. Use
        `stream` for `Follow`.
        """
        if isinstance(req, protocol.Follow):
            raise TypeError("Follow streams several frames: use stream() or follow()")
        final: protocol.Response | None = None
        for frame in self.stream(req):
            final = frame
        assert final is not None  # stream() always ends with a final frame or raises
        return final

    def _expect(self, req: protocol.Request, reply_type: type[R]) -> R:
        reply = self.request(req)
        if not isinstance(reply, reply_type):
            raise self._unexpected(reply_type, reply)
        return reply

    def _unexpected(self, wanted: type[protocol.Response], got: protocol.Response) -> WfmError:
        """A reply of the wrong type: the connection can no longer be trusted."""
        return self._fail(UNEXPECTED_REPLY, f"expected {_tag(wanted)} from wfmd, got {_tag(got)}")

    # ------------------------------------------------------------------ conveniences

    def ping(self) -> Pong:
        return self._expect(protocol.Ping(), Pong)

    def workflows(self, rescan: bool = False, workflow_id: str | None = None) -> WorkflowList:
        req = protocol.ListWorkflows(rescan=rescan, workflow_id=workflow_id)
        return self._expect(req, WorkflowList)

    def run(
        self,
        workflow_id: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Execution:
        """Start a workflow; returns the accepted execution (its `handle` names it)."""
        req = protocol.Run(workflow_id=workflow_id, params=dict(params or {}), timeout=timeout)
        return self._expect(req, protocol.Accepted).execution

    def run_command(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Execution:
        """Run any command line under the daemon, supervised and recorded as a workflow run
        is (`cmd:NAME` in history). `cwd`: absolute (None: the daemon's default, the user's
        home); `env`: set on top of the daemon's environment, and recorded."""
        req = protocol.RunCommand(argv=list(argv), cwd=cwd, env=dict(env or {}), timeout=timeout)
        return self._expect(req, protocol.Accepted).execution

    def rerun(
        self,
        handle: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Execution:
        """Run an execution's workflow again with its parameters, `params` overriding them
        (timeout: the original's unless given); the new execution's `rerun_of` names it."""
        req = protocol.Rerun(handle=handle, params=dict(params or {}), timeout=timeout)
        return self._expect(req, protocol.Accepted).execution

    def status(self, handle: str) -> Execution:
        return self._expect(protocol.GetStatus(handle=handle), protocol.StatusReply).execution

    def logs(
        self, handle: str, after: int | None = None, limit: int = 1000, tail: int | None = None
    ) -> LogPage:
        """One page: entries after `after` (exclusive), or the last `tail` entries."""
        req = protocol.GetLogs(handle=handle, after=after, limit=limit, tail=tail)
        return self._expect(req, LogPage)

    def log_pages(
        self, handle: str, after: int | None = None, limit: int = 1000
    ) -> Iterator[LogPage]:
        """Pages of every entry after `after` (None: from the start) that exists now.

        Stops at the execution's last line, or when no more entries are committed yet.
        Always yields at least one page.
        """
        while True:
            page = self.logs(handle, after=after, limit=limit)
            yield page
            if page.finished or not page.entries or page.next_after == after:
                return
            after = page.next_after

    def log_rows(self, handle: str, after: int = -1) -> LogRows:
        """The entries after `after` as stored rows, a few MiB per reply (see PROTOCOL.md)."""
        return self._expect(protocol.GetLogRows(handle=handle, after=after), LogRows)

    def log_row_pages(self, handle: str, after: int = -1) -> Iterator[LogRows]:
        """Pages of rows of every entry after `after` that exists now: the fast way to read a
        whole log. Always yields at least one page."""
        while True:
            page = self.log_rows(handle, after)
            yield page
            if page.finished or not page.rows or page.next_after == after:
                return
            after = page.next_after

    def iter_logs(
        self, handle: str, after: int | None = None, limit: int = 1000
    ) -> Iterator[LogEntry]:
        """Every entry after `after` that exists now, fetched page by page."""
        for page in self.log_pages(handle, after=after, limit=limit):
            yield from page.entries

    def follow(self, handle: str, after: int = -1) -> Iterator[LogEntry | Execution]:
        """Yield each log entry after `after` as it is committed, then the ended Execution.

        The last item is always the `Execution` (and only the last is one). Blocks as long
        as the execution runs.
        """
        for frame in self.stream(protocol.Follow(handle=handle, after=after)):
            if isinstance(frame, protocol.LogBatch):
                yield from frame.entries
            elif isinstance(frame, protocol.Finished):
                yield frame.execution
            else:
                raise self._unexpected(protocol.Finished, frame)

    def follow_live(
        self, handle: str, after: int = -1
    ) -> Iterator[LogEntry | list[protocol.PartialLine] | Execution]:
        """`follow`, plus the latest states of progress bars still on their line: a list
        of `PartialLine` whenever they change (an empty list: none any more). A terminal
        shows them until the next entry of their stream, which finishes the line."""
        request = protocol.Follow(handle=handle, after=after, partial=True)
        for frame in self.stream(request):
            if isinstance(frame, protocol.LogBatch):
                yield from frame.entries
                if frame.partial is not None:
                    yield frame.partial
            elif isinstance(frame, protocol.Finished):
                yield frame.execution
            else:
                raise self._unexpected(protocol.Finished, frame)

    def wait(self, handle: str) -> Execution:
        """Block until the execution has ended; return it."""
        return self._expect(protocol.Wait(handle=handle), protocol.Finished).execution

    def cancel(self, handle: str) -> Execution:
        """Ask the daemon to stop an execution; returns its state after the request."""
        return self._expect(protocol.Cancel(handle=handle), protocol.StatusReply).execution

    def history(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        before: str | None = None,
        workflow_id: str | None = None,
        status: Status | None = None,
        since: float | None = None,
        until: float | None = None,
        count: bool = False,
    ) -> HistoryPage:
        """Executions, newest first, filtered; `since`/`until` are seconds since the epoch.
        With `count`, the page's `total` is the number of every match."""
        req = protocol.History(
            limit=limit,
            offset=offset,
            before=before,
            workflow_id=workflow_id,
            status=status,
            since=since,
            until=until,
            count=count,
        )
        return self._expect(req, HistoryPage)

    def params(self, handle: str) -> ParamsReply:
        return self._expect(protocol.GetParams(handle=handle), ParamsReply)

    def param_history(
        self, workflow_id: str, field_name: str | None = None, limit: int = 10
    ) -> ParamHistoryReply:
        req = protocol.ParamHistory(workflow_id=workflow_id, field_name=field_name, limit=limit)
        return self._expect(req, ParamHistoryReply)

    def search(
        self,
        query: str,
        *,
        workflow_id: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        handle: str | None = None,
        context: int = 0,
        limit: int = 20,
        before: int | None = None,
    ) -> SearchPage:
        """Log lines matching `query` (words, "phrases", prefix*), newest first; pass the
        page's `next_before` as `before` for the next page."""
        req = protocol.Search(
            query=query,
            workflow_id=workflow_id,
            status=status,  # type: ignore[arg-type]  # checked by the daemon
            since=since,
            until=until,
            handle=handle,
            context=context,
            limit=limit,
            before=before,
        )
        return self._expect(req, SearchPage)

    def stats(self, workflow_id: str | None = None, since: float | None = None) -> StatsReply:
        """Per-workflow outcomes and durations of the executions created since `since`."""
        return self._expect(protocol.Stats(workflow_id=workflow_id, since=since), StatsReply)

    def import_history(self, path: str | os.PathLike[str], dry_run: bool = False) -> ImportReport:
        """Copy workflow-manager's history at `path` into wfmd's (see PROTOCOL.md); with
        `dry_run`, only report what would be copied. The path is made absolute here."""
        req = protocol.ImportHistory(path=os.path.abspath(path), dry_run=dry_run)
        return self._expect(req, ImportReport)

    # --- retention

    def prune(
        self,
        *,
        dry_run: bool = False,
        older_than: float | None = None,
        keep: int | None = None,
        workflow_id: str | None = None,
    ) -> protocol.PruneReply:
        """Remove finished executions: ended more than `older_than` seconds ago, or beyond
        the newest `keep`; with neither, what the daemon's retention policy removes."""
        req = protocol.Prune(
            dry_run=dry_run, older_than=older_than, keep=keep, workflow_id=workflow_id
        )
        return self._expect(req, protocol.PruneReply)

    def delete(self, handles: list[str]) -> protocol.PruneReply:
        """Remove these finished executions; refused whole if one is not finished."""
        return self._expect(protocol.Delete(handles=handles), protocol.PruneReply)

    def info(self) -> protocol.InfoReply:
        return self._expect(protocol.GetInfo(), protocol.InfoReply)

    def export(self, handle: str) -> Iterator[Execution | list[protocol.ExportRow]]:
        """The execution (with its parameters), then its log rows, batch by batch, as
        stored: see `wfmctl.export` for writing them out."""
        for frame in self.stream(protocol.Export(handle=handle)):
            if isinstance(frame, protocol.ExportStart):
                yield frame.execution
            elif isinstance(frame, protocol.ExportRows):
                yield frame.rows
            elif not isinstance(frame, protocol.ExportEnd):
                raise self._unexpected(protocol.ExportEnd, frame)


def _tag(obj: object) -> str:
    """The wire name of a response (or response type), for error messages."""
    cls = obj if isinstance(obj, type) else type(obj)
    config = getattr(cls, "__struct_config__", None)
    tag = getattr(config, "tag", None)
    return repr(tag) if tag else cls.__name__
