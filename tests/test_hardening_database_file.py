"""A database file deleted or replaced while wfmd runs is noticed.

Before, wfmd went on accepting runs into the unlinked file, `ping` said storage ok, and after
a restart every run since the deletion was gone. Now the file's device and inode (and its
WAL's) are compared with those opened, at every heartbeat and before every run: ping reports
a storage error that says what happened, the log says it once, and new runs are refused with
the `storage` code. Queued runs wait until the file is back. Running executions go on,
recorded in the open file only (they cannot be made durable any more, and killing them would
lose what their user is watching).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Daemon, MakeDaemon, metadata, text_field, wait_for_file, write_workflow

from wfmctl import WfmError

# Seconds between heartbeats in these tests (the default is 5): how soon ping must notice.
HEARTBEAT = 0.3
NOTICE_TIMEOUT = 10.0

STEADY = """
with open(sys.argv[2], "w") as f:
    f.write("started\\n")
n = 0
while True:
    print(f"line {n}", flush=True)
    n += 1
    time.sleep(0.02)
"""


def start_watched(make_daemon: MakeDaemon, workflow_dir: Path, *flags: str) -> Daemon:
    write_workflow(
        workflow_dir, "steady", STEADY, metadata("steady", text_field("ready", required=True))
    )
    write_workflow(workflow_dir, "quick", "print('quick')\n", metadata("quick"))
    daemon = make_daemon(list(flags))
    (daemon.root / "no-config.toml").write_text(f"heartbeat_interval = {HEARTBEAT}\n")
    return daemon.start()


@pytest.fixture
def watched(make_daemon: MakeDaemon, workflow_dir: Path) -> Daemon:
    return start_watched(make_daemon, workflow_dir)


def wait_until(predicate: Callable[[], object], what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < NOTICE_TIMEOUT:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"not within {NOTICE_TIMEOUT}s: {what}")


def storage_error(daemon: Daemon) -> str | None:
    with daemon.client() as client:
        pong = client.ping()
    assert pong.storage_ok == (pong.storage_error is None), pong
    return pong.storage_error


def refused_run(daemon: Daemon) -> WfmError:
    with daemon.client() as client, pytest.raises(WfmError) as info:
        client.run("quick", {})
    assert info.value.code == "storage", info.value
    return info.value


def start_steady(daemon: Daemon, tmp_path: Path) -> str:
    ready = tmp_path / "ready"
    with daemon.client() as client:
        handle = client.run("steady", {"ready": str(ready)}).handle
    wait_for_file(ready)
    return handle


@pytest.mark.parametrize("what", ["database", "wal"])
def test_deleted_file_is_reported_and_new_runs_refused(
    watched: Daemon, tmp_path: Path, what: str
) -> None:
    daemon = watched
    handle = start_steady(daemon, tmp_path)
    assert storage_error(daemon) is None
    path = daemon.database
    if what == "wal":
        path = path.with_name(path.name + "-wal")
    path.unlink()
    deleted = time.monotonic()

    took = wait_until(lambda: storage_error(daemon), "ping reports the deleted file")
    message = storage_error(daemon)
    assert message is not None and f"{path} was deleted" in message, message
    print(f"\nping noticed in {took:.2f} s (heartbeat {HEARTBEAT} s): {message}")
    error = refused_run(daemon)
    assert f"the database file {path} was deleted while wfmd was running" in error.message
    errors = [line for line in daemon.log().splitlines() if " ERROR " in line]
    assert len([e for e in errors if "was deleted while wfmd was running" in e]) == 1, errors

    # The running execution goes on into the open file, and can still be read.
    with daemon.client() as client:
        before = client.status(handle).log_count
        time.sleep(0.5)
        running = client.status(handle)
        assert running.status == "Running", running
        assert running.log_count > before, (before, running)
        ended = client.cancel(handle)
    assert time.monotonic() - deleted < NOTICE_TIMEOUT
    assert ended.status in ("Running", "Cancelled"), ended
    assert daemon.stop() == 0


def test_replaced_file_is_reported(watched: Daemon, tmp_path: Path) -> None:
    """The very next run is refused: it is not left to the next heartbeat."""
    daemon = watched
    copy = tmp_path / "copy.db"
    shutil.copyfile(daemon.database, copy)
    os.replace(copy, daemon.database)
    error = refused_run(daemon)
    assert f"the database file {daemon.database} was replaced" in error.message, error
    wait_until(lambda: storage_error(daemon), "ping reports the replaced file")
    assert "was replaced while wfmd was running" in (storage_error(daemon) or "")


def test_the_same_file_back_in_place_is_fine_again(watched: Daemon, tmp_path: Path) -> None:
    """Identity, not name: a hard link of the opened file put back ends the complaint."""
    daemon = watched
    keep = tmp_path / "keep.db"
    os.link(daemon.database, keep)
    daemon.database.unlink()
    refused_run(daemon)
    wait_until(lambda: storage_error(daemon), "ping reports the deleted file")
    os.link(keep, daemon.database)
    wait_until(lambda: storage_error(daemon) is None, "ping is happy again")
    with daemon.client() as client:
        ended = client.wait(client.run("quick", {}).handle)
    assert ended.status == "Completed", ended
    assert "is back as it was opened" in daemon.log()


def test_queued_runs_wait_until_the_file_is_back(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    """A run queued before the file went is not started into it: it waits, queued, and
    starts once the opened file is back in place."""
    daemon = start_watched(make_daemon, workflow_dir, "--max-concurrent", "1")
    running = start_steady(daemon, tmp_path)
    with daemon.client() as client:
        queued = client.run("quick", {}).handle
    keep = tmp_path / "keep.db"
    os.link(daemon.database, keep)
    daemon.database.unlink()
    wait_until(lambda: storage_error(daemon), "ping reports the deleted file")
    with daemon.client() as client:
        client.cancel(running)
        assert client.wait(running).status == "Cancelled"
        time.sleep(3 * HEARTBEAT + 1.0)  # a free slot, a few heartbeats and storage checks
        assert client.status(queued).status == "NotStarted"
    os.link(keep, daemon.database)
    with daemon.client() as client:
        wait_until(lambda: client.status(queued).status == "Completed", "the queued run ran")
