"""How the MCP server reaches wfmd.

The SDK serves tools on an anyio event loop; `wfmctl.Client` is synchronous. Single-reply
requests therefore run a `Client` in a worker thread (at most `THREADS` at once, apart from
the threads the SDK itself uses), over the library's pool of connections (`wfmctl.pool`).
Nothing is connected up front, so the server starts while the daemon is down and recovers
when it comes back.

The requests that last as long as an execution does (`wait`, `follow`) go through `stream`
instead, an async reader of the same frames: cancelling it at a timeout closes its
connection at once, where a thread blocked in `recv` would hold one until the next line.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import anyio.to_thread
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream

from wfmctl import paths, protocol
from wfmctl.client import (
    DISCONNECTED,
    UNEXPECTED_REPLY,
    Client,
    DaemonUnreachable,
    WfmError,
)
from wfmctl.pool import CALL_TIMEOUT, ClientPool
from wfmctl.protocol import LogEntry

T = TypeVar("T")

THREADS = 16  # daemon calls in flight at once; more wait for a free thread
NAMES_TTL = 30.0  # seconds the workflow names from discovery are reused


class Bridge:
    """The daemon at `socket_path` (default: `$WFM_SOCKET`, else the per-user socket)."""

    def __init__(self, socket_path: str | None = None) -> None:
        self.socket_path = socket_path or paths.default_socket()
        self._threads: anyio.CapacityLimiter | None = None
        self._pool = ClientPool(self.socket_path, THREADS)  # one per thread, at most
        self._names: dict[str, str] = {}
        self._names_at = -NAMES_TTL

    # ------------------------------------------------------------------ single replies

    async def call(self, fn: Callable[[Client], T], *, once: bool = False) -> T:
        """`fn(client)` in a worker thread; WfmError on any failure. `once`: a request that
        must not be sent twice (run, cancel), on a connection of its own."""
        if self._threads is None:  # made on the loop's first call: it belongs to that loop
            self._threads = anyio.CapacityLimiter(THREADS)
        call = functools.partial(self._pool.call, fn, once=once)
        return await anyio.to_thread.run_sync(call, limiter=self._threads)

    async def workflow_names(self) -> dict[str, str]:
        """Each workflow's name by id, from discovery (reused for NAMES_TTL seconds). For
        executions recorded before the daemon kept names; {} while the daemon is away."""
        if time.monotonic() - self._names_at >= NAMES_TTL:
            try:
                reply = await self.call(lambda c: c.workflows())
            except WfmError:
                return self._names
            self._names = {w.id: w.name for w in reply.workflows}
            self._names_at = time.monotonic()
        return self._names

    # ------------------------------------------------------------------ streams

    async def stream(
        self,
        request: protocol.Request,
        on_entries: Callable[[list[LogEntry]], Awaitable[None]] | None = None,
    ) -> protocol.Response:
        """Send `request` on a new connection and return its final reply, handing each
        `log_batch` on the way to `on_entries`. Cancellation closes the connection."""
        try:
            sock = await anyio.connect_unix(self.socket_path)
        except OSError as exc:
            raise DaemonUnreachable(self.socket_path, exc.strerror or str(exc)) from None
        async with sock:
            reader = BufferedByteReceiveStream(sock)
            with anyio.fail_after(CALL_TIMEOUT):
                hello = await _read_frame(reader)
            if isinstance(hello, protocol.Error):
                raise WfmError(hello.code, hello.message)
            if not isinstance(hello, protocol.Hello):
                raise WfmError(UNEXPECTED_REPLY, "expected a hello from wfmd")
            try:
                await sock.send(protocol.encode_frame(request))
            except (OSError, anyio.BrokenResourceError) as exc:
                raise WfmError(DISCONNECTED, f"connection to wfmd lost: {exc}") from None
            while True:
                frame = await _read_frame(reader)
                if isinstance(frame, protocol.Error):
                    raise WfmError(frame.code, frame.message)
                if isinstance(frame, protocol.LogBatch):
                    if on_entries is not None:
                        await on_entries(frame.entries)
                    continue
                return frame


async def _read_frame(reader: BufferedByteReceiveStream) -> protocol.ResponseType:
    try:
        header = await reader.receive_exactly(protocol.HEADER.size)
        body = await reader.receive_exactly(protocol.frame_length(header))
    except protocol.FrameError as exc:
        raise WfmError(protocol.ErrorCode.BAD_FRAME, str(exc)) from None
    except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        raise WfmError(DISCONNECTED, "wfmd closed the connection before replying") from None
    try:
        return protocol.decode_response(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WfmError(protocol.ErrorCode.BAD_FRAME, f"undecodable frame: {exc}") from None
