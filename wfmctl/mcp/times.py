"""The times list_execution_history filters on: RFC 3339 / ISO 8601, or an age such as 2h."""

from __future__ import annotations

import re
import time
from datetime import datetime

_AGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", re.IGNORECASE)
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
FORMS = (
    "an RFC 3339 / ISO 8601 date or date-time (2026-11-26, 2026-11-26T14:03:00+01:00; "
    "local time without an offset), or an age before now (90s, 30m, 2h, 3d, 1w)"
)


def parse_time(text: str, now: float | None = None) -> float:
    """Seconds since the epoch; raises ValueError naming the accepted forms."""
    match = _AGE.fullmatch(text)
    if match:
        age = float(match.group(1)) * UNIT_SECONDS[match.group(2).lower()]
        return (time.time() if now is None else now) - age
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(f"cannot read the time {text!r}: give {FORMS}") from None
