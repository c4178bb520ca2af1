"""`Execution.ended_by`: every way an execution ends is named by one word clients branch on."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from conftest import Daemon, MakeDaemon, metadata, write_workflow

from wfmctl.protocol import Execution

SLEEPER = "time.sleep(60)\n"


def ended(daemon: Daemon, workflow_id: str, timeout: float | None = None) -> Execution:
    with daemon.client() as client:
        return client.wait(client.run(workflow_id, {}, timeout=timeout).handle)


def test_each_ending_has_its_word(daemon: Daemon, workflow_dir: Path) -> None:
    write_workflow(workflow_dir, "ok", "sys.exit(0)\n", metadata("ok"))
    write_workflow(workflow_dir, "fails", "sys.exit(3)\n", metadata("fails"))
    write_workflow(workflow_dir, "killed", "os.kill(os.getpid(), 9)\n", metadata("killed"))
    write_workflow(workflow_dir, "sleeper", SLEEPER, metadata("sleeper"))
    assert (ended(daemon, "ok").ended_by, ended(daemon, "ok").status) == ("exit", "Completed")
    assert ended(daemon, "fails").ended_by == "exit"
    assert ended(daemon, "killed").ended_by == "signal"
    timed_out = ended(daemon, "sleeper", timeout=0.2)
    assert (timed_out.status, timed_out.ended_by) == ("Failed", "timeout"), timed_out
    with daemon.client() as client:
        handle = client.run("sleeper", {}).handle
        assert client.status(handle).ended_by is None  # not ended yet
        client.cancel(handle)
        cancelled = client.wait(handle)
    assert (cancelled.status, cancelled.ended_by) == ("Cancelled", "cancelled"), cancelled


def test_a_workflow_that_cannot_start_is_a_spawn_error(daemon: Daemon, workflow_dir: Path) -> None:
    path = write_workflow(workflow_dir, "vanishing", "sys.exit(0)\n", metadata("vanishing"))
    with daemon.client() as client:
        client.workflows(rescan=True)
        path.unlink()
        handle = client.run("vanishing", {}).handle
        execution = client.wait(handle)
    assert (execution.status, execution.ended_by) == ("Failed", "spawn_error"), execution


def test_recovery_names_the_dead_daemon(make_daemon: MakeDaemon, workflow_dir: Path) -> None:
    write_workflow(workflow_dir, "sleeper", SLEEPER, metadata("sleeper"))
    first = make_daemon().start()
    with first.client() as client:
        handle = client.run("sleeper", {}).handle
        deadline = time.monotonic() + 10
        while client.status(handle).status != "Running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
    first.kill9()
    second = make_daemon().start()
    with second.client() as client:
        execution = client.status(handle)
    assert (execution.status, execution.ended_by) == ("Failed", "daemon_died"), execution


def test_older_rows_get_their_word_from_the_reason(tmp_path: Path) -> None:
    """Migration 0003 names the endings of executions recorded before the column existed."""
    from wfmd.store.database import load_migrations

    db = sqlite3.connect(tmp_path / "old.db")
    for migration in load_migrations()[:2]:
        db.executescript(migration.sql)
    rows = [
        ("a", "Completed", "exited with status 0", "exit"),
        ("b", "Failed", "killed by signal 9 (SIGKILL)", "signal"),
        ("c", "Failed", "timed out after 2 s", "timeout"),
        ("d", "Cancelled", "cancelled by request", "cancelled"),
        ("e", "Cancelled", "cancelled before it started", "cancelled"),
        ("f", "Failed", "interrupted: the daemon supervising it died", "daemon_died"),
        ("g", "Failed", "could not start /x: No such file or directory", "spawn_error"),
        ("h", "Failed", "storage full or failing for over 60 s: disk", "storage"),
        ("i", "Failed", "internal error in wfmd: boom", "internal"),
        ("j", "Running", None, None),
    ]
    db.executemany(
        "INSERT INTO executions (handle, workflow_id, status, reason, created_at, argv)"
        " VALUES (?, 'w', ?, ?, 0, '[]')",
        [(h, status, reason) for h, status, reason, _ in rows],
    )
    db.executescript(load_migrations()[2].sql)
    got = dict(db.execute("SELECT handle, ended_by FROM executions").fetchall())
    assert got == {h: word for h, _, _, word in rows}
