"""Structured events: `__WF_EVENT__:{json}` lines on a workflow's stderr (see WORKFLOWS.md).

Only recognition lives here. A line that carries the marker but is not a valid event of a
known type stays a raw stderr line: nothing a workflow prints is ever dropped.
"""

from __future__ import annotations

import msgspec

EVENT_MARKER = b"__WF_EVENT__:"


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

_decoder = msgspec.json.Decoder(EventType)


def event_type(line: bytes) -> str | None:
    """The event type if `line` (without its newline) is a valid event, else None."""
    if not line.startswith(EVENT_MARKER):
        return None
    try:
        event = _decoder.decode(line[len(EVENT_MARKER) :])
    except msgspec.MsgspecError:
        return None
    tag = type(event).__struct_config__.tag
    return tag if isinstance(tag, str) else None
