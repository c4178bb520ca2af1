"""The one exception that carries an error code: raised where a request cannot be served,
turned into an `Error` frame in one place (`api.dispatch`)."""

from __future__ import annotations

from collections.abc import Iterable

from wfmctl.protocol import ErrorCode


class Refused(Exception):
    """A request that cannot be served, for a reason a client can branch on (`code`)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`; did you mean 'a' or 'b'?` for the known names close to a mistyped one, else '':
    the end of a not_found refusal's message."""
    import difflib  # only a mistyped name needs it

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return "; did you mean " + " or ".join(map(repr, close)) + "?" if close else ""
