"""Tool results: the daemon's replies in the original tool's shapes, and the output bound.

Every result is one JSON document, sent twice as MCP asks: as the tool's structured content
and as its JSON text. The text is bounded (`Limits.max_output`: 32 KiB by default,
`WFM_MCP_MAX_OUTPUT` changes it). A string longer than `Limits.line_cap` characters is cut
with a marker that gives its full length, and a list is cut to what fits, with a hint that
says how to get the rest.

Times are RFC 3339 strings in local time with their offset, as the original tool wrote them
(`2026-11-26T14:03:07.123+01:00`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import msgspec
from typing_extensions import TypedDict  # pydantic reads TypedDicts from here on Python 3.11

from wfmctl.protocol import Execution, Field, LogEntry, Workflow

MAX_OUTPUT_ENV = "WFM_MCP_MAX_OUTPUT"
DEFAULT_MAX_OUTPUT = 32 * 1024  # bytes of JSON text in one result
MIN_MAX_OUTPUT = 4 * 1024  # below this, a page holds too little to be useful
# What a page's envelope (ids, cursors, hint) may take besides its list: the list gets the rest.
ENVELOPE_RESERVE = 1024

_encoder = msgspec.json.Encoder()


class Limits:
    """How large a result may be: `max_output` bytes of JSON text in all, and no string over
    `line_cap` characters (an eighth of it, so that a page holds several long lines)."""

    def __init__(self, max_output: int = DEFAULT_MAX_OUTPUT) -> None:
        if max_output < MIN_MAX_OUTPUT:
            raise ValueError(f"the output bound must be at least {MIN_MAX_OUTPUT} bytes")
        self.max_output = max_output
        self.line_cap = max_output // 8

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Limits:
        """From WFM_MCP_MAX_OUTPUT (bytes) when set; raises ValueError for a bad value."""
        text = environ.get(MAX_OUTPUT_ENV, "").strip()
        if not text:
            return cls()
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{MAX_OUTPUT_ENV}={text!r} is not a number of bytes") from None
        try:
            return cls(value)
        except ValueError as exc:
            raise ValueError(f"{MAX_OUTPUT_ENV}={text}: {exc}") from None


def encode(document: object) -> bytes:
    """The compact JSON text of a result, as sent."""
    return _encoder.encode(document)


# --------------------------------------------------------------------------- values


def rfc3339(ts: float | None) -> str | None:
    """Seconds since the epoch as RFC 3339 in local time, to the millisecond."""
    if ts is None:
        return None
    whole = math.floor(ts)
    ms = min(999, round((ts - whole) * 1000))
    if _second[0] != whole:  # a page's entries share few seconds: format each second once
        local = datetime.fromtimestamp(whole).astimezone()
        offset = local.isoformat()[19:]
        _second[:] = [whole, local.strftime("%Y-%m-%dT%H:%M:%S."), offset]
    return f"{_second[1]}{ms:03d}{_second[2]}"


_second: list[Any] = [None, "", ""]  # the last second formatted: seconds, text, offset


def cut(text: str, cap: int) -> str:
    """`text`, or its first `cap` characters and a marker giving its full length."""
    if len(text) <= cap:
        return text
    return f"{text[:cap]}… [cut: {len(text):,} characters in all]"


def cut_value(value: Any, cap: int) -> Any:
    """A JSON value with every string cut to `cap` characters; a container whose JSON is
    longer than that becomes its JSON text, cut."""
    if isinstance(value, str):
        return cut(value, cap)
    if isinstance(value, dict | list):
        text = encode(value).decode()
        if len(text) > cap:
            return cut(text, cap)
    return value


# --------------------------------------------------------------------------- shapes


class StatusResult(TypedDict):
    handle_id: str
    workflow_id: str
    workflow_name: str | None
    status: str
    accepted_time: str | None
    start_time: str | None
    end_time: str | None
    exit_code: int | None
    signal: int | None
    reason: str | None
    ended_by: str | None
    log_count: int
    queue_position: int | None


class HistoryItem(TypedDict):
    handle_id: str
    workflow_id: str
    workflow_name: str | None
    status: str
    accepted_time: str | None
    start_time: str | None
    end_time: str | None
    exit_code: int | None
    ended_by: str | None


def status_result(execution: Execution, name: str | None, cap: int) -> StatusResult:
    e = execution
    return {
        "handle_id": e.handle,
        "workflow_id": e.workflow_id,
        "workflow_name": cut(name, cap) if name is not None else None,
        "status": e.status,
        "accepted_time": rfc3339(e.created_at),
        "start_time": rfc3339(e.started_at),
        "end_time": rfc3339(e.ended_at),
        "exit_code": e.exit_code,
        "signal": e.signal,
        "reason": cut(e.reason, cap) if e.reason is not None else None,
        "ended_by": e.ended_by,
        "log_count": e.log_count,
        "queue_position": e.queue_position if e.status == "NotStarted" else None,
    }


def history_item(execution: Execution, name: str | None, cap: int) -> HistoryItem:
    e = execution
    return {
        "handle_id": e.handle,
        "workflow_id": e.workflow_id,
        "workflow_name": cut(name, cap) if name is not None else None,
        "status": e.status,
        "accepted_time": rfc3339(e.created_at),
        "start_time": rfc3339(e.started_at),
        "end_time": rfc3339(e.ended_at),
        "exit_code": e.exit_code,
        "ended_by": e.ended_by,
    }


def log_entry(entry: LogEntry, cap: int) -> dict[str, Any]:
    """An entry in the original tool's shape, with its `seq` and `timestamp`:
    `{"type": "phase_started", "phase": 1, ...}` for an event (its fields, cut to `cap`),
    `{"type": "raw_output", "stream": "stdout", "line": "..."}` for a line. An event field
    that clashes with `seq`, `timestamp` or `type` is kept as `event_<name>`."""
    shaped: dict[str, Any] = {"seq": entry.seq, "timestamp": rfc3339(entry.ts), "type": entry.type}
    if entry.event is None:
        shaped["stream"] = entry.stream
        shaped["line"] = cut(entry.line, cap)
        return shaped
    for key, value in entry.event.items():
        shaped[f"event_{key}" if key in shaped else key] = cut_value(value, cap)
    return shaped


def field_info(field: Field, cap: int) -> dict[str, Any]:
    """A workflow field as in its metadata, without the constraints it does not have."""
    kind = {k: v for k, v in msgspec.structs.asdict(field.field_type).items() if v is not None}
    return {
        "name": field.name,
        "field_type": kind,
        "label": cut(field.label, cap),
        "description": cut(field.description, cap),
        "cli_arg": field.cli_arg,
        "required": field.required,
        "default": field.default,
        "required_for_phases": field.required_for_phases,
    }


def workflow_info(workflow: Workflow, cap: int, *, fields: bool = True) -> dict[str, Any]:
    info: dict[str, Any] = {
        "id": workflow.id,
        "name": cut(workflow.name, cap),
        "description": cut(workflow.description, cap),
    }
    if fields:
        info["fields"] = [field_info(f, cap) for f in workflow.fields]
    else:
        info["field_count"] = len(workflow.fields)
    return info


def describe_field(field: Field) -> str:
    """One line for an error message: a field, its type, constraints and default."""
    t = field.field_type
    parts = [t.type]
    if t.min is not None:
        parts.append(f"min {t.min:g}")
    if t.max is not None:
        parts.append(f"max {t.max:g}")
    if t.options is not None:
        parts.append("one of " + ", ".join(repr(o) for o in t.options))
    parts.append("required" if field.required else "optional")
    if field.default is not None:
        parts.append(f"default {field.default!r}")
    text = f"{field.name} ({'; '.join(parts)})"
    return f"{text}: {field.description}" if field.description else text


# --------------------------------------------------------------------------- fitting


def fitting(items: Iterable[object], room: int) -> int:
    """How many of `items`, in order, fit in `room` bytes of JSON text (one comma each)."""
    count = used = 0
    for item in items:
        used += len(encode(item)) + 1
        if used > room:
            break
        count += 1
    return count


def room_for_list(envelope: Mapping[str, object], limits: Limits) -> int:
    """The bytes left for a result's list once its envelope (with the list empty and
    without its hint) and a reserve for the hint are counted."""
    return limits.max_output - len(encode(envelope)) - ENVELOPE_RESERVE


def shrink(document: Any, size: int) -> Any:
    """`document` with its strings cut shorter and shorter until its JSON takes at most
    `size` bytes (or they are down to a few characters): the safety net for results whose
    size is not planned (params, names, messages), and for one huge log entry."""
    cap = max((len(s) for s in _strings(document)), default=0)
    while len(encode(document)) > size and cap > 16:
        cap //= 2
        document = _cut_all(document, cap)
    return document


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _cut_all(value: Any, cap: int) -> Any:
    if isinstance(value, str):
        return cut(value, cap)
    if isinstance(value, dict):
        return {k: _cut_all(v, cap) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_all(v, cap) for v in value]
    return value
