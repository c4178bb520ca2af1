"""The Unix socket: binding it safely, and one task per connection speaking frames.

A handler never lets an exception escape (`trio.serve_listeners` would die with it): bad input
becomes an `Error` frame, a bad frame also closes that one connection, and everyone else is
served as before.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

import msgspec
import trio

from wfmctl import protocol
from wfmctl.protocol import Error, ErrorCode, FrameError, Hello, RequestType, Response

log = logging.getLogger(__name__)

# Pending connections the kernel queues while we are busy accepting.
LISTEN_BACKLOG = 512

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class Encoded(NamedTuple):
    """A response already encoded as a frame, to be sent as it is (to many connections)."""

    frame: bytes


Send = Callable[[Response | Encoded], Awaitable[None]]
Dispatch = Callable[[RequestType, Send], Awaitable[None]]


class SocketInUse(Exception):
    """Another daemon answers on the socket path."""


class SocketPathError(Exception):
    """The socket path cannot be used (not a socket, no permission, ...)."""


def _socket_answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise SocketPathError(f"cannot probe existing socket {path}: {exc}") from exc
    finally:
        probe.close()
    return True


def remove_stale_socket(path: Path) -> None:
    """Socket exists → try to connect → in use (refuse), or stale (remove)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketPathError(f"{path} exists and is not a socket; not touching it")
    if _socket_answers(path):
        raise SocketInUse(f"another wfmd is already listening on {path}")
    log.info("removing stale socket %s left by a daemon that died", path)
    path.unlink(missing_ok=True)


async def open_unix_listener(path: Path) -> tuple[trio.SocketListener, tuple[int, int]]:
    """Bind `path` with mode 0600 and listen. Its directory must already be safe.

    Returns the listener and the socket file's identity (device, inode), by which the file
    is later told from one that replaced it.
    """
    remove_stale_socket(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(str(path))
        os.chmod(path, 0o600)
        info = os.lstat(path)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise SocketPathError(f"cannot listen on {path}: {exc}") from exc
    return trio.SocketListener(sock), (info.st_dev, info.st_ino)


def adopt_listener(fd: int, name: str) -> socket.socket:
    """The listening socket passed as `fd` by socket activation (`name` from LISTEN_FDNAMES).

    It must be a Unix stream socket that listens: peer credentials, which keep other users
    out, exist only there. Raises SocketPathError.
    """
    what = f"descriptor {fd} ({name}) passed by socket activation"
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise SocketPathError(f"{what} is not a socket: {exc}") from exc
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise SocketPathError(
            f"{what} is not a Unix stream socket ({sock.family.name}, {sock.type.name}): "
            "wfmd serves only Unix stream sockets, whose peers' user ids it can check"
        )
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise SocketPathError(f"{what} is not listening")
    return sock


def socket_name(sock: socket.socket) -> Path:
    """Where a Unix socket is bound: its path, or `@name` for an abstract one."""
    address = sock.getsockname()
    if isinstance(address, bytes):  # abstract: starts with a NUL
        address = "@" + address[1:].decode(errors="replace")
    return Path(address)


def _remove_socket_file(path: Path, identity: tuple[int, int]) -> None:
    """Unlink `path` if it is still the socket file this daemon bound, and nobody's else."""
    try:
        info = path.lstat()
    except OSError:
        return
    if (info.st_dev, info.st_ino) == identity:
        path.unlink(missing_ok=True)


# Error messages quote what the client sent; quoting a multi-megabyte string back could make
# the reply larger than a frame.
MAX_ERROR_MESSAGE = 1000


def shorten(message: str) -> str:
    if len(message) <= MAX_ERROR_MESSAGE:
        return message
    return message[: MAX_ERROR_MESSAGE - 20] + f"... ({len(message)} characters)"


def _is_msgpack(body: bytes) -> bool:
    try:
        msgspec.msgpack.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False
    except RecursionError:
        return True
    return True


def peer_uid(stream: trio.SocketStream) -> int:
    raw = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    _pid, uid, _gid = _PEERCRED.unpack(raw)
    return int(uid)


# Bytes asked of the socket per read: a whole typical request (header and body) in one
# system call, instead of one for the header and one for the body.
RECEIVE_SIZE = 65536


class FrameReader:
    """Reads frames from a stream through one buffer."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def _fill(self, size: int) -> bool:
        """At least `size` bytes buffered; False if the peer closed first."""
        while len(self._buffer) < size:
            data = await self._stream.receive_some(max(RECEIVE_SIZE, size - len(self._buffer)))
            if not data:
                return False
            self._buffer += data
        return True

    async def next_frame(self) -> bytes | None:
        """The next frame's body, or None at a clean end. Raises FrameError (too large)."""
        if not await self._fill(protocol.HEADER.size):
            return None
        length = protocol.frame_length(bytes(self._buffer[: protocol.HEADER.size]))
        if not await self._fill(protocol.HEADER.size + length):
            return None
        body = bytes(self._buffer[protocol.HEADER.size : protocol.HEADER.size + length])
        del self._buffer[: protocol.HEADER.size + length]
        return body


class Connection:
    """One client: hello, then requests in turn until it hangs up or sends a bad frame."""

    def __init__(self, stream: trio.SocketStream, dispatch: Dispatch, version: str) -> None:
        self._stream = stream
        self._dispatch = dispatch
        self._version = version

    async def send(self, response: Response | Encoded) -> None:
        if isinstance(response, Encoded):
            await self._stream.send_all(response.frame)
            return
        try:
            frame = protocol.encode_frame(response)
        except FrameError as exc:  # a reply we should never have built; say so, briefly
            log.error("reply not sent: %s", exc)
            frame = protocol.encode_frame(Error(code=ErrorCode.INTERNAL, message=str(exc)))
        await self._stream.send_all(frame)

    async def error(self, code: str, message: str) -> None:
        await self.send(Error(code=code, message=shorten(message)))

    async def serve(self) -> None:
        """Cancellation: the connection is closed; a request in progress is abandoned."""
        async with self._stream:
            try:
                await self._serve()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client went away
            except Exception as exc:
                log.exception("connection handler failed")
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.error(ErrorCode.INTERNAL, f"internal error: {exc}")

    async def _serve(self) -> None:
        if peer_uid(self._stream) != os.getuid():
            await self.error(ErrorCode.FORBIDDEN, "connections from other users are refused")
            return
        await self.send(Hello(protocol=protocol.PROTOCOL_VERSION, daemon_version=self._version))
        frames = FrameReader(self._stream)
        while True:
            try:
                body = await frames.next_frame()
            except FrameError as exc:
                await self.error(ErrorCode.BAD_FRAME, str(exc))
                return
            if body is None:
                return
            try:
                request = protocol.decode_request(body)
            except msgspec.ValidationError as exc:
                if not _is_msgpack(body):  # typed decoding stops at the first wrong type
                    await self.error(ErrorCode.BAD_FRAME, "undecodable frame: not msgpack")
                    return
                await self.error(ErrorCode.BAD_REQUEST, f"invalid request: {exc}")
                continue
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                await self.error(ErrorCode.BAD_FRAME, f"undecodable frame: {exc}")
                return
            except RecursionError:
                await self.error(ErrorCode.BAD_REQUEST, "invalid request: nested too deeply")
                continue
            await self._dispatch(request, self.send)


class Server:
    """Serves on `path`, which it binds, or on `inherited`, a listening socket passed by
    socket activation (see `adopt_listener`), whose file it never removes."""

    def __init__(
        self,
        path: Path,
        dispatch: Dispatch,
        version: str,
        inherited: socket.socket | None = None,
    ) -> None:
        self.path = path
        self._dispatch = dispatch
        self._version = version
        self._inherited = inherited

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ready once the socket accepts connections.

        Cancellation: stops accepting, closes every connection, removes the socket file if
        this daemon created it (and it was not replaced since).
        """
        identity: tuple[int, int] | None = None
        if self._inherited is not None:
            listener = trio.SocketListener(trio.socket.from_stdlib_socket(self._inherited))
        else:
            listener, identity = await open_unix_listener(self.path)
        try:
            # serve_listeners rides out EMFILE and friends (it pauses and retries) and closes
            # the listener when cancelled.
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._serve, [listener])
                task_status.started()
        finally:
            if identity is not None:
                _remove_socket_file(self.path, identity)

    async def _serve(self, stream: trio.SocketStream) -> None:
        await Connection(stream, self._dispatch, self._version).serve()
