"""Daemon death and restart: kill -9 recovery, queued runs across a restart, graceful
shutdown, one daemon per database and per socket, stale sockets."""

from __future__ import annotations

import itertools
import re
import signal
import sqlite3
import time
from pathlib import Path

from conftest import (
    Daemon,
    MakeDaemon,
    group_members,
    metadata,
    read_pids,
    text_field,
    wait_for_file,
    wait_gone,
    write_workflow,
)

from wfmctl.protocol import LogEntry

LOG_TIMEOUT = 15.0


def wait_for_log_count(daemon: Daemon, handle: str, count: int) -> None:
    deadline = time.monotonic() + LOG_TIMEOUT
    with daemon.client() as client:
        while time.monotonic() < deadline:
            if client.status(handle).log_count >= count:
                return
            time.sleep(0.02)
    raise AssertionError(f"fewer than {count} entries committed within {LOG_TIMEOUT}s")


def all_entries(daemon: Daemon, handle: str) -> list[LogEntry]:
    with daemon.client() as client:
        return list(client.iter_logs(handle))


def statuses_on_disk(database: Path) -> list[tuple[str, str | None]]:
    """(status, reason) of every execution, read with the stdlib while no daemon runs."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT status, reason FROM executions ORDER BY id").fetchall()
    finally:
        conn.close()


# Prints "out N" on stdout and "err N" on stderr every 10 ms, after starting a grandchild
# in its own process group and recording both pids.
def chatter_body(pids_file: Path) -> str:
    return f"""
import subprocess
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open({str(pids_file)!r} + ".tmp", "w") as f:
    f.write(f"{{os.getpid()}} {{child.pid}}\\n")
os.rename({str(pids_file)!r} + ".tmp", {str(pids_file)!r})
for i in range(6000):
    print(f"out {{i}}", flush=True)
    print(f"err {{i}}", file=sys.stderr, flush=True)
    time.sleep(0.01)
"""


def test_kill9_recovery(make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    write_workflow(workflow_dir, "chatter", chatter_body(pids_file), metadata("chatter"))
    daemon = make_daemon(extra_args=["--max-concurrent", "1"]).start()
    with daemon.client() as client:
        execution = client.run("chatter")
        queued = client.run("echo_params", {"message": "queued before the crash"})
    pids = read_pids(pids_file)
    wait_for_log_count(daemon, execution.handle, 60)
    daemon.kill9()
    assert daemon.socket.exists()  # kill -9 leaves the socket file behind

    daemon.start()
    with daemon.client() as client:
        ended = client.status(execution.handle)
        entries = list(client.iter_logs(execution.handle))
        page = client.logs(execution.handle, after=entries[-1].seq if entries else -1)
    assert ended.status == "Failed"
    assert ended.reason is not None and "daemon" in ended.reason and "died" in ended.reason
    assert ended.exit_code is None

    # Committed entries: contiguous from 0, each stream a prefix of what it printed.
    assert len(entries) >= 60
    assert [e.seq for e in entries] == list(range(len(entries)))
    assert ended.log_count == len(entries)
    assert page.finished and page.entries == []
    out = [e.line for e in entries if e.stream == "stdout"]
    err = [e.line for e in entries if e.stream == "stderr"]
    assert out == [f"out {i}" for i in range(len(out))]
    # A child that lost its pipes may print a BrokenPipeError traceback; none of it can have
    # been committed (nobody was reading), so stderr holds only numbered lines.
    assert err == [f"err {i}" for i in range(len(err))]
    assert out and err

    # The end time is the last moment it was known alive, not its start.
    assert ended.started_at is not None and ended.ended_at is not None
    assert ended.ended_at >= max(e.ts for e in entries)
    assert ended.ended_at > ended.started_at

    # Nothing of the orphaned process group survives the restart.
    wait_gone(pids)
    assert group_members(pids[0]) == []

    # The run queued behind it survives the crash and runs now.
    with daemon.client() as client:
        after = client.wait(queued.handle)
        assert after.status == "Completed"
        assert client.logs(queued.handle).entries[0].line == "queued before the crash"


def test_stale_socket_is_replaced(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()
    daemon.kill9()
    assert daemon.socket.is_socket()
    daemon.start()
    with daemon.client() as client:
        assert client.ping().pid == daemon.pid
    assert "stale socket" in daemon.log()


def test_queued_runs_survive_a_restart(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    started_file = tmp_path / "started"
    # The long run ignores SIGTERM: shutdown must still end within the grace period.
    long_body = f"""
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("long run started", flush=True)
with open({str(started_file)!r}, "w") as f:
    f.write("yes\\n")
time.sleep(60)
"""
    write_workflow(workflow_dir, "long", long_body, metadata("long"))
    quick_body = 'print("quick", sys.argv[2], flush=True)\n'
    write_workflow(workflow_dir, "quick", quick_body, metadata("quick", text_field("name")))
    daemon = make_daemon(extra_args=["--max-concurrent", "1", "--cancel-grace", "1"]).start()
    with daemon.client() as client:
        long = client.run("long")
        queued = [client.run("quick", {"name": name}) for name in ("first", "second")]
    wait_for_file(started_file)
    wait_for_log_count(daemon, long.handle, 1)

    began = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - began < 1 + 5  # grace + a few seconds
    assert not daemon.socket.exists()
    on_disk = statuses_on_disk(daemon.database)
    assert [s for s, _ in on_disk] == ["Cancelled", "NotStarted", "NotStarted"]
    assert "shutting down" in (on_disk[0][1] or "")

    daemon.start()
    with daemon.client() as client:
        cancelled = client.status(long.handle)
        ended = [client.wait(q.handle) for q in queued]
        lines = [[e.line for e in client.logs(q.handle).entries] for q in queued]
        long_lines = [e.line for e in client.logs(long.handle).entries]
    assert cancelled.status == "Cancelled"
    assert cancelled.signal == signal.SIGKILL
    assert long_lines == ["long run started"]
    assert [e.status for e in ended] == ["Completed", "Completed"]
    assert lines == [["quick first"], ["quick second"]]
    assert ended[0].ended_at is not None and ended[1].started_at is not None
    assert ended[1].started_at >= ended[0].ended_at


def test_graceful_sigterm_commits_every_line(make_daemon: MakeDaemon, workflow_dir: Path) -> None:
    # Prints as fast as it can; on SIGTERM says how many lines it printed, and exits. SIGTERM
    # is blocked from each print until its count is updated, or the handler could run in
    # between and report one line less than was printed.
    body = """
import signal
count = 0
def bye(signum, frame):
    print(f"terminated after {count} lines", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
while True:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    print(f"line {count}", flush=True)
    count += 1
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if count % 100 == 0:
        time.sleep(0.005)
"""
    write_workflow(workflow_dir, "firehose", body, metadata("firehose"))
    daemon = make_daemon(extra_args=["--cancel-grace", "1"]).start()
    with daemon.client() as client:
        execution = client.run("firehose")
    wait_for_log_count(daemon, execution.handle, 2000)
    began = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - began < 1 + 5  # grace + a few seconds
    on_disk = statuses_on_disk(daemon.database)
    assert on_disk[0][0] == "Cancelled"

    daemon.start()
    with daemon.client() as client:
        ended = client.status(execution.handle)
    entries = all_entries(daemon, execution.handle)
    assert ended.status == "Cancelled"
    assert ended.reason is not None and "shutting down" in ended.reason
    assert ended.exit_code == 0
    last = re.fullmatch(r"terminated after (\d+) lines", entries[-1].line)
    assert last, entries[-1].line
    printed = int(last[1])
    assert printed >= 2000
    assert [e.line for e in entries[:-1]] == [f"line {i}" for i in range(printed)]
    assert [e.seq for e in entries] == list(range(printed + 1))
    assert ended.log_count == printed + 1


# --------------------------------------------------------------------------- one daemon


def second_daemon_fails(second: Daemon) -> str:
    """Start `second`, expect exit status 3 promptly; returns its log."""
    second.root.mkdir(parents=True, exist_ok=True)
    second.start(wait=False)
    assert second.proc is not None
    code = second.proc.wait(20)
    log = second.log()
    assert code == 3, log
    assert "Traceback" not in log
    return log


def test_second_daemon_on_the_same_database_exits_3(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    first = make_daemon().start()
    with first.client() as client:
        handle = client.run("echo_params", {"message": "first"}).handle
        client.wait(handle)
    second = make_daemon(root=tmp_path / "second")
    second.database = first.database
    log = second_daemon_fails(second)
    assert "already" in log and str(first.database) in log, log
    assert not second.socket.exists()
    with first.client() as client:
        assert client.ping().pid == first.pid
        assert client.status(handle).status == "Completed"


def test_second_daemon_on_the_same_socket_exits_3(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    first = make_daemon().start()
    second = make_daemon(root=tmp_path / "second")
    second.socket = first.socket
    log = second_daemon_fails(second)
    assert "already" in log and str(first.socket) in log, log
    # The first daemon's socket is intact and it still serves.
    assert first.socket.is_socket()
    for _ in itertools.repeat(None, 3):
        with first.client() as client:
            assert client.ping().pid == first.pid
