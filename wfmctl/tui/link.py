"""How the dashboard reaches wfmd: the synchronous `Client`, from worker threads only.

Textual's event loop must never block, so every request runs in a worker thread (Textual's
`@work(thread=True)`) that calls `Link.call`, over the library's small pool of connections
(`wfmctl.pool`). Nothing is connected up front: the dashboard starts while the daemon is
down.
"""

from __future__ import annotations

from wfmctl import paths
from wfmctl.client import DISCONNECTED, TIMEOUT, UNREACHABLE, WfmError
from wfmctl.pool import ClientPool

POOL_SIZE = 4  # idle connections kept; the dashboard has few requests in flight at once

# Codes that mean "the daemon is not there (now)": the banner's business, not an error.
GONE_CODES = frozenset({UNREACHABLE, DISCONNECTED, TIMEOUT, "shutting_down"})


def daemon_gone(err: WfmError) -> bool:
    return err.code in GONE_CODES


class Link(ClientPool):
    """The daemon at `socket_path` (default: `$WFM_SOCKET`, else the per-user socket)."""

    def __init__(self, socket_path: str | None = None) -> None:
        super().__init__(socket_path or paths.default_socket(), POOL_SIZE)
