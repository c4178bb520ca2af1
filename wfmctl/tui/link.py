"""How the dashboard reaches wfmd: the synchronous `Client`, from worker threads only.

Textual's event loop must never block, so every request runs in a worker thread (Textual's
`@work(thread=True)`) that calls `Link.call`. A client serves one thread at a time: calls
take an idle connection from a small pool, or open one, and give it back after. A pooled
connection found dead (the daemon stopped or restarted since) is replaced and the read
retried once; runs and cancels, which must not happen twice, always get a new connection.
Nothing is connected up front: the dashboard starts while the daemon is down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from wfmctl import paths
from wfmctl.client import DISCONNECTED, TIMEOUT, UNREACHABLE, Client, WfmError

T = TypeVar("T")

CALL_TIMEOUT = 30.0  # a single-reply request (the client's default)
POOL_SIZE = 4  # idle connections kept; the dashboard has few requests in flight at once

# Codes that mean "the daemon is not there (now)": the banner's business, not an error.
GONE_CODES = frozenset({UNREACHABLE, DISCONNECTED, TIMEOUT, "shutting_down"})


def daemon_gone(err: WfmError) -> bool:
    return err.code in GONE_CODES


class Link:
    """The daemon at `socket_path` (default: `$WFM_SOCKET`, else the per-user socket)."""

    def __init__(self, socket_path: str | None = None) -> None:
        self.socket_path = socket_path or paths.default_socket()
        self._idle: list[Client] = []
        self._lock = threading.Lock()
        self._closed = False  # after close: connections are closed as calls give them back

    def call(self, fn: Callable[[Client], T], *, once: bool = False) -> T:
        """`fn(client)`, in the calling (worker) thread; WfmError on any failure. `once`: a
        request that must not be sent twice (run, cancel), on a connection of its own."""
        if not once:
            with self._lock:
                pooled = self._idle.pop() if self._idle else None
            if pooled is not None:
                try:
                    return fn(pooled)
                except WfmError as err:
                    if not (pooled.closed and err.code == DISCONNECTED):
                        raise
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
            if not self._closed and len(self._idle) < POOL_SIZE:
                self._idle.append(client)
                return
        client.close()

    def close(self) -> None:
        """Close every connection (at exit); calls still under way close theirs when done."""
        with self._lock:
            self._closed = True
            clients, self._idle = self._idle, []
        for client in clients:
            client.close()
