"""The real `wfmctl` executable against the real daemon: output, JSON, exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import WFMCTL, Daemon, metadata, write_workflow

from wfmctl.cli.exit_codes import (
    EXIT_CANCELLED,
    EXIT_DATAERR,
    EXIT_FAILED,
    EXIT_NOINPUT,
    EXIT_OK,
    EXIT_SIGNAL_BASE,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
)

HANDLE_LENGTH = 36  # a UUID


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == EXIT_OK, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `wfmctl: error: ...` line a failed command prints on stderr."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("wfmctl: error: "), lines[0]
    return lines[0]


def run_handle(daemon: Daemon, *args: str) -> str:
    """`wfmctl run ...` without waiting; returns the handle it prints."""
    handle = ok(daemon.wfmctl("run", *args)).strip()
    assert len(handle) == HANDLE_LENGTH, handle
    return handle


# --------------------------------------------------------------------------- basics


def test_ping_and_workflows(daemon: Daemon) -> None:
    assert ok(daemon.wfmctl("ping"))
    pong = as_json(daemon.wfmctl("ping", "--json"))
    assert pong["pid"] == daemon.proc.pid  # type: ignore[union-attr]
    assert pong["socket"] == str(daemon.socket)
    assert as_json(daemon.wfmctl("--json", "ping"))["type"] == "pong"  # either side

    listing = ok(daemon.wfmctl("workflows"))
    for workflow_id in ("always_fails", "echo_params", "multi_phase"):
        assert workflow_id in listing
    doc = as_json(daemon.wfmctl("workflows", "--json"))
    ids = {w["id"] for w in doc["workflows"]}
    assert {"always_fails", "echo_params", "multi_phase"} <= ids
    detail = ok(daemon.wfmctl("workflows", "echo_params"))
    assert "--message" in detail and "message" in detail
    one = as_json(daemon.wfmctl("workflows", "echo_params", "--json"))
    assert one["id"] == "echo_params"
    assert [f["name"] for f in one["fields"]] == ["message", "count"]


def test_run_wait_status_logs_params(daemon: Daemon) -> None:
    result = daemon.wfmctl("run", "echo_params", "-p", "message=hi", "-p", "count=2", "--wait")
    out = ok(result).splitlines()
    handle = out[0]
    assert len(handle) == HANDLE_LENGTH
    # The handle once, then one status line.
    assert len(out) == 2 and out[-1].startswith("echo_params  Completed in ")

    failed = daemon.wfmctl("run", "always_fails", "--wait")
    assert failed.returncode == 3, (failed.stdout, failed.stderr)
    assert "Failed" in failed.stdout
    failed = daemon.wfmctl("run", "always_fails", "-p", "code=7", "--wait")
    assert failed.returncode == 7

    status = ok(daemon.wfmctl("status", handle[:8]))
    assert handle in status and "Completed" in status
    doc = as_json(daemon.wfmctl("status", handle[:8], "--json"))
    assert doc["handle"] == handle
    assert doc["status"] == "Completed"
    assert doc["params"] == {"message": "hi", "count": "2"}

    lines = ok(daemon.wfmctl("logs", handle)).splitlines()
    assert lines[:2] == ["hi", "hi"]
    assert lines[2].startswith("argv: ")
    assert lines[3] == f"WFM_EXECUTION_ID: {handle}"
    assert len(lines) == 4
    assert ok(daemon.wfmctl("logs", "-n", "2", handle[:8])).splitlines() == lines[-2:]
    assert ok(daemon.wfmctl("logs", "--after", "1", handle)).splitlines() == lines[2:]
    page = as_json(daemon.wfmctl("logs", handle, "--json"))
    assert [e["seq"] for e in page["entries"]] == [0, 1, 2, 3]
    assert [e["line"] for e in page["entries"]] == lines
    assert page["finished"] is True
    tail = as_json(daemon.wfmctl("logs", "-n", "2", handle, "--json"))
    assert [e["seq"] for e in tail["entries"]] == [2, 3]

    # Following a finished execution prints everything and ends at once.
    followed = daemon.wfmctl("logs", "-f", handle, timeout=20)
    assert ok(followed).splitlines() == lines
    assert "Completed" in followed.stderr
    stream = json_lines(ok(daemon.wfmctl("logs", "-f", handle, "--json", timeout=20)))
    assert [e["line"] for e in stream[:-1]] == lines
    assert stream[-1]["type"] == "finished"
    assert stream[-1]["execution"]["status"] == "Completed"

    params = ok(daemon.wfmctl("params", handle))
    assert "message" in params and "hi" in params
    assert as_json(daemon.wfmctl("params", handle, "--json"))["params"] == {
        "message": "hi",
        "count": "2",
    }


def test_follow_a_running_multi_phase_run(daemon: Daemon) -> None:
    handle = run_handle(daemon, "multi_phase", "-p", "phases=2", "-p", "delay=0.02")
    followed = daemon.wfmctl("logs", "-f", handle, timeout=60)
    after = ok(daemon.wfmctl("logs", handle))
    assert ok(followed) == after
    assert "Completed" in followed.stderr
    assert "multi_phase: all phases completed" in after

    # The same through JSON: every seq exactly once, in order, then the final frame.
    handle = run_handle(daemon, "multi_phase", "-p", "phases=2", "-p", "delay=0.02")
    stream = json_lines(ok(daemon.wfmctl("logs", "-f", handle, "--json", timeout=60)))
    final = stream.pop()
    assert final["type"] == "finished"
    assert final["execution"]["status"] == "Completed"
    page = as_json(daemon.wfmctl("logs", handle, "--json"))
    assert stream == page["entries"]
    assert [e["seq"] for e in stream] == list(range(final["execution"]["log_count"]))
    assert any(e["type"] == "phase_started" for e in stream)

    # `run --follow` streams too, and exits with the workflow's status.
    result = daemon.wfmctl("run", "multi_phase", "-p", "phases=1", "-p", "delay=0", "-f")
    out = ok(result).splitlines()
    assert len(out[0]) == HANDLE_LENGTH
    assert out[1:] == ok(daemon.wfmctl("logs", out[0])).splitlines()


def test_history_filters(daemon: Daemon) -> None:
    good = [
        ok(daemon.wfmctl("run", "echo_params", "-p", f"message=m{i}", "--wait")).split()[0]
        for i in range(2)
    ]
    bad = daemon.wfmctl("run", "always_fails", "--wait").stdout.split()[0]
    doc = as_json(daemon.wfmctl("history", "--workflow", "echo_params", "--status", "Completed",
                                "--json"))  # fmt: skip
    assert [e["handle"] for e in doc["executions"]] == good[::-1]
    text = ok(daemon.wfmctl("history", "--workflow", "echo_params", "--status", "completed"))
    assert all(h[:8] in text for h in good) and bad[:8] not in text
    failed = as_json(daemon.wfmctl("history", "--status", "Failed", "--json"))
    assert [e["handle"] for e in failed["executions"]] == [bad]
    everything = as_json(daemon.wfmctl("history", "--json"))
    assert [e["handle"] for e in everything["executions"]] == [bad, *good[::-1]]
    first = as_json(daemon.wfmctl("history", "--limit", "1", "--json"))
    assert [e["handle"] for e in first["executions"]] == [bad]
    assert first["next_before"] == bad
    rest = as_json(daemon.wfmctl("history", "--before", bad[:8], "--json"))
    assert [e["handle"] for e in rest["executions"]] == good[::-1]
    assert as_json(daemon.wfmctl("history", "--since", "1h", "--json"))["executions"]
    assert as_json(daemon.wfmctl("history", "--until", "1h", "--json"))["executions"] == []


def test_cancel_and_wait(daemon: Daemon, workflow_dir: Path) -> None:
    write_workflow(
        workflow_dir,
        "sleeper",
        'print("sleeping", flush=True)\ntime.sleep(60)\n',
        metadata("sleeper"),
    )
    handle = run_handle(daemon, "sleeper")
    deadline = time.monotonic() + 15
    while as_json(daemon.wfmctl("status", handle, "--json"))["status"] != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancelled = as_json(daemon.wfmctl("cancel", handle[:8], "--json"))
    assert cancelled["handle"] == handle
    waited = daemon.wfmctl("wait", handle, timeout=30)
    assert waited.returncode == EXIT_CANCELLED, (waited.stdout, waited.stderr)
    assert "Cancelled" in waited.stdout
    doc = json.loads(daemon.wfmctl("wait", handle, "--json").stdout)
    assert doc["status"] == "Cancelled"
    again = daemon.wfmctl("cancel", handle)
    assert again.returncode != 0
    one_error_line(again)

    timed = daemon.wfmctl("run", "sleeper", "--timeout", "0.5", "--wait", timeout=30)
    assert timed.returncode == EXIT_TIMEOUT, (timed.stdout, timed.stderr)
    followed = daemon.wfmctl("run", "sleeper", "--timeout", "0.5", "--follow", timeout=30)
    assert followed.returncode == EXIT_TIMEOUT, (followed.stdout, followed.stderr)
    assert followed.stdout.splitlines()[1:] == ["sleeping"]
    handle = followed.stdout.split()[0]
    assert daemon.wfmctl("wait", handle).returncode == EXIT_TIMEOUT
    assert "ended by:     timeout" in ok(daemon.wfmctl("status", handle))


def test_exit_codes_of_other_endings(daemon: Daemon, workflow_dir: Path) -> None:
    """Killed by a signal: 128+N; could not start: 125. (Exit statuses, timeouts and cancels
    are in the tests above.)"""
    body = 'print("bye", flush=True)\nos.kill(os.getpid(), 9)\n'
    write_workflow(workflow_dir, "killed", body, metadata("killed"))
    vanishing = write_workflow(workflow_dir, "vanishing", "", metadata("vanishing"))
    ok(daemon.wfmctl("workflows", "--rescan"))
    vanishing.unlink()  # known to wfmd, gone when it runs

    killed = daemon.wfmctl("run", "killed", "--follow", timeout=30)
    assert killed.returncode == EXIT_SIGNAL_BASE + 9, (killed.stdout, killed.stderr)
    assert killed.stdout.splitlines()[1:] == ["bye"]
    handle = killed.stdout.split()[0]
    assert daemon.wfmctl("wait", handle).returncode == EXIT_SIGNAL_BASE + 9
    assert "ended by:     signal" in ok(daemon.wfmctl("status", handle))

    spawn = daemon.wfmctl("run", "vanishing", "--wait", timeout=30)
    assert spawn.returncode == EXIT_FAILED, (spawn.stdout, spawn.stderr)
    handle = spawn.stdout.split()[0]
    assert daemon.wfmctl("wait", handle).returncode == EXIT_FAILED
    assert "ended by:     spawn_error" in ok(daemon.wfmctl("status", handle))


# --------------------------------------------------------------------------- errors


def test_errors_exit_codes_and_one_line(daemon: Daemon, tmp_path: Path) -> None:
    for args in (("status", "deadbeef"), ("logs", "deadbeef"), ("cancel", "0000"),
                 ("params", "ffff"), ("wait", "abcd"), ("run", "no_such_workflow")):  # fmt: skip
        result = daemon.wfmctl(*args)
        assert result.returncode == EXIT_NOINPUT, (args, result.stdout, result.stderr)
        one_error_line(result)
        assert result.stdout == ""
        as_doc = daemon.wfmctl(*args, "--json")
        assert as_doc.returncode == EXIT_NOINPUT
        error = json.loads(as_doc.stdout)
        assert error["type"] == "error" and error["code"] == "not_found"

    invalid = daemon.wfmctl("run", "echo_params", "-p", "bogus=1")
    assert invalid.returncode == EXIT_DATAERR
    assert "bogus" in one_error_line(invalid)
    missing = daemon.wfmctl("run", "echo_params")
    assert missing.returncode == EXIT_DATAERR
    assert "message" in one_error_line(missing)

    # An ambiguous prefix: of 17 handles, two share their first hex digit (pigeonhole).
    with daemon.client() as client:
        handles = [client.run("echo_params", {"message": str(i)}).handle for i in range(17)]
        for handle in handles:
            client.wait(handle)
    first_chars = [h[0] for h in handles]
    shared = next(c for c in first_chars if first_chars.count(c) > 1)
    ambiguous = daemon.wfmctl("status", shared)
    assert ambiguous.returncode == EXIT_NOINPUT
    # The matches are listed, one per line, under the error.
    first, *matches = ambiguous.stderr.splitlines()
    assert first.startswith("wfmctl: error: ") and "more than one" in first
    sharing = [h for h in handles if h.startswith(shared)]
    assert [line.split()[0] for line in matches] == sorted(sharing)[:5] + (
        ["..."] if len(sharing) > 5 else []
    )

    usage = daemon.wfmctl("run")
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr


def test_unreachable_daemon_exits_69(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "wfmd.sock"
    env = dict(os.environ, WFM_SOCKET=str(missing))
    for args in (["ping"], ["status", "abc"], ["run", "echo_params", "-p", "message=x"]):
        result = subprocess.run(
            [WFMCTL, *args], env=env, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == EXIT_UNAVAILABLE, (args, result.stderr)
        assert str(missing) in one_error_line(result)
    result = subprocess.run(
        [WFMCTL, "--socket", str(missing), "ping", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == EXIT_UNAVAILABLE
    assert json.loads(result.stdout)["code"] == "unreachable"
    one_error_line(result)
    # A socket file nobody listens on (left by a dead daemon) is just as unreachable.
    stale = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()
    result = subprocess.run(
        [WFMCTL, "--socket", str(stale), "ping"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == EXIT_UNAVAILABLE
    one_error_line(result)


# --------------------------------------------------------------------------- encodings, pipes


def test_output_that_the_terminal_cannot_encode(daemon: Daemon, workflow_dir: Path) -> None:
    body = """
print("café ☃", flush=True)
sys.stdout.buffer.write(b"\\xff raw\\n")
sys.stdout.flush()
for i in range(150):
    print(f"n {i}", flush=True)
    time.sleep(0.01)
"""
    write_workflow(workflow_dir, "unicode", body, metadata("unicode"))
    handle = run_handle(daemon, "unicode")
    env = dict(os.environ, WFM_SOCKET=str(daemon.socket))
    # Piped into `head` while it runs: exits 141 quietly, no traceback.
    piped = subprocess.run(
        f"{WFMCTL} logs -f {handle} | head -n 2; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert piped.stdout == "café ☃\n\ufffd raw\n"
    assert piped.returncode == 141, piped.stderr
    assert piped.stderr == ""
    ok(daemon.wfmctl("wait", handle, timeout=30))
    # A terminal that cannot show the text: replaced, not a crash.
    ascii_env = dict(env, PYTHONIOENCODING="ascii")
    plain = subprocess.run(
        [WFMCTL, "logs", "-n", "3", handle], env=ascii_env, capture_output=True, timeout=30
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines() == [b"n 147", b"n 148", b"n 149"]
    plain = subprocess.run([WFMCTL, "logs", handle], env=ascii_env, capture_output=True, timeout=30)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines()[:2] == [b"caf? ?", b"? raw"]


def test_json_output_keeps_text_whatever_the_terminal_encoding(daemon: Daemon) -> None:
    handle = daemon.run_and_wait("echo_params", message="café ☃")
    env = dict(os.environ, WFM_SOCKET=str(daemon.socket), PYTHONIOENCODING="ascii")
    result = subprocess.run(
        [WFMCTL, "logs", handle, "--json"], env=env, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    page = json.loads(result.stdout)
    assert page["entries"][0]["line"] == "café ☃"
