"""The dashboard's pure parts: the progress tree from events, and the daemon's
invalid_params message split per field (checked against the daemon's own wording)."""

from __future__ import annotations

from typing import Any

import pytest

from wfmctl.protocol import Field, FieldType, LogEntry, Workflow
from wfmctl.tui.problems import GENERAL, split_problems
from wfmctl.tui.progress import DONE, FAILED, NO_PHASE, RUNNING, Progress
from wfmd.workflows.params import ParamError, validate_params

SEQ = iter(range(1_000_000))


def event(type_: str, **fields: Any) -> LogEntry:
    return LogEntry(seq=next(SEQ), ts=0.0, stream="stderr", type=type_, line="", event=fields)


def raw(line: str) -> LogEntry:
    return LogEntry(seq=next(SEQ), ts=0.0, stream="stdout", type="raw_output", line=line)


def test_progress_builds_phases_tasks_and_agents() -> None:
    progress = Progress()
    progress.apply(
        [
            event("phase_started", phase=1, name="fetch", total_phases=2),
            raw("hello"),
            event("task_started", phase=1, task_id="t1", description="get", total_tasks=1),
            event("agent_started", task_id="t1", agent_name="a", description="looks"),
            event("agent_message", task_id="t1", agent_name="a", message="halfway"),
            event("task_progress", task_id="t1", message="3 of 10"),
        ]
    )
    phase = progress.phases[1]
    assert (phase.name, phase.state, phase.total_tasks) == ("fetch", RUNNING, 1)
    task = phase.tasks["t1"]
    assert (task.state, task.message) == (RUNNING, "3 of 10")
    assert task.agents["a"].message == "halfway"
    assert progress.counts() == (0, 2)
    progress.apply(
        [
            event("agent_failed", task_id="t1", agent_name="a", error="lost"),
            event("task_failed", task_id="t1", error="no result"),
            event("phase_failed", phase=1, name="fetch", error="a task failed"),
        ]
    )
    assert (task.agents["a"].state, task.state, phase.state) == (FAILED, FAILED, FAILED)
    progress.apply(
        [
            event("phase_started", phase=1, name="fetch", total_phases=2),  # a retry
            event("task_started", phase=1, task_id="t1", description="again"),
            event("task_completed", task_id="t1", result="ok"),
            event("phase_completed", phase=1, name="fetch"),
            event("state_file_created", phase=1, file_path="/tmp/s.json", description=""),
        ]
    )
    assert (phase.state, task.state, task.message) == (DONE, DONE, "ok")
    assert progress.counts() == (1, 2)
    assert progress.state_files == ["/tmp/s.json"]


def test_progress_skips_what_it_saw_and_tolerates_strays() -> None:
    progress = Progress()
    first = event("task_progress", task_id="orphan", message="no phase")
    progress.apply([first])
    progress.apply([first])  # again: already applied
    assert progress.changes == 1
    assert progress.phases[NO_PHASE].tasks["orphan"].message == "no phase"
    progress.apply([event("phase_started", phase="x", name=None), event("what_is_this")])
    assert progress.counts() == (0, 0)  # the stray phase is not counted as a phase


def field(name: str, kind: str = "text", **type_: Any) -> Field:
    return Field(name=name, field_type=FieldType(type=kind, **type_), required=name == "who")


WORKFLOW = Workflow(
    id="w",
    name="w",
    fields=[
        field("who"),
        field("count", "number", min=1, max=10),
        field("mode", "select", options=["a", "b; c"]),
        field("count_extra", "number"),
    ],
)


def daemon_message(params: dict[str, object]) -> str:
    """The message the daemon sends for these parameters (its own code, not a copy)."""
    with pytest.raises(ParamError) as refused:
        validate_params(WORKFLOW, params)
    return str(refused.value)


def test_the_daemons_problems_land_at_their_fields() -> None:
    names = [f.name for f in WORKFLOW.fields]
    message = daemon_message(
        {"count": "11", "mode": "x; y", "count_extra": "1_0", "bogus": "1", "other;": "2"}
    )
    found = split_problems(message, names)
    assert found["who"] == ["missing required field 'who'"]
    assert found["count"] == ["value 11 is above the maximum of 10"]
    assert found["mode"] == ["value 'x; y' is not one of the options (a, b; c)"]
    assert len(found["count_extra"]) == 1 and "'1_0'" in found["count_extra"][0]
    assert [p.split(" (")[0] for p in found[GENERAL]] == [
        "unknown parameter 'bogus'",
        "unknown parameter 'other;'",
    ]


def test_an_unexpected_message_is_kept_whole() -> None:
    assert split_problems("something else", ["a"]) == {GENERAL: ["something else"]}
