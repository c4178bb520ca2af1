"""Handles as people type and read them: short prefixes in tables, `@last`, the matches of
an ambiguous prefix, "did you mean" for a mistyped workflow, one word per state."""

from __future__ import annotations

import json
import subprocess

from conftest import WFMCTL, Daemon
from test_cli import ok, run_handle
from test_cli_terminal import on_terminal

from wfmctl import WfmError, protocol
from wfmctl.cli import render
from wfmctl.cli.exit_codes import EXIT_NOINPUT, EXIT_USAGE


def test_history_shows_short_handles_full_and_json_whole(daemon: Daemon) -> None:
    handles = [daemon.run_and_wait("echo_params", message=str(i)) for i in range(3)]
    rows = ok(daemon.wfmctl("history")).splitlines()
    assert rows[0].split()[:2] == ["HANDLE", "WORKFLOW"]
    assert [row.split()[0] for row in rows[1:]] == [h[:8] for h in reversed(handles)]
    full = ok(daemon.wfmctl("history", "--full")).splitlines()
    assert [row.split()[0] for row in full[1:]] == list(reversed(handles))
    doc = json.loads(ok(daemon.wfmctl("history", "--json")))
    assert [e["handle"] for e in doc["executions"]] == list(reversed(handles))


def test_short_handles_grow_only_where_rows_would_share_them() -> None:
    handles = ["abcdef12-0000", "abcdef12-1111", "abcdef13-2222", "12345678-9999"]
    assert render.short_handles(handles) == [
        "abcdef12-0",
        "abcdef12-1",
        "abcdef13",
        "12345678",
    ]


def test_a_history_row_fits_80_columns_on_a_terminal(daemon: Daemon) -> None:
    daemon.run_and_wait("always_fails")  # the longest outcome of the examples
    daemon.run_and_wait("echo_params", message="x")
    shown = on_terminal(daemon.socket, "history", columns=80)
    assert shown.returncode == 0, shown
    lines = shown.stdout.splitlines()
    assert len(lines) == 3
    assert all(len(line) <= 80 for line in lines), lines
    assert "always_fails  Failed" in lines[2]


def test_at_last_wherever_a_handle_is_accepted(daemon: Daemon) -> None:
    failed = daemon.run_and_wait("always_fails")
    echoed = daemon.run_and_wait("echo_params", message="hi")
    assert echoed in ok(daemon.wfmctl("status", "@last"))
    assert failed in ok(daemon.wfmctl("status", "@last:always_fails"))
    assert json.loads(ok(daemon.wfmctl("params", "@last", "--json")))["handle"] == echoed
    assert ok(daemon.wfmctl("logs", "-n", "1", "@last")).strip() == f"WFM_EXECUTION_ID: {echoed}"
    assert "Completed" in ok(daemon.wfmctl("wait", "@last"))
    # Over the protocol, through the Python client.
    with daemon.client() as client:
        assert client.status(protocol.LAST_HANDLE).handle == echoed
        assert client.status("@last:always_fails").handle == failed
        for bad in ("@last:nothing_like_it", "@lastly"):
            try:
                client.status(bad)
            except WfmError as err:
                assert err.code == protocol.ErrorCode.NOT_FOUND, err
            else:
                raise AssertionError(f"{bad} resolved")
    missing = daemon.wfmctl("status", "@last:nothing_like_it")
    assert missing.returncode == EXIT_NOINPUT
    assert "no execution of workflow 'nothing_like_it' yet" in missing.stderr


def test_at_last_follows_the_newest_run(daemon: Daemon) -> None:
    handle = run_handle(daemon, "multi_phase", "-p", "phases=1", "-p", "delay=0.01")
    followed = daemon.wfmctl("logs", "-f", "@last:multi_phase")
    assert ok(followed) and f"{handle[:8]}  multi_phase  Completed" in followed.stderr


def test_a_mistyped_workflow_gets_did_you_mean(daemon: Daemon) -> None:
    for args in (["run", "echo_param"], ["workflows", "echo_parms"]):
        result = daemon.wfmctl(*args)
        assert result.returncode == EXIT_NOINPUT, result
        assert "did you mean 'echo_params'?" in result.stderr, result.stderr
    # history of an unknown workflow: empty, with a hint (its runs may outlive it).
    empty = daemon.wfmctl("history", "--workflow", "echo_parms")
    assert empty.returncode == 0 and empty.stdout.strip() == "no executions"
    assert "did you mean 'echo_params'?" in empty.stderr
    far = daemon.wfmctl("run", "zzz")
    assert far.returncode == EXIT_NOINPUT and "did you mean" not in far.stderr


def test_one_word_per_state(daemon: Daemon) -> None:
    text = ok(daemon.wfmctl("ping"))
    assert "0 Running, 0 NotStarted" in text
    assert "queued" not in text
    helped = subprocess.run(
        [WFMCTL, "history", "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0
    flat = " ".join(helped.stdout.split())
    assert ", ".join(protocol.ALL_STATUSES) in flat
    bad = daemon.wfmctl("history", "--status", "queued")
    assert bad.returncode == EXIT_USAGE and "NotStarted" in bad.stderr
