"""More signals while wfmd stops do not break the graceful stop.

Before, a second SIGTERM (or a SIGHUP) during shutdown killed wfmd by that signal: exit 143 or
129, the database not closed. The first signal's receiver stopped being read, and when it
was closed Trio redelivered what it held under the default disposition. Now every later
signal is logged and ignored; wfmd still records every status, closes the database and
exits 0.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from conftest import Daemon, MakeDaemon, metadata, text_field, wait_for_file, write_workflow

# Seconds from SIGTERM to SIGKILL for the workflow that ignores SIGTERM: the window in which
# the test signals the stopping daemon.
GRACE = 3.0

# The daemon must be gone within the grace period plus this.
STOP_SLACK = 15.0

STUBBORN = """
import signal
import sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[2], "w") as f:
    f.write("started\\n")
n = 0
while True:
    print(f"line {n}", flush=True)
    n += 1
    time.sleep(0.01)
"""


def start_stubborn(daemon: Daemon, tmp_path: Path) -> str:
    ready = tmp_path / "ready"
    with daemon.client() as client:
        handle = client.run("stubborn", {"ready": str(ready)}).handle
    wait_for_file(ready)
    return handle


def wait_exit(daemon: Daemon) -> tuple[int, float]:
    assert daemon.proc is not None
    started = time.monotonic()
    code = daemon.proc.wait(GRACE + STOP_SLACK)
    return code, time.monotonic() - started


def assert_stopped_cleanly(daemon: Daemon, handle: str) -> None:
    wal = daemon.database.with_name(daemon.database.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the database was not closed"
    assert "wfmd stopped" in daemon.log()
    assert "Traceback" not in daemon.log()
    daemon.start()
    with daemon.client() as client:
        ended = client.status(handle)
        entries = list(client.iter_logs(handle, limit=10_000))
    assert ended.status == "Cancelled", ended
    assert ended.reason == "cancelled: the daemon was shutting down", ended
    assert ended.log_count == len(entries) > 0
    assert [e.line for e in entries] == [f"line {n}" for n in range(len(entries))]


def stubborn_daemon(make_daemon: MakeDaemon, workflow_dir: Path) -> Daemon:
    write_workflow(
        workflow_dir, "stubborn", STUBBORN, metadata("stubborn", text_field("ready", required=True))
    )
    return make_daemon(["--cancel-grace", str(GRACE)]).start()


def test_second_sigterm_sighup_and_sigint_while_stopping(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    daemon = stubborn_daemon(make_daemon, workflow_dir)
    handle = start_stubborn(daemon, tmp_path)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    time.sleep(GRACE / 4)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        daemon.proc.send_signal(signum)
        time.sleep(0.05)
    code, took = wait_exit(daemon)
    print(f"\nexit {code} {took:.2f} s after the last signal")
    assert code == 0, daemon.log()
    assert "ignored" in daemon.log()
    assert_stopped_cleanly(daemon, handle)


def test_a_storm_of_signals_through_every_phase_of_the_stop(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    """Signals every few milliseconds from the first SIGTERM until the process is gone, so
    some land in each phase: the grace period, the last commit, the database's close."""
    daemon = stubborn_daemon(make_daemon, workflow_dir)
    handle = start_stubborn(daemon, tmp_path)
    assert daemon.proc is not None
    proc = daemon.proc
    sent = 0
    done = threading.Event()

    def storm() -> None:
        nonlocal sent
        kinds = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
        while not done.is_set() and proc.poll() is None:
            proc.send_signal(kinds[sent % len(kinds)])
            sent += 1
            time.sleep(0.005)

    thread = threading.Thread(target=storm, daemon=True)
    thread.start()
    try:
        code, _ = wait_exit(daemon)
    finally:
        done.set()
        thread.join(5)
    print(f"\n{sent} signals while stopping: exit {code}")
    assert code == 0, daemon.log()
    assert_stopped_cleanly(daemon, handle)


def test_sighup_still_rescans(make_daemon: MakeDaemon, workflow_dir: Path) -> None:
    daemon = make_daemon().start()
    write_workflow(workflow_dir, "late", "print('late')\n", metadata("late"))
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with daemon.client() as client:
            if any(w.id == "late" for w in client.workflows().workflows):
                break
        time.sleep(0.05)
    else:
        raise AssertionError("SIGHUP did not rescan")
    assert daemon.stop() == 0


SLOW_PROBE = """#!{python}
import json, sys, time
if sys.argv[1:] == ["--workflow-metadata"]:
    open({marker!r}, "w").write("probing\\n")
    time.sleep(2)
    print(json.dumps({{"id": "slow", "name": "slow", "description": "", "fields": []}}))
"""


def test_sigterm_during_start_up_stops_once_ready(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    """A SIGTERM while the first scan runs waits for start-up to finish, then stops cleanly."""
    marker = tmp_path / "probing"
    probe = workflow_dir / "slow"
    probe.write_text(SLOW_PROBE.format(python=sys.executable, marker=str(marker)))
    probe.chmod(0o755)
    daemon = make_daemon().start(wait=False)
    wait_for_file(marker)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.proc.send_signal(signal.SIGHUP)
    code, _ = wait_exit(daemon)
    assert code == 0, daemon.log()
    log = daemon.log()
    assert log.index(" ready on ") < log.index("received SIGTERM: shutting down"), log
    assert "wfmd stopped" in log
