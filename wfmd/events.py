"""Structured events: `__WF_EVENT__:{json}` lines on a workflow's stderr (see WORKFLOWS.md).

Only recognition lives here. A line that carries the marker but is not a valid event of a
known type stays a raw stderr line: nothing a workflow prints is ever dropped.

Both functions here are total: they take any bytes a child printed (or a database holds) and
never raise. An event is valid only if its fields can be served as they are: what ingestion
accepts as an event, every read can send (see `event_fields`).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

EVENT_MARKER = b"__WF_EVENT__:"

# An event's fields may nest this deep (the fields object is level 1). Real events are flat;
# the bound keeps every decoder on the way (the daemon's, msgpack's in each client, a client's
# own JSON or rendering code) far from its recursion limit, whatever stack depth it runs at.
# msgspec's own limit follows Python's (about 1,000 levels, less on a deeper stack), so a
# deeper line could be accepted on the shallow stack of the pipe thread and fail later.
MAX_DEPTH = 64

# Integers in an event's fields must fit in a signed 64-bit integer: msgpack cannot carry
# anything beyond 2**64 - 1 at all, and a signed 64-bit integer is what clients in other
# languages decode into.
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1


class _Event(msgspec.Struct, tag_field="type"):
    pass


class PhaseStarted(_Event, tag="phase_started"):
    phase: int
    name: str
    total_phases: int


class PhaseCompleted(_Event, tag="phase_completed"):
    phase: int
    name: str


class PhaseFailed(_Event, tag="phase_failed"):
    phase: int
    name: str
    error: str


class TaskStarted(_Event, tag="task_started"):
    phase: int
    task_id: str
    description: str
    total_tasks: int | None = None


class TaskProgress(_Event, tag="task_progress"):
    task_id: str
    message: str


class TaskCompleted(_Event, tag="task_completed"):
    task_id: str
    result: str | None = None


class TaskFailed(_Event, tag="task_failed"):
    task_id: str
    error: str


class AgentStarted(_Event, tag="agent_started"):
    task_id: str
    agent_name: str
    description: str


class AgentMessage(_Event, tag="agent_message"):
    task_id: str
    agent_name: str
    message: str


class AgentCompleted(_Event, tag="agent_completed"):
    task_id: str
    agent_name: str
    result: str | None = None


class AgentFailed(_Event, tag="agent_failed"):
    task_id: str
    agent_name: str
    error: str


class StateFileCreated(_Event, tag="state_file_created"):
    phase: int
    file_path: str
    description: str


EventType = (
    PhaseStarted
    | PhaseCompleted
    | PhaseFailed
    | TaskStarted
    | TaskProgress
    | TaskCompleted
    | TaskFailed
    | AgentStarted
    | AgentMessage
    | AgentCompleted
    | AgentFailed
    | StateFileCreated
)

EVENT_TYPES: frozenset[str] = frozenset(
    str(cls.__struct_config__.tag) for cls in EventType.__args__
)

_decoder = msgspec.json.Decoder(EventType)
_fields_decoder = msgspec.json.Decoder(dict[str, Any])


def event_type(line: bytes) -> str | None:
    """The event type if `line` (without its newline) is a valid event, else None.

    Valid: the marker, then one JSON object of a known type with its fields of the right
    types, whose fields `event_fields` can serve. Never raises: whatever fails to decode
    (including nesting too deep for the decoder, RecursionError) is not an event.
    """
    if not line.startswith(EVENT_MARKER):
        return None
    payload = line[len(EVENT_MARKER) :]
    try:
        event = _decoder.decode(payload)
    except Exception:  # msgspec's errors, RecursionError, MemoryError: not an event
        return None
    if event_fields(payload) is None:
        return None
    tag = type(event).__struct_config__.tag
    return tag if isinstance(tag, str) else None


def event_fields(payload: bytes) -> dict[str, Any] | None:
    """The fields of an event (the JSON after the marker, `type` included) as clients get
    them, or None if they cannot be served. Never raises.

    Servable: a JSON object nested at most MAX_DEPTH deep, each integer within MIN_INT and
    MAX_INT, each number finite (a JSON number beyond a double's range, such as 1e400, fails
    to decode). An event outside these bounds is kept as the raw line it is, byte for byte,
    rather than normalised: rewriting what a workflow printed (1e400 as null, a huge integer
    as a float or a string) would store something it never said, and the bound is far beyond
    what any progress event needs.
    """
    try:
        fields = _fields_decoder.decode(payload)
    except Exception:  # msgspec's errors, RecursionError, MemoryError
        return None
    return fields if _servable(fields) else None


def _servable(fields: dict[str, Any]) -> bool:
    # Level by level, without recursion: the walk itself must not recurse on what a child
    # printed. Cheap for the usual flat event: one pass over a few strings.
    level: list[Any] = [fields]
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            return False
        nested: list[Any] = []
        for container in level:
            for value in container.values() if type(container) is dict else container:
                kind = type(value)
                if kind is str:
                    continue
                if kind is dict or kind is list:
                    nested.append(value)
                elif kind is int:
                    if not MIN_INT <= value <= MAX_INT:
                        return False
                elif kind is float and not math.isfinite(value):
                    return False
        level = nested
        depth += 1
    return True
