"""wfmd fails safe when its pipe reader thread fails.

Nothing can make the real reader fail but a bug, so the test plants one: a `sitecustomize`
on the daemon's PYTHONPATH makes `PipeReader._read` raise once it has read a line holding
MARKER. The daemon must then commit everything the reader had read, stop every running
execution and record it, close the database, and exit non-zero with a clear line, so that
systemd (Restart=on-failure) starts it again.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import Daemon, MakeDaemon, metadata, text_field, wait_for_file, write_workflow

from wfmd.main import EXIT_ERROR

MARKER = "PLANTED-PIPE-READER-FAULT"

SITECUSTOMIZE = f"""
import os
if os.environ.get("WFM_TEST_PIPE_FAULT") == "1":
    from wfmd.ingest import pipes

    _original = pipes.PipeReader._read

    def _read(self, pipe, poll_all, out):
        pause = _original(self, pipe, poll_all, out)
        if any({MARKER.encode()!r} in getattr(item, "data", b"") for item in out):
            raise RuntimeError("a planted bug in the pipe reader")
        return pause

    pipes.PipeReader._read = _read
"""

STEADY = """
with open(sys.argv[2], "w") as f:
    f.write("started\\n")
n = 0
while True:
    print(f"line {n}", flush=True)
    n += 1
    time.sleep(0.01)
"""

TRIGGER = f"""
print("before", flush=True)
time.sleep(0.2)
print("{MARKER}", flush=True)
time.sleep(600)
"""

GRACE = 2.0
STOP_TIMEOUT = GRACE + 20.0
RUNNERS = 3


def fail_the_reader(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Daemon, list[str], int, float]:
    """Runs RUNNERS steady workflows, then the trigger; the daemon, every handle, its exit
    status and how long it took to exit after the trigger started."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(SITECUSTOMIZE)
    write_workflow(
        workflow_dir, "steady", STEADY, metadata("steady", text_field("ready", required=True))
    )
    write_workflow(workflow_dir, "trigger", TRIGGER, metadata("trigger"))
    monkeypatch.setenv("PYTHONPATH", str(inject))
    monkeypatch.setenv("WFM_TEST_PIPE_FAULT", "1")
    daemon = make_daemon(["--cancel-grace", str(GRACE)]).start()
    handles = []
    with daemon.client() as client:
        for n in range(RUNNERS):
            ready = tmp_path / f"ready-{n}"
            handles.append(client.run("steady", {"ready": str(ready)}).handle)
            wait_for_file(ready)
        started = time.monotonic()
        handles.append(client.run("trigger", {}).handle)
    assert daemon.proc is not None
    code = daemon.proc.wait(STOP_TIMEOUT)
    took = time.monotonic() - started
    monkeypatch.delenv("WFM_TEST_PIPE_FAULT")
    return daemon, handles, code, took


def test_a_failed_pipe_reader_stops_everything_in_order_and_exits_non_zero(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, handles, code, took = fail_the_reader(make_daemon, workflow_dir, tmp_path, monkeypatch)
    log = daemon.log()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    print(f"\nexit {code}, {took:.2f} s after the trigger started\n" + "\n".join(errors))
    assert code == EXIT_ERROR, log
    assert any(
        "the pipe reader thread failed: stopping every running execution" in e for e in errors
    )
    [last] = [e for e in errors if " ERROR wfmd: " in e]
    assert "pipe reader thread failed (RuntimeError: a planted bug in the pipe reader)" in last
    assert "exiting non-zero" in last and "closed the database" in last
    wal = daemon.database.with_name(daemon.database.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the database was not closed"

    daemon.log_path.unlink()
    daemon.start()
    assert "recovered" not in daemon.log(), "the stopping daemon left executions for recovery"
    with daemon.client() as client:
        for handle in handles:
            ended = client.status(handle)
            entries = list(client.iter_logs(handle, limit=100_000))
            assert ended.status not in ("Running", "NotStarted"), ended
            assert ended.log_count == len(entries), ended
            if ended.workflow_id == "steady":
                assert [e.line for e in entries] == [f"line {n}" for n in range(len(entries))]
                assert entries, ended
            else:  # everything read before the failure is committed, the marker too
                assert [e.line for e in entries] == ["before", MARKER], entries


def test_the_stopped_executions_are_recorded_failed_by_an_internal_error(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, handles, code, _ = fail_the_reader(make_daemon, workflow_dir, tmp_path, monkeypatch)
    assert code == EXIT_ERROR, daemon.log()
    daemon.start()
    with daemon.client() as client:
        for handle in handles:
            ended = client.status(handle)
            assert (ended.status, ended.ended_by) == ("Failed", "internal"), ended
            assert ended.reason is not None and "pipe reader" in ended.reason, ended
