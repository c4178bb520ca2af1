"""The one exception that carries an error code: raised where a request cannot be served,
turned into an `Error` frame in one place (`api.dispatch`)."""

from __future__ import annotations

from wfmctl.protocol import ErrorCode


class Refused(Exception):
    """A request that cannot be served, for a reason a client can branch on (`code`)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
