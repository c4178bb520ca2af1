"""wfmctl's command line without a daemon: argument parsing, usage errors and exit codes."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from test_cli_support import T0, execution, time_zone

from wfmctl import WfmError
from wfmctl.cli import commands
from wfmctl.cli.args import (
    merge_params,
    parse_duration,
    parse_param,
    parse_params_json,
    parse_time,
)
from wfmctl.cli.exit_codes import (
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    error_exit_code,
    exit_code_for,
)
from wfmctl.cli.main import main, one_line
from wfmctl.cli.parser import HANDLE_COMMANDS, build_parser, help_width, parse_simple
from wfmctl.protocol import Execution


@pytest.fixture
def utc() -> Iterator[None]:
    with time_zone("UTC"):
        yield


# --------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    ("e", "code"),
    [
        # From daemons older than `ended_by`: the reason tells a timeout.
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
        # With `ended_by` the reason's wording no longer matters.
        (execution("Failed", signal=15, reason="stopped", ended_by="timeout"), EXIT_TIMEOUT),
        (execution("Failed", exit_code=3, reason="timed out?", ended_by="exit"), 3),
        (execution("Failed", exit_code=0, ended_by="exit"), EXIT_FAILED),
        (execution("Failed", signal=9, reason="timed out?", ended_by="signal"), 137),
        (execution("Failed", ended_by="signal"), EXIT_FAILED),
        (execution("Cancelled", signal=15, ended_by="cancelled"), EXIT_CANCELLED),
        (execution("Failed", signal=9, ended_by="storage"), EXIT_FAILED),  # wfmd's signal
        (execution("Failed", ended_by="daemon_died"), EXIT_FAILED),
        (execution("Failed", started_at=None, ended_by="spawn_error"), EXIT_FAILED),
        (execution("Failed", exit_code=2, ended_by="internal"), EXIT_FAILED),
        # A word this wfmctl does not know: the workflow's own status or signal, if any.
        (execution("Failed", signal=9, ended_by="oom_killed"), 137),
        (execution("Failed", exit_code=4, ended_by="some_new_word"), 4),
        (execution("Failed", ended_by="some_new_word"), EXIT_FAILED),
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


def test_parse_time_naive_is_local() -> None:
    day = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    with time_zone("Etc/GMT-2"):  # POSIX sign: two hours east of UTC
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


# --------------------------------------------------------------------------- registries

# A subcommand is named in three places: the parser's add(...) calls, commands.COMMANDS (its
# function) and, if it takes only a handle, parser.HANDLE_COMMANDS (parsed without argparse).


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    """The parser's subcommands by name (argparse has no public way to list them)."""
    [subparsers] = [
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    return dict(subparsers.choices)


def test_every_subcommand_has_a_command_function_and_vice_versa() -> None:
    assert sorted(subcommand_parsers()) == sorted(commands.COMMANDS)


def test_handle_commands_are_the_subcommands_that_take_only_a_handle() -> None:
    common = {"help", "json", "socket", "raw", "no_color"}  # on every subcommand
    only_a_handle = {
        name
        for name, parser in subcommand_parsers().items()
        if {action.dest for action in parser._actions} - common == {"handle"}
    }
    assert only_a_handle == set(HANDLE_COMMANDS)
