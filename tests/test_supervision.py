"""Supervision through the real daemon: process groups, cancel, grace, timeouts, the
concurrency limit, pipes held open by grandchildren, argv and environment, spawn failures."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import (
    Daemon,
    MakeDaemon,
    alive,
    group_members,
    metadata,
    read_pids,
    text_field,
    wait_gone,
    write_workflow,
)

from wfmctl import WfmError
from wfmctl.protocol import Execution

# Bound on waiting for a status: generous for a loaded 2-core machine, still short.
STATUS_TIMEOUT = 15.0


def wait_for_status(daemon: Daemon, handle: str, status: str) -> Execution:
    deadline = time.monotonic() + STATUS_TIMEOUT
    with daemon.client() as client:
        while time.monotonic() < deadline:
            execution = client.status(handle)
            if execution.status == status:
                return execution
            time.sleep(0.01)
    raise AssertionError(f"{handle} not {status} within {STATUS_TIMEOUT}s: {execution}")


# A workflow that starts a grandchild in its own process group, records both pids, prints
# "ready" and sleeps. `pids_file` is where the pids go.
def spawner_body(pids_file: Path, *, ignore_term: bool = False, grandchild_sleep: int = 60) -> str:
    return f"""
import signal, subprocess
if {ignore_term!r}:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(
    [sys.executable, "-c", "import signal, time\\n"
     "if {ignore_term!r}: signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
     "time.sleep({grandchild_sleep})"],
)
with open({str(pids_file)!r} + ".tmp", "w") as f:
    f.write(f"{{os.getpid()}} {{child.pid}}\\n")
os.rename({str(pids_file)!r} + ".tmp", {str(pids_file)!r})
print("ready", flush=True)
time.sleep(60)
"""


# --------------------------------------------------------------------------- cancel, grace


def test_cancel_kills_the_whole_process_group(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    pids_file = tmp_path / "pids"
    write_workflow(workflow_dir, "spawner", spawner_body(pids_file), metadata("spawner"))
    daemon = make_daemon(extra_args=["--cancel-grace", "1"]).start()
    with daemon.client() as client:
        execution = client.run("spawner")
        pids = read_pids(pids_file)
        assert all(alive(p) for p in pids)
        assert os.getpgid(pids[1]) == pids[0]  # the grandchild is in the workflow's group
        wait_for_status(daemon, execution.handle, "Running")
        cancelled = client.cancel(execution.handle)
        assert cancelled.handle == execution.handle
        ended = client.wait(execution.handle)
    assert ended.status == "Cancelled"
    assert ended.reason == "cancelled by request"
    assert ended.signal == signal.SIGTERM
    assert ended.ended_at is not None and ended.started_at is not None
    wait_gone(pids)
    assert group_members(pids[0]) == []
    with daemon.client() as client:
        lines = [e.line for e in client.logs(execution.handle).entries]
        assert lines == ["ready"]  # committed before the ending
        with pytest.raises(WfmError) as info:
            client.cancel(execution.handle)
        assert info.value.code == "not_runnable"


def test_sigterm_ignoring_workflow_is_killed_after_grace(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    pids_file = tmp_path / "pids"
    body = spawner_body(pids_file, ignore_term=True)
    write_workflow(workflow_dir, "stubborn", body, metadata("stubborn"))
    daemon = make_daemon(extra_args=["--cancel-grace", "1"]).start()
    with daemon.client() as client:
        execution = client.run("stubborn")
        pids = read_pids(pids_file)
        wait_for_status(daemon, execution.handle, "Running")
        started = time.monotonic()
        client.cancel(execution.handle)
        ended = client.wait(execution.handle)
        elapsed = time.monotonic() - started
    assert ended.status == "Cancelled"
    assert ended.signal == signal.SIGKILL
    assert ended.exit_code is None
    assert 0.9 <= elapsed < 6, elapsed
    wait_gone(pids)


def test_timeout_fails_the_run(make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    write_workflow(workflow_dir, "slow", spawner_body(pids_file), metadata("slow"))
    daemon = make_daemon(extra_args=["--cancel-grace", "1"]).start()
    with daemon.client() as client:
        started = time.monotonic()
        execution = client.run("slow", timeout=1)
        assert execution.timeout == 1
        ended = client.wait(execution.handle)
        elapsed = time.monotonic() - started
    assert ended.status == "Failed"
    assert ended.reason is not None and ended.reason.startswith("timed out"), ended.reason
    assert ended.timeout == 1
    assert 0.9 <= elapsed < 6, elapsed
    wait_gone(read_pids(pids_file))


# --------------------------------------------------------------------------- concurrency


def test_concurrency_limit_queues_in_arrival_order(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    body = f"""
name = sys.argv[2]
deadline = time.monotonic() + 30
while not os.path.exists(os.path.join({str(gates)!r}, name)) and time.monotonic() < deadline:
    time.sleep(0.01)
print("ran", name, flush=True)
"""
    write_workflow(workflow_dir, "gated", body, metadata("gated", text_field("name")))
    daemon = make_daemon(extra_args=["--max-concurrent", "1"]).start()
    with daemon.client() as client:
        runs = [client.run("gated", {"name": name}) for name in ("a", "b", "c")]
        assert [r.status for r in runs] == ["NotStarted"] * 3  # as accepted
        wait_for_status(daemon, runs[0].handle, "Running")
        # b and c may go through: they must still wait for a.
        (gates / "b").touch()
        (gates / "c").touch()
        time.sleep(0.3)
        assert [client.status(r.handle).status for r in runs] == [
            "Running",
            "NotStarted",
            "NotStarted",
        ]
        pong = client.ping()
        assert (pong.running, pong.queued) == (1, 2)
        (gates / "a").touch()
        ended = [client.wait(r.handle) for r in runs]
    assert [e.status for e in ended] == ["Completed"] * 3
    for earlier, later in itertools.pairwise(ended):
        assert earlier.ended_at is not None and later.started_at is not None
        assert later.started_at >= earlier.ended_at
    with daemon.client() as client:
        assert [client.logs(e.handle).entries[0].line for e in ended] == [
            "ran a",
            "ran b",
            "ran c",
        ]


def test_endings_do_not_wait_for_the_commit_interval(
    make_daemon: MakeDaemon, workflow_dir: Path
) -> None:
    # Lines may wait up to the interval; an ending (and so each queued run's slot) must not.
    interval = 20.0
    write_workflow(workflow_dir, "hello", "print('hello')\n", metadata("hello"))
    daemon = make_daemon(extra_args=["--max-concurrent", "1", "--commit-interval", str(interval)])
    daemon.start()
    started = time.monotonic()
    with daemon.client() as client:
        runs = [client.run("hello") for _ in range(3)]
        ended = [client.wait(r.handle) for r in runs]
    elapsed = time.monotonic() - started
    assert [(e.status, e.log_count) for e in ended] == [("Completed", 1)] * 3
    assert elapsed < interval / 2, f"three one-line runs took {elapsed:.1f}s"


def test_cancel_a_queued_run(make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    write_workflow(workflow_dir, "spawner", spawner_body(pids_file), metadata("spawner"))
    daemon = make_daemon(extra_args=["--max-concurrent", "1", "--cancel-grace", "1"]).start()
    with daemon.client() as client:
        first = client.run("spawner")
        queued = client.run("spawner")
        read_pids(pids_file)
        assert client.status(queued.handle).status == "NotStarted"
        client.cancel(queued.handle)
        ended = client.wait(queued.handle)
        assert ended.status == "Cancelled"
        assert ended.started_at is None
        client.cancel(first.handle)
        assert client.wait(first.handle).status == "Cancelled"


# --------------------------------------------------------------------------- pipes


def test_grandchild_holding_stdout_does_not_hang_the_execution(
    daemon: Daemon, workflow_dir: Path, tmp_path: Path
) -> None:
    pids_file = tmp_path / "pids"
    body = f"""
import subprocess
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open({str(pids_file)!r}, "w") as f:
    f.write(f"{{os.getpid()}} {{child.pid}}\\n")
print("main child done", flush=True)
"""
    write_workflow(workflow_dir, "leaver", body, metadata("leaver"))
    with daemon.client(timeout=10) as client:
        client.workflows(rescan=True)
        started = time.monotonic()
        execution = client.run("leaver")
        ended = client.wait(execution.handle)
        elapsed = time.monotonic() - started
        lines = [e.line for e in client.logs(execution.handle).entries]
    assert ended.status == "Completed", ended
    assert elapsed < 5, elapsed
    assert lines == ["main child done"]
    wait_gone(read_pids(pids_file))


def test_grandchild_that_left_the_group_does_not_hang_the_execution(
    daemon: Daemon, workflow_dir: Path, tmp_path: Path
) -> None:
    """A grandchild that calls setsid() escapes the group kill; its pipe must not keep the
    execution Running forever."""
    pids_file = tmp_path / "pids"
    body = f"""
import subprocess
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
)
with open({str(pids_file)!r}, "w") as f:
    f.write(f"{{os.getpid()}} {{child.pid}}\\n")
print("main child done", flush=True)
"""
    write_workflow(workflow_dir, "escaper", body, metadata("escaper"))
    try:
        with daemon.client(timeout=10) as client:
            client.workflows(rescan=True)
            started = time.monotonic()
            execution = client.run("escaper")
            ended = client.wait(execution.handle)
            elapsed = time.monotonic() - started
        assert ended.status == "Completed", ended
        assert elapsed < 6, elapsed
    finally:
        for pid in read_pids(pids_file)[1:]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_grandchild_that_left_the_group_is_killed_when_the_execution_ends(
    daemon: Daemon, workflow_dir: Path, tmp_path: Path
) -> None:
    pids_file = tmp_path / "pids"
    body = f"""
import subprocess
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(60)"],
    start_new_session=True,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
with open({str(pids_file)!r}, "w") as f:
    f.write(f"{{os.getpid()}} {{child.pid}}\\n")
"""
    write_workflow(workflow_dir, "detacher", body, metadata("detacher"))
    try:
        with daemon.client(timeout=10) as client:
            client.workflows(rescan=True)
            execution = client.run("detacher")
            assert client.wait(execution.handle).status == "Completed"
        wait_gone(read_pids(pids_file)[1:], timeout=2)
    finally:
        for pid in read_pids(pids_file)[1:]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_chatty_grandchild_that_left_the_group_does_not_hang_the_execution(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    pids_file = tmp_path / "pids"
    ticker = (
        "import time\nfor i in range(150):\n    print('tick', i, flush=True)\n    time.sleep(0.1)"
    )
    body = f"""
import subprocess
child = subprocess.Popen([sys.executable, "-c", {ticker!r}], start_new_session=True)
with open({str(pids_file)!r}, "w") as f:
    f.write(f"{{os.getpid()}} {{child.pid}}\\n")
print("main child done", flush=True)
"""
    write_workflow(workflow_dir, "chatty", body, metadata("chatty"))
    daemon = make_daemon(extra_args=["--cancel-grace", "1"]).start()
    try:
        with daemon.client(timeout=10) as client:
            execution = client.run("chatty")
            read_pids(pids_file)
            deadline = time.monotonic() + 4
            status = client.status(execution.handle)
            while status.status in ("NotStarted", "Running") and time.monotonic() < deadline:
                time.sleep(0.05)
                status = client.status(execution.handle)
        assert status.status == "Completed", status
    finally:
        for pid in read_pids(pids_file)[1:]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- argv, env


def test_execution_id_is_in_the_environment(daemon: Daemon, workflow_dir: Path) -> None:
    body = 'print(os.environ.get("WFM_EXECUTION_ID", "<unset>"), flush=True)\n'
    write_workflow(workflow_dir, "envy", body, metadata("envy"))
    with daemon.client() as client:
        client.workflows(rescan=True)
        execution = client.run("envy")
        assert client.wait(execution.handle).status == "Completed"
        lines = [e.line for e in client.logs(execution.handle).entries]
    assert lines == [execution.handle]


def test_parameters_arrive_verbatim_as_single_argv_elements(
    daemon: Daemon, workflow_dir: Path, tmp_path: Path
) -> None:
    pwned = tmp_path / "pwned"
    values = {
        "shell": f"$(touch {pwned}); `touch {pwned}` | cat > x && echo 'q' \"dq\" ; rm -rf ~ &",
        "newlines": "line one\nline two\n\nline four\r\n",
        "dashes": "--help",
        "dash": "-",
        "empty": "",
        "spaces": "  two  spaces  ",
        "glob": "* ? [a-z] ~user $HOME %PATH% \\ \\\\",
        "unicode": "héllo ☃ 🎉 \u200b",
    }
    fields = [text_field(name) for name in values]
    body = "print(json.dumps(sys.argv), flush=True)\n"
    write_workflow(workflow_dir, "argv_dump", body, metadata("argv_dump", *fields))
    with daemon.client() as client:
        client.workflows(rescan=True)
        execution = client.run("argv_dump", values)
        ended = client.wait(execution.handle)
        assert ended.status == "Completed", ended
        (entry,) = client.logs(execution.handle).entries
        recorded = client.params(execution.handle).params
    argv = json.loads(entry.line)
    expected: list[str] = []
    for name, value in values.items():
        expected += [f"--{name}", value]
    assert argv[1:] == expected
    assert recorded == values
    assert not pwned.exists()


def test_numbers_and_booleans_become_text(daemon: Daemon, workflow_dir: Path) -> None:
    body = "print(json.dumps(sys.argv[1:]), flush=True)\n"
    fields = [text_field("a"), text_field("b"), text_field("c"), text_field("d")]
    write_workflow(workflow_dir, "scalars", body, metadata("scalars", *fields))
    with daemon.client() as client:
        client.workflows(rescan=True)
        execution = client.run("scalars", {"a": 3, "b": 2.5, "c": True, "d": None})
        assert client.wait(execution.handle).status == "Completed"
        (entry,) = client.logs(execution.handle).entries
    assert json.loads(entry.line) == ["--a", "3", "--b", "2.5", "--c", "true"]


def test_invalid_requests_are_refused_with_stable_codes(daemon: Daemon) -> None:
    with daemon.client() as client:
        cases: list[tuple[str, dict[str, object], str]] = [
            ("echo_params", {"message": "hi", "bogus": "x"}, "invalid_params"),
            ("echo_params", {}, "invalid_params"),
            ("echo_params", {"message": "hi", "count": 11}, "invalid_params"),
            ("echo_params", {"message": ["a", "list"]}, "invalid_params"),
            ("no_such_workflow", {}, "not_found"),
            ("../../bin/sh", {}, "not_found"),
            ("/bin/sh", {}, "not_found"),
            ("", {}, "not_found"),
        ]
        for workflow_id, params, code in cases:
            with pytest.raises(WfmError) as info:
                client.run(workflow_id, params)
            assert info.value.code == code, (workflow_id, params, info.value)
            assert info.value.message
        # Nothing was recorded for the refused runs; the connection is still usable.
        assert client.history().executions == []
        assert client.ping().running == 0
