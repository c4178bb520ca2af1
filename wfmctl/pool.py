"""A small pool of `Client` connections for front ends that call wfmd from worker threads
(the MCP bridge, the dashboard).

A client serves one thread at a time: a call takes an idle connection, or opens one, and
gives it back after. A pooled connection found dead (the daemon stopped or restarted since
it was last used) is replaced and the request sent again; requests that must not happen
twice (run, cancel) always get a connection of their own. Nothing connects up front.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from wfmctl.client import DISCONNECTED, Client, WfmError

T = TypeVar("T")

CALL_TIMEOUT = 30.0  # a single-reply request (the client's default)


class ClientPool:
    """Connections to the daemon at `socket_path`, at most `size` of them kept idle."""

    def __init__(self, socket_path: str, size: int) -> None:
        self.socket_path = socket_path
        self._size = size
        self._idle: list[Client] = []
        self._lock = threading.Lock()
        self._closed = False  # after close: connections are closed as calls give them back

    def call(self, fn: Callable[[Client], T], *, once: bool = False) -> T:
        """`fn(client)`, in the calling thread; WfmError on any failure. `once`: a request
        that must not be sent twice (run, cancel), on a connection of its own."""
        if not once:
            with self._lock:
                pooled = self._idle.pop() if self._idle else None
            if pooled is not None:
                try:
                    return fn(pooled)
                except WfmError as err:
                    if not (pooled.closed and err.code == DISCONNECTED):
                        raise  # the daemon's answer; or a live connection that failed
                    # Dead since it was last used: the daemon went away. Try a new one.
                finally:
                    self._give_back(pooled)
        client = Client(self.socket_path, timeout=CALL_TIMEOUT)
        if once:
            with client:
                return fn(client)
        try:
            return fn(client)
        finally:
            self._give_back(client)

    def _give_back(self, client: Client) -> None:
        if client.closed:
            return
        with self._lock:
            if not self._closed and len(self._idle) < self._size:
                self._idle.append(client)
                return
        client.close()

    def close(self) -> None:
        """Close every idle connection; calls still under way close theirs when done."""
        with self._lock:
            self._closed = True
            clients, self._idle = self._idle, []
        for client in clients:
            client.close()
