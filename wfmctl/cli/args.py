"""The parsed command line (`Args`) and the parsers of its values: times, durations,
parameters and statuses.

Each parser takes the text and returns the value or raises ValueError with a message for the
user; `parser.py` hands them to argparse.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from wfmctl import protocol

# The parsed command line: argparse's attributes, on a SimpleNamespace rather than argparse's
# own Namespace (which is no more than that) so that `parser.parse_simple` needs no argparse.
Args = SimpleNamespace

# A number and an optional unit. Kept as text and compiled on first use (`re` caches it):
# only two commands' options need it, and every `wfmctl` start would pay for compiling it.
_AGE = r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$"
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _match_age(text: str) -> re.Match[str] | None:
    return re.match(_AGE, text, re.IGNORECASE)


def parse_duration(text: str) -> float:
    """`90`, `90s`, `1.5m`, `2h`, `3d`, `1w` -> seconds. Raises ValueError."""
    match = _match_age(text)
    if not match:
        raise ValueError(f"invalid duration {text!r} (examples: 90, 90s, 30m, 2h, 3d)")
    return float(match.group(1)) * UNIT_SECONDS[match.group(2).lower()]


def parse_time(text: str, now: float | None = None) -> float:
    """A point in time as seconds since the epoch; see the `times` section of --help.

    Naive dates and date-times are local time. Raises ValueError.
    """
    now = time.time() if now is None else now
    word = text.strip().lower()
    if word in ("today", "yesterday"):
        midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
        if word == "yesterday":
            midnight -= timedelta(days=1)
        return midnight.timestamp()
    if _match_age(text) and not text.strip().isdigit():
        return now - parse_duration(text)
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(
            f"invalid time {text!r} (examples: 2026-11-26, 2026-11-26T14:03, 2h, 3d)"
        ) from None


def parse_param(text: str) -> tuple[str, str]:
    """`NAME=VALUE` -> (name, value); the value may contain `=` and may be empty."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"invalid parameter {text!r}: expected NAME=VALUE")
    return name.strip(), value


def parse_params_json(text: str) -> dict[str, Any]:
    import json  # lazy: only `run --params-json` needs it; see test_status_skips_argparse

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid --params-json: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("invalid --params-json: expected a JSON object")
    return value


def merge_params(
    from_json: dict[str, Any] | None, pairs: Sequence[tuple[str, str]] | None
) -> dict[str, Any]:
    """--params-json first, then each -p in order: -p wins, and the last -p of a name wins."""
    merged = dict(from_json or {})
    merged.update(pairs or ())
    return merged


def parse_status(text: str) -> str:
    for status in protocol.ALL_STATUSES:
        if status.lower() == text.strip().lower():
            return status
    raise ValueError(f"invalid status {text!r} (one of: {', '.join(protocol.ALL_STATUSES)})")
