"""wfmctl's rendering: protocol values to the text a person reads (no daemon involved)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_cli_support import T0, entry, execution, time_zone

from wfmctl.cli import render, terminal
from wfmctl.protocol import (
    Field,
    FieldType,
    ParamsReply,
    Pong,
    SkippedFile,
    Workflow,
    WorkflowList,
)


@pytest.fixture
def utc() -> Iterator[None]:
    with time_zone("UTC"):
        yield


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (-3, "0.0s"),
        (0, "0.0s"),
        (1.25, "1.2s"),
        (59.99, "59.9s"),
        (60, "1m00s"),
        (184.9, "3m04s"),
        (3599.9, "59m59s"),
        (3600, "1h00m"),
        (7500, "2h05m"),
        (3 * 86400 + 4 * 3600 + 59, "3d04h"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert render.format_duration(seconds) == text


def test_format_time_is_local(utc: None) -> None:
    assert render.format_time(T0) == "2026-11-26 14:03:07"
    assert render.format_time(None) == "-"


def test_signal_name() -> None:
    assert render.signal_name(9) == "SIGKILL"
    assert render.signal_name(999) == "signal 999"


def test_summaries() -> None:
    now = T0 + 10
    assert render.summarize(execution("Completed"), now) == "Completed in 1.2s"
    failed = execution("Failed", exit_code=3, reason="exit status 3")
    assert render.summarize(failed, now) == "Failed after 1.2s: exit status 3"
    killed = execution("Failed", signal=9, reason="killed by signal 9 (SIGKILL)")
    assert render.summarize(killed, now) == "Failed after 1.2s: killed by signal 9 (SIGKILL)"
    running = execution("Running", ended_at=None)
    assert render.summarize(running, now) == "Running for 9.0s"
    spawn = execution("Failed", started_at=None, ended_at=None, reason="spawn error: ENOENT")
    assert render.summarize(spawn, now) == "Failed: spawn error: ENOENT"
    assert render.execution_line(execution(), now) == "a1b2c3  simple_echo  Completed in 1.2s"


# --------------------------------------------------------------------------- layout


def test_table_aligns_and_does_not_pad_last_column() -> None:
    text = render.table(("A", "LONGER", "C"), [("xxxx", "y", "z"), ("1", None, "two\nlines")])
    assert text.splitlines() == [
        "A     LONGER  C",
        "xxxx  y       z",
        "1     -       two lines",
    ]


def test_key_values() -> None:
    assert render.key_values([("a", 1), ("long", None)]) == "a:     1\nlong:  -"


# --------------------------------------------------------------------------- log entries


def test_raw_lines_are_printed_exactly() -> None:
    for line in ["", "  indented\tand tabbed  ", "__WF_EVENT__:{not json", "▶ looks like an event"]:
        assert render.render_entry(entry("raw_output", line)) == line


@pytest.mark.parametrize(
    ("type", "event", "text"),
    [
        ("phase_started", {"phase": 1, "name": "Build", "total_phases": 3}, "▶ phase 1/3: Build"),
        ("phase_completed", {"phase": 1, "name": "Build"}, "✓ phase 1 done: Build"),
        (
            "phase_failed",
            {"phase": 2, "name": "Test", "error": "boom"},
            "✗ phase 2 failed: Test: boom",
        ),
        (
            "task_started",
            {"phase": 1, "task_id": "t1", "description": "compile"},
            "  • task t1 started: compile",
        ),
        (
            "task_started",
            {"task_id": "t1", "description": "x", "total_tasks": 4},
            "  • task t1 started (of 4): x",
        ),
        ("task_progress", {"task_id": "t1", "message": "50%"}, "  • task t1: 50%"),
        ("task_completed", {"task_id": "t1", "result": "ok"}, "  ✓ task t1 done: ok"),
        ("task_completed", {"task_id": "t1"}, "  ✓ task t1 done"),
        ("task_failed", {"task_id": "t1", "error": "bad"}, "  ✗ task t1 failed: bad"),
        (
            "agent_started",
            {"task_id": "t1", "agent_name": "coder", "description": "write"},
            "    ▸ coder started: write",
        ),
        (
            "agent_message",
            {"task_id": "t1", "agent_name": "coder", "message": "hello"},
            "    coder: hello",
        ),
        (
            "agent_completed",
            {"task_id": "t1", "agent_name": "coder", "result": "done"},
            "    ✓ coder done: done",
        ),
        (
            "agent_failed",
            {"task_id": "t1", "agent_name": "coder", "error": "oops"},
            "    ✗ coder failed: oops",
        ),
        (
            "state_file_created",
            {"phase": 1, "file_path": "/s.json", "description": "plan"},
            "  ◆ state file /s.json: plan",
        ),
        ("future_event", {"a": 1}, "  · future_event: a=1"),
    ],
)
def test_events(type: str, event: dict[str, Any], text: str) -> None:
    assert render.render_entry(entry(type, "__WF_EVENT__:...", **event)) == text


def test_event_edge_cases() -> None:
    # A missing field is shown as "?", never a crash; continuation lines stay indented.
    assert render.render_event("task_failed", {}) == "  ✗ task ? failed"
    assert render.render_event("agent_message", {"agent_name": "a", "message": "x\ny"}) == (
        "    a: x\n      y"
    )
    # An event type without an event payload is shown as its line.
    assert render.render_entry(entry("phase_started", "the line")) == "the line"


# --------------------------------------------------------------------------- views


def test_execution_detail(utc: None) -> None:
    e = execution(
        "Failed",
        exit_code=3,
        reason="exit status 3",
        ended_by="exit",
        timeout=30,
        params={"m": "hi"},
    )
    text = render.execution_detail(e, now=T0 + 10)
    assert "handle:       a1b2c3" in text
    assert "status:       Failed" in text
    assert "outcome:      exit status 3" in text
    assert "ended by:     exit" in text
    assert "created:      2026-11-26 14:03:07" in text
    assert "duration:     1.2s" in text
    assert "timeout:      30.0s" in text
    assert text.endswith("params:\n  NAME  VALUE\n  m     hi")


def test_history_table(utc: None) -> None:
    assert render.history_table([]) == "no executions"
    rows = render.history_table([execution(), execution("Cancelled", handle="ffff")]).splitlines()
    assert rows[0].split() == ["HANDLE", "WORKFLOW", "STATUS", "CREATED", "TOOK", "OUTCOME"]
    assert rows[1] == "a1b2c3  simple_echo  Completed  2026-11-26 14:03  1.2s"
    assert rows[2].startswith("ffff    simple_echo  Cancelled")


def test_workflows() -> None:
    fields = [
        Field(name="message", field_type=FieldType(type="text"), label="Message", required=True),
        Field(
            name="count",
            field_type=FieldType(type="number", min=1, max=10),
            cli_arg="--count",
            default="1",
            description="how many",
        ),
        Field(name="mode", field_type=FieldType(type="select", options=["a", "b"])),
    ]
    wf = Workflow(id="echo", name="Echo", fields=fields, path="/w/echo")
    reply = WorkflowList(
        workflows=[wf, Workflow(id="none", name="No fields")],
        skipped=[SkippedFile(path="/w/broken", reason="exit status 1")],
        conflicts=["dup: /a/dup shadows /b/dup"],
    )
    text = render.workflows_table(reply)
    assert text.splitlines()[:3] == [
        "ID    NAME       FIELDS",
        "echo  Echo       message, count, mode",
        "none  No fields",
    ]
    assert "skipped 1 file(s):\n  /w/broken: exit status 1" in text
    assert text.endswith("conflicts:\n  dup: /a/dup shadows /b/dup")
    detail = render.workflow_detail(wf)
    assert "path:         /w/echo" in detail
    assert "count    number 1..10  no        1        --count  how many" in detail
    assert "message  text          yes" in detail
    assert render.describe_type(FieldType(type="state_file", pattern="*.json", phase=2)) == (
        "state_file *.json phase 2"
    )
    assert render.workflows_table(WorkflowList(workflows=[])) == "no workflows"


def test_params_and_pong() -> None:
    reply = ParamsReply(handle="a1", workflow_id="w", params={"b": "2", "a": "1"})
    assert render.params_table(reply) == "a1  w\nNAME  VALUE\na     1\nb     2"
    pong = Pong(
        daemon_version="0.1.0",
        pid=42,
        uptime=184,
        database="/d.db",
        socket="/s",
        running=1,
        queued=0,
        storage_ok=False,
        storage_error="disk full",
    )
    text = render.pong_detail(pong, 1)
    assert "uptime:      3m04s" in text
    assert "storage:     ERROR: disk full" in text
    assert "executions:  1 Running, 0 NotStarted" in text
    assert "containment" not in text  # a daemon older than the field


def test_pong_shows_containment() -> None:
    pong = Pong(
        daemon_version="0.1.0",
        pid=42,
        uptime=1,
        database="/d.db",
        socket="/s",
        running=0,
        queued=0,
        containment="process-scan",
    )
    assert "\ncontainment:  process-scan\n" in render.pong_detail(pong, 1)


# --------------------------------------------------------------------------- terminals


def test_escape_shows_what_a_terminal_would_act_on() -> None:
    assert terminal.escape("plain café ☃ ▶\ttabbed") == "plain café ☃ ▶\ttabbed"
    assert terminal.escape("a\nb") == "a\nb"
    text = "\x00\x07\x1b[2J\r\x7f\x85\x9b\u202a\u202e\u2066\u2069\u200b"
    assert terminal.escape(text) == (
        r"\x00\x07\x1b[2J\r\x7f\x85\x9b\u202a\u202e\u2066\u2069" + "\u200b"
    )


def test_escape_json_keeps_the_document() -> None:
    import msgspec.json

    value = {"line": "\x1b]0;t\x07 \x7f \x9b \u202e \u2066 é"}
    encoded = msgspec.json.encode(value).decode()
    escaped = terminal.escape_json(encoded)
    assert escaped == r'{"line":"\u001b]0;t\u0007 \u007f \u009b \u202e \u2066 é"}'
    assert msgspec.json.decode(escaped) == value
