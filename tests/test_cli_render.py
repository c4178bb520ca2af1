"""wfmctl without a daemon: rendering, exit codes, argument parsing, import weight, and what
happens when nothing listens on the socket. End-to-end tests against wfmd live elsewhere."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # pytest puts tests/ on sys.path, not the repository root
    sys.path.insert(0, str(REPO))

from wfmctl import DaemonUnreachable, WfmError  # noqa: E402
from wfmctl.cli import render  # noqa: E402
from wfmctl.cli.args import (  # noqa: E402
    merge_params,
    parse_duration,
    parse_param,
    parse_params_json,
    parse_time,
)
from wfmctl.cli.exit_codes import (  # noqa: E402
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    error_exit_code,
    exit_code_for,
)
from wfmctl.cli.main import main, one_line  # noqa: E402
from wfmctl.cli.parser import HANDLE_COMMANDS, build_parser, help_width, parse_simple  # noqa: E402
from wfmctl.client import Client  # noqa: E402
from wfmctl.protocol import (  # noqa: E402
    Execution,
    Field,
    FieldType,
    LogEntry,
    ParamsReply,
    Pong,
    SkippedFile,
    Workflow,
    WorkflowList,
)

SUBPROCESS_TIMEOUT = 60  # seconds: a cold interpreter start on a loaded CI machine
T0 = datetime(2026, 11, 26, 14, 3, 7, tzinfo=UTC).timestamp()


@pytest.fixture
def utc() -> Iterator[None]:
    """Local time is UTC for the test (restored afterwards, tzset included)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def execution(status: str = "Completed", **kw: Any) -> Execution:
    base: dict[str, Any] = {
        "handle": "a1b2c3",
        "workflow_id": "simple_echo",
        "status": status,
        "created_at": T0,
        "started_at": T0 + 1,
        "ended_at": T0 + 2.25,
    }
    base.update(kw)
    return Execution(**base)


def entry(type: str, line: str = "", **event: Any) -> LogEntry:
    return LogEntry(
        seq=1,
        ts=T0,
        stream="stdout" if type == "raw_output" else "stderr",
        type=type,
        line=line,
        event=event or None,
    )


def wfmctl_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WFM_SOCKET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


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
    assert (
        render.summarize(execution("Failed", signal=9), now)
        == "Failed after 1.2s: killed by SIGKILL"
    )
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
    e = execution("Failed", exit_code=3, reason="exit status 3", timeout=30, params={"m": "hi"})
    text = render.execution_detail(e, now=T0 + 10)
    assert "handle:       a1b2c3" in text
    assert "status:       Failed" in text
    assert "outcome:      exit status 3" in text
    assert "created:      2026-11-26 14:03:07" in text
    assert "duration:     1.2s" in text
    assert "timeout:      30.0s" in text
    assert text.endswith("params:\n  NAME  VALUE\n  m     hi")


def test_history_table(utc: None) -> None:
    assert render.history_table([]) == "no executions"
    rows = render.history_table([execution(), execution("Cancelled", handle="ffff")]).splitlines()
    assert rows[0].split() == ["HANDLE", "WORKFLOW", "STATUS", "CREATED", "DURATION", "OUTCOME"]
    assert rows[1] == "a1b2c3  simple_echo  Completed  2026-11-26 14:03:07  1.2s"
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
    assert "uptime:    3m04s" in text
    assert "storage:   ERROR: disk full" in text


# --------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    ("e", "code"),
    [
        (execution("Completed", exit_code=0), 0),
        (execution("Failed", exit_code=3, reason="exit status 3"), 3),
        (execution("Failed", signal=9, reason="killed by signal 9"), 137),
        (execution("Failed", signal=15, reason="timed out after 30s"), EXIT_TIMEOUT),
        (execution("Failed", exit_code=1, reason="timed out after 1m00s"), EXIT_TIMEOUT),
        (execution("Cancelled", signal=15), EXIT_CANCELLED),
        (execution("Failed", reason="daemon died"), EXIT_FAILED),
        (execution("Failed", started_at=None, reason="spawn error: ENOENT"), EXIT_FAILED),
        (execution("Failed", exit_code=0, reason="odd"), EXIT_FAILED),
        (execution("Failed", exit_code=300), EXIT_FAILED),
        (execution("Running", ended_at=None), EXIT_ERROR),
    ],
)
def test_exit_code_for(e: Execution, code: int) -> None:
    assert exit_code_for(e) == code


@pytest.mark.parametrize(
    ("code", "exit"),
    [
        ("invalid_params", 65),
        ("not_found", 66),
        ("ambiguous", 66),
        ("unreachable", 69),
        ("disconnected", 69),
        ("shutting_down", 69),
        ("internal", 1),
        ("not_runnable", 1),
    ],
)
def test_error_exit_code(code: str, exit: int) -> None:
    assert error_exit_code(WfmError(code, "x")) == exit


def test_exit_codes_are_documented() -> None:
    epilog = build_parser().epilog or ""
    for code in (0, 1, 2, 65, 66, 69, 124, 125, 130):
        assert f"\n  {code} " in epilog
    assert "128+N" in epilog


@pytest.mark.parametrize("columns", ["60", "0", "-5", "wide", None])
def test_help_width_is_the_one_argparse_would_pick(
    columns: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert help_width() == shutil.get_terminal_size().columns - 2


def test_one_line() -> None:
    assert one_line("bad params:\n  count: too big\n  mode: unknown\n") == (
        "bad params: count: too big; mode: unknown"
    )


# --------------------------------------------------------------------------- arguments


def test_parse_time(utc: None) -> None:
    now = T0
    assert parse_time("2h", now) == now - 7200
    assert parse_time("30m", now) == now - 1800
    assert parse_time("3d", now) == now - 3 * 86400
    assert parse_time("1W", now) == now - 7 * 86400
    day = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    assert parse_time("2026-11-26", now) == day
    assert parse_time("2026-11-26T14:03:07", now) == day + 14 * 3600 + 3 * 60 + 7
    assert parse_time("2026-11-26 14:03", now) == day + 14 * 3600 + 3 * 60
    assert parse_time("2026-11-26T14:00+01:00", now) == day + 13 * 3600
    assert parse_time("today", now) == day
    assert parse_time("yesterday", now) == parse_time("today", now) - 86400
    for bad in ["", "soon", "2h ago", "2026-13-01", "-2h", "12"]:
        with pytest.raises(ValueError, match="invalid time"):
            parse_time(bad, now)


def test_parse_time_naive_is_local(utc: None) -> None:
    os.environ["TZ"] = "Etc/GMT-2"  # POSIX sign: two hours east of UTC
    time.tzset()
    day = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    assert parse_time("2026-11-26") == day - 2 * 3600


def test_parse_duration() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("90s") == 90
    assert parse_duration("1.5m") == 90
    assert parse_duration("2h") == 7200
    for bad in ["", "m", "-5", "5y"]:
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)


def test_parse_param() -> None:
    assert parse_param("message=hello world") == ("message", "hello world")
    assert parse_param("expr=a=b") == ("expr", "a=b")
    assert parse_param("empty=") == ("empty", "")
    for bad in ["novalue", "=x", " =x"]:
        with pytest.raises(ValueError, match="NAME=VALUE"):
            parse_param(bad)


def test_params_json_and_merge() -> None:
    assert parse_params_json('{"count": 3, "flag": true}') == {"count": 3, "flag": True}
    for bad in ["[1]", "{bad", '"s"']:
        with pytest.raises(ValueError, match="--params-json"):
            parse_params_json(bad)
    merged = merge_params({"count": 3, "m": "json"}, [("m", "first"), ("m", "last")])
    assert merged == {"count": 3, "m": "last"}
    assert merge_params(None, None) == {}


def parse(*argv: str) -> Any:
    return build_parser().parse_args(list(argv))


def test_global_options_before_or_after_the_command() -> None:
    for argv in (
        ["--json", "--socket", "/s", "status", "ab"],
        ["status", "ab", "--json", "--socket", "/s"],
        ["--json", "status", "--socket", "/s", "ab"],
    ):
        args = parse(*argv)
        assert (args.command, args.handle, args.json, args.socket) == ("status", "ab", True, "/s")
    args = parse("ping")
    assert not hasattr(args, "json") and not hasattr(args, "socket")


@pytest.mark.parametrize("command", HANDLE_COMMANDS)
def test_handle_command_lines_parse_as_argparse_would(command: str) -> None:
    # Equal attributes: this also fails as soon as one of these commands gets an option (its
    # default would be missing) or another argument (argparse would refuse the line).
    for handle in ("ab", "987f277b-1156-43d4-83ac-b6469ac75dc2", "", "a b", "x=1", "@f", "a-"):
        simple = parse_simple([command, handle])
        assert simple is not None
        assert vars(simple) == vars(parse(command, handle))


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["status"],
        ["status", "-h"],
        ["status", "--json"],
        ["status", "ab", "--json"],
        ["--json", "status", "ab"],
        ["status", "--", "ab"],
        ["status", "-1"],
        ["status", "ab", "cd"],
        ["ping"],
        ["logs", "ab"],
        ["run", "ab"],
        ["Status", "ab"],
        ["stat", "ab"],
    ],
)
def test_other_command_lines_go_to_argparse(argv: list[str]) -> None:
    assert parse_simple(argv) is None


def test_run_arguments() -> None:
    args = parse(
        "run",
        "echo",
        "-p",
        "m=hi",
        "--param",
        "n=2",
        "--params-json",
        '{"n": 1}',
        "--timeout",
        "2m",
        "-f",
    )
    assert args.workflow == "echo"
    assert args.params == [("m", "hi"), ("n", "2")]
    assert merge_params(args.params_json, args.params) == {"n": "2", "m": "hi"}
    assert args.timeout == 120
    assert args.follow and not args.wait


def test_history_and_logs_arguments(utc: None) -> None:
    args = parse("history", "--status", "failed", "--since", "2026-11-26", "--limit", "5")
    assert (args.status, args.limit, args.offset) == ("Failed", 5, 0)
    assert args.since == datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    args = parse("logs", "ab", "-n", "20", "-f")
    assert (args.tail, args.after, args.follow) == (20, None, True)
    assert parse("logs", "ab", "--after", "-1").after == -1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "echo", "-p", "oops"], "expected NAME=VALUE"),
        (["run", "echo", "--params-json", "[]"], "expected a JSON object"),
        (["run", "echo", "--follow", "--wait"], "not allowed with"),
        (["run", "echo", "--timeout", "soon"], "invalid duration"),
        (["history", "--status", "done"], "invalid status"),
        (["history", "--since", "whenever"], "invalid time"),
        (["history", "--limit", "0"], "must be at least 1"),
        (["logs", "ab", "-n", "3", "--after", "4"], "not allowed with"),
        (["status"], "required"),
        ([], "required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "exit codes:" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "wfmctl 0.1.0"


# --------------------------------------------------------------------------- no daemon


def test_client_without_a_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing.sock"
    with pytest.raises(DaemonUnreachable) as info:
        Client(path)
    assert isinstance(info.value, WfmError)
    assert info.value.code == "unreachable"
    assert str(path) in info.value.message
    assert "start it with: wfmd" in info.value.message


def test_client_refused(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # bound, never listening: what a dead daemon leaves behind
        with pytest.raises(DaemonUnreachable, match="start it with: wfmd"):
            Client(path, timeout=5)


def test_client_uses_wfm_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFM_SOCKET", str(tmp_path / "env.sock"))
    with pytest.raises(DaemonUnreachable, match=r"env\.sock"):
        Client()


def test_cli_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "nothing.sock"
    proc = subprocess.run(
        [sys.executable, "-m", "wfmctl", "status", "abc", "--socket", str(path)],
        capture_output=True,
        text=True,
        env=wfmctl_env(),
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == EXIT_UNAVAILABLE == 69
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("wfmctl: error: cannot reach wfmd at ")
    assert str(path) in lines[0]
    assert "is wfmd running? start it with: wfmd" in lines[0]


def test_cli_unreachable_json_through_env(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wfmctl", "--json", "ping"],
        capture_output=True,
        text=True,
        env=wfmctl_env(WFM_SOCKET=str(tmp_path / "env.sock")),
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == 69
    assert json.loads(proc.stdout)["code"] == "unreachable"
    assert len(proc.stderr.splitlines()) == 1


# --------------------------------------------------------------------------- import weight

HEAVY = ("trio", "apsw")


def test_import_wfmctl_stays_light() -> None:
    check = (
        "import sys, wfmctl, wfmctl.cli.main, wfmctl.cli.commands, wfmctl.cli.render; "
        "assert 'trio' not in sys.modules and 'apsw' not in sys.modules, sorted(sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        env=wfmctl_env(),
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr


def test_status_skips_argparse(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wfmctl", "status", "ab"],
        capture_output=True,
        text=True,
        env=wfmctl_env(WFM_SOCKET=str(tmp_path / "nothing.sock")),
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == EXIT_UNAVAILABLE, proc.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "wfmctl.cli.commands" in imported  # the check below looks at the right output
    assert not imported & {"argparse", "shutil", "json", "dataclasses"}


def test_help_stays_light() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wfmctl", "--help"],
        capture_output=True,
        text=True,
        env=wfmctl_env(),
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: wfmctl" in proc.stdout
    # -X importtime lines: "import time: self [us] | cumulative | imported package"
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "wfmctl.cli.main" in imported  # the check below looks at the right output
    heavy = {m for m in imported if m.split(".")[0] in HEAVY}
    assert not heavy
