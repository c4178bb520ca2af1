"""Storage faults, through the real daemon: a disk that fills up while workflows print, and
database files the daemon must refuse (corrupt, not a database, locked, read-only, and a
runtime directory it cannot use) with one clear line, a distinct exit code, and the file left
exactly as it was.

Two tests need root: the full disk is a small tmpfs mounted for the test, and the permission
tests drop root's power to bypass file modes (as `nobody` when the interpreter is reachable
for it, otherwise as root without capabilities). Each skips with the reason when it cannot.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    REFUSAL_TIMEOUT,
    WFMD,
    Daemon,
    MakeDaemon,
    alive,
    metadata,
    proc_status,
    small_tmpfs,
    text_field,
    write_workflow,
)

from wfmctl import WfmError
from wfmctl.protocol import Pong
from wfmd.main import EXIT_DATABASE_CORRUPT, EXIT_RUNTIME_DIR, EXIT_STORAGE

# Bounds on waiting for the daemon to notice a full disk and a freed one (it retries a failed
# commit every second).
NOTICE_TIMEOUT = 15.0

# Seconds a held workflow may wait before it is failed, for the full-disk test: long enough
# to observe the hold, short enough to keep the test quick.
HOLD_TIMEOUT = 3.0

# The full-disk test's filesystem, and how much room the filler leaves for the database to
# run out of. Freeing the filler must leave room for everything the daemon holds pending
# (writer.MAX_PENDING_BYTES = 16 MiB) so that the retried commit fits.
SMALL_FS_SIZE = "48m"
ROOM_LEFT = 3 * 1024 * 1024

# Memory the daemon may use while it holds a workflow back.
MAX_RSS_BYTES = 150 * 1024 * 1024


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Seconds until `predicate()` was true; fails the test after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"not within {timeout}s: {what}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bytes_written(pid: int) -> int:
    """What process `pid` has passed to write() so far (/proc/<pid>/io `wchar`)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no wchar for pid {pid}")


def assert_one_clear_error(lines: list[str], *needles: str) -> str:
    """The daemon logged exactly one error, as its final `wfmd:` line, with no traceback,
    mentioning every needle. SQLite's own diagnostics (`SQLITE_LOG:` lines, which apsw routes
    to logging at ERROR level) may precede it."""
    errors = [line for line in lines if " ERROR " in line and " SQLITE_LOG: " not in line]
    assert len(errors) == 1, lines
    assert " ERROR wfmd: " in errors[0], lines
    assert not any(line.startswith("Traceback") for line in lines), lines
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    print("\n" + errors[0].split(" ERROR ", 1)[1])
    return errors[0]


# --------------------------------------------------------------------------- the full disk


def fill(path: Path, leave: int) -> None:
    """A file that takes all of `path`'s filesystem but `leave` bytes."""
    stats = os.statvfs(path.parent)
    size = stats.f_bavail * stats.f_frsize - leave
    block = b"\0" * (1024 * 1024)
    with path.open("wb") as f:
        while size > 0:
            size -= f.write(block[: min(size, len(block))])


CHATTY_BODY = """
with open(sys.argv[2], "w") as f:
    f.write(str(os.getpid()))
pad = "x" * 90
n = 0
while True:
    sys.stdout.write("".join(f"{i:09d} {pad}\\n" for i in range(n, n + 1000)))
    sys.stdout.flush()
    n += 1000
"""


def test_full_disk_holds_then_fails_running_work_and_recovers_without_restart(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    write_workflow(workflow_dir, "chatty", CHATTY_BODY, metadata("chatty", text_field("pidfile")))
    write_workflow(
        workflow_dir,
        "hello",
        "for i in range(50):\n    print('hello', i)\n",
        metadata("hello"),
    )
    with small_tmpfs(tmp_path / "small", SMALL_FS_SIZE) as small:
        daemon = make_daemon(
            extra_args=[
                "--storage-hold-timeout",
                str(HOLD_TIMEOUT),
                "--cancel-grace",
                "1",
                "--commit-interval",
                "0.01",
            ]
        )
        daemon.database = small / "wfm.db"
        try:
            daemon.start()
            assert daemon.proc is not None
            with daemon.client(timeout=10) as client:
                # Something committed before the disk fills, to compare afterwards.
                before = client.run("hello")
                assert client.wait(before.handle).status == "Completed"
                page_before = client.logs(before.handle)
                assert len(page_before.entries) == 50

                fill(small / "filler", ROOM_LEFT)
                pidfile = tmp_path / "chatty.pid"
                chatty = client.run("chatty", {"pidfile": str(pidfile)})
                wait_until(pidfile.exists, 10, "the chatty workflow started")
                wait_until(lambda: pidfile.read_text().strip(), 10, "the chatty pid written")
                pid = int(pidfile.read_text())

                # The disk fills: the daemon stays up and says so.
                wait_until(lambda: not client.ping().storage_ok, NOTICE_TIMEOUT, "storage_ok False")
                noticed = time.monotonic()
                pong: Pong = client.ping()
                assert pong.storage_error, pong
                assert daemon.proc.poll() is None

                # Committed data is intact and readable.
                assert client.logs(before.handle) == page_before
                assert client.status(before.handle).status == "Completed"

                # New runs are refused with the stable code.
                with pytest.raises(WfmError) as refused:
                    client.run("hello")
                assert refused.value.code == "storage", refused.value
                assert client.history(workflow_id="hello").executions[0].handle == before.handle

                # The workflow is held: its output stops advancing, memory stays bounded.
                # (The pending batch and the channel fill first: wait until writes stop.)
                blocked_by = time.monotonic() + HOLD_TIMEOUT
                held_at = bytes_written(pid)
                while True:
                    time.sleep(0.3)
                    if (written := bytes_written(pid)) == held_at:
                        break
                    held_at = written
                    assert time.monotonic() < blocked_by, "the workflow was never held"
                committed = client.status(chatty.handle).log_count
                time.sleep(1.0)
                assert alive(pid)
                assert bytes_written(pid) == held_at, "the held workflow kept writing"
                assert client.status(chatty.handle).log_count == committed
                rss_held = proc_status(daemon.proc.pid, "VmRSS")
                assert rss_held < MAX_RSS_BYTES, rss_held

                # ... for a bounded time, then it is stopped.
                wait_until(lambda: not alive(pid), HOLD_TIMEOUT + 10, "the held workflow killed")
                held_for = time.monotonic() - noticed
                assert held_for >= HOLD_TIMEOUT - 0.5, held_for
                assert daemon.proc.poll() is None
                assert not client.ping().storage_ok

                # Space comes back: service resumes without a restart.
                (small / "filler").unlink()
                wait_until(lambda: client.ping().storage_ok, NOTICE_TIMEOUT, "storage_ok True")
                assert client.ping().storage_error is None
                ended = client.wait(chatty.handle)
                assert ended.status == "Failed", ended
                assert ended.reason is not None and "storage" in ended.reason, ended.reason
                after = client.run("hello")
                assert client.wait(after.handle).status == "Completed"
                assert [e.line for e in client.logs(after.handle).entries] == [
                    f"hello {i}" for i in range(50)
                ]
                assert client.logs(before.handle) == page_before

                # Nothing the held workflow printed was lost or duplicated: its lines are
                # consecutive (the last may be cut short by the kill).
                lines = [e.line for e in client.iter_logs(chatty.handle, limit=10_000)]
                assert len(lines) == ended.log_count
                assert len(lines) > 1000
                complete = [line for line in lines if len(line) == 100]
                assert [int(line[:9]) for line in complete] == list(range(len(complete)))
                assert len(lines) - len(complete) <= 1
            assert daemon.proc.poll() is None
            assert daemon.stop() == 0
            with contextlib.closing(sqlite3.connect(daemon.database)) as db:
                assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            print(
                f"\nfull disk: noticed->killed {held_for:.2f}s (hold {HOLD_TIMEOUT}s), "
                f"daemon RSS while holding {rss_held / 1e6:.1f} MB, "
                f"{len(lines)} lines of the held workflow kept; storage_error "
                f"{pong.storage_error!r}; reason {ended.reason!r}"
            )
        finally:
            (small / "filler").unlink(missing_ok=True)  # a quick stop even after a failure
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()


# --------------------------------------------------------------------------- unusable files


BIG_BODY = "for i in range(60000):\n    print('line', i, 'x' * 40)\n"


def database_with_history(make_daemon: MakeDaemon, workflow_dir: Path) -> Daemon:
    """A real wfm database (WAL mode, a few MB of logs), cleanly stopped."""
    write_workflow(workflow_dir, "big", BIG_BODY, metadata("big"))
    daemon = make_daemon().start()
    daemon.run_and_wait("big")
    assert daemon.stop() == 0
    daemon.log_path.unlink()
    return daemon


def overwrite_middle_pages(path: Path, page_size: int = 4096) -> int:
    """Random bytes over the middle half of the file's pages (page 1, the header and the
    schema stay valid); returns how many pages were overwritten."""
    pages = path.stat().st_size // page_size
    noise = random.Random(20261126)
    with path.open("r+b") as f:
        for page in range(pages // 4, 3 * pages // 4):
            f.seek(page * page_size)
            f.write(noise.randbytes(page_size))
    return 3 * pages // 4 - pages // 4


def test_corrupt_database_is_refused_untouched(make_daemon: MakeDaemon, workflow_dir: Path) -> None:
    """Regression: corruption first met by `PRAGMA optimize` (after the schema read) was an
    unmapped apsw.CorruptError: exit 1 with a traceback."""
    daemon = database_with_history(make_daemon, workflow_dir)
    assert overwrite_middle_pages(daemon.database) > 100
    with contextlib.closing(sqlite3.connect(daemon.database)) as db:
        # Still looks like a database from the outside: the header and schema read fine.
        assert db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] > 5
        assert db.execute("PRAGMA quick_check").fetchone()[0] != "ok"
    digest = sha256(daemon.database)
    code, lines, _ = daemon.refusal()
    assert sha256(daemon.database) == digest
    assert code == EXIT_DATABASE_CORRUPT, "\n".join(lines)
    assert_one_clear_error(lines, str(daemon.database))


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(random.Random(7).randbytes(20_000), id="random-bytes"),
        pytest.param(b"name,value\n" + b"a,1\n" * 5000, id="text-file"),
        pytest.param(b"SQLite format 3\0" + b"\xff" * 4080, id="bad-header"),
    ],
)
def test_non_database_file_is_refused_untouched(daemon_root: Daemon, content: bytes) -> None:
    daemon = daemon_root
    daemon.database.write_bytes(content)
    digest = sha256(daemon.database)
    code, lines, _ = daemon.refusal()
    assert sha256(daemon.database) == digest
    assert code == EXIT_DATABASE_CORRUPT, "\n".join(lines)
    error = assert_one_clear_error(lines, str(daemon.database))
    assert "not a usable wfm database" in error, error


@pytest.fixture
def daemon_root(make_daemon: MakeDaemon) -> Daemon:
    """A daemon that has not been started."""
    return make_daemon()


def test_database_locked_by_another_process_is_refused_then_usable_once_released(
    make_daemon: MakeDaemon, workflow_dir: Path
) -> None:
    """Decision from the code: wfmd does not wait out a lock beyond SQLite's busy timeout
    (store/database.py BUSY_TIMEOUT_MS = 5 s); a lock held longer is DatabaseError('locked'),
    exit 7 (main.py _DATABASE_EXITS). Once the lock is released it starts normally.

    Regression: the first write at start-up (`PRAGMA optimize`) raised an unmapped
    apsw.BusyError after the busy timeout: exit 1 with a traceback."""
    daemon = database_with_history(make_daemon, workflow_dir)
    holder = sqlite3.connect(daemon.database, isolation_level=None)
    try:
        assert holder.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        holder.execute("BEGIN EXCLUSIVE")
        digest = sha256(daemon.database)
        code, lines, took = daemon.refusal()
        assert sha256(daemon.database) == digest
        assert code == EXIT_STORAGE, "\n".join(lines)
        assert took < 15, took
        assert_one_clear_error(lines, str(daemon.database), "locked")
    finally:
        holder.close()
    daemon.start()
    with daemon.client() as client:
        assert client.history().executions[0].status == "Completed"


# --------------------------------------------------------------------------- permissions


class Unprivileged:
    """Runs wfmd where file modes apply: as `nobody` when it can reach this interpreter,
    otherwise as root without capabilities (no CAP_DAC_OVERRIDE: root's own 0555 directory
    is then read-only to it too). Not root at all: we are unprivileged already."""

    def __init__(self, prefix: list[str], uid: int, gid: int, who: str) -> None:
        self.prefix = prefix
        self.uid = uid
        self.gid = gid
        self.who = who

    def own(self, path: Path) -> Path:
        os.chown(path, self.uid, self.gid)
        return path

    def wfmd(self, base: Path, *args: str) -> subprocess.CompletedProcess[str]:
        config = base / "empty-config.toml"
        config.touch()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("WFM_SOCKET", "WFM_DATABASE", "XDG_RUNTIME_DIR")
        }
        env.update(HOME=str(base), WFM_CONFIG=str(config))
        argv = [*self.prefix, WFMD, "--workflow-dir", str(base / "workflows"), *args]
        return subprocess.run(
            argv,
            env=env,
            cwd=base,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=REFUSAL_TIMEOUT,
        )


def _denied_probe(prefix: list[str], scratch: Path) -> bool:
    """True if `prefix` runs this interpreter with wfmd importable and file modes enforced."""
    locked = scratch / "locked"
    locked.mkdir(mode=0o555, exist_ok=True)
    locked.chmod(0o555)
    script = (
        "import sys, os, wfmd.main\n"
        "try:\n    os.mkdir(sys.argv[1])\nexcept PermissionError:\n    sys.exit(0)\n"
        "sys.exit(3)\n"
    )
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-c", script, str(locked / "x")],
            capture_output=True,
            cwd="/",
            timeout=30,
        )
    except OSError:
        return False
    return done.returncode == 0


@pytest.fixture
def unprivileged() -> Iterator[tuple[Unprivileged, Path]]:
    """(how to run wfmd unprivileged, a scratch directory it can reach)."""
    base = Path(tempfile.mkdtemp(prefix="wfm-faults-", dir="/tmp"))
    try:
        base.chmod(0o755)
        if os.geteuid() != 0:
            yield Unprivileged([], os.getuid(), os.getgid(), "the current user"), base
            return
        setpriv = shutil.which("setpriv")
        runuser = shutil.which("runuser")
        candidates: list[tuple[list[str], int, int, str]] = []
        if setpriv:
            candidates.append(
                (
                    [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"],
                    65534,
                    65534,
                    "nobody",
                )
            )
        elif runuser:
            candidates.append(([runuser, "-u", "nobody", "--"], 65534, 65534, "nobody"))
        if setpriv:
            candidates.append(
                (
                    [setpriv, "--bounding-set=-all", "--inh-caps=-all"],
                    0,
                    0,
                    "root without capabilities",
                )
            )
        if not candidates:
            pytest.skip("neither setpriv nor runuser is installed: cannot drop root's powers")
        scratch = base / "probe"
        scratch.mkdir(mode=0o777)
        scratch.chmod(0o777)
        for prefix, uid, gid, who in candidates:
            if _denied_probe(prefix, scratch):
                yield Unprivileged(prefix, uid, gid, who), base
                return
        pytest.skip(
            "cannot run wfmd with file permissions enforced: `nobody` cannot reach "
            f"{sys.executable} and dropping capabilities did not work"
        )
    finally:
        for path in base.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def private_dir(runner: Unprivileged, path: Path, mode: int = 0o755) -> Path:
    path.mkdir()
    runner.own(path)
    path.chmod(mode)
    return path


def test_read_only_database_directory_exits_7(
    unprivileged: tuple[Unprivileged, Path],
) -> None:
    runner, base = unprivileged
    runner.own(base)
    private_dir(runner, base / "run", 0o700)
    readonly = private_dir(runner, base / "db", 0o555)
    done = runner.wfmd(
        base, "--database", str(readonly / "wfm.db"), "--socket", str(base / "run" / "s.sock")
    )
    lines = done.stderr.splitlines()
    assert done.returncode == EXIT_STORAGE, (runner.who, done.stderr)
    assert_one_clear_error(lines, str(readonly))
    assert list(readonly.iterdir()) == []


def test_existing_database_in_read_only_directory_exits_7_untouched(
    make_daemon: MakeDaemon,
    workflow_dir: Path,
    unprivileged: tuple[Unprivileged, Path],
) -> None:
    """Regression: SQLite cannot create the -wal file, and the schema read raised an unmapped
    apsw.ReadOnlyError (SQLITE_READONLY_DIRECTORY): exit 1 with a traceback."""
    runner, base = unprivileged
    made = database_with_history(make_daemon, workflow_dir)
    runner.own(base)
    private_dir(runner, base / "run", 0o700)
    readonly = private_dir(runner, base / "db")
    for name in ("wfm.db", "wfm.db.lock"):
        shutil.copy(made.database.with_name(name), readonly / name)
        runner.own(readonly / name)
    readonly.chmod(0o555)
    digest = sha256(readonly / "wfm.db")
    done = runner.wfmd(
        base, "--database", str(readonly / "wfm.db"), "--socket", str(base / "run" / "s.sock")
    )
    assert sha256(readonly / "wfm.db") == digest
    assert done.returncode == EXIT_STORAGE, (runner.who, done.stderr)
    assert_one_clear_error(done.stderr.splitlines(), str(readonly / "wfm.db"))


def test_socket_under_a_regular_file_exits_6(daemon_root: Daemon, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("I am a file\n")
    for socket_path in (blocker / "wfmd.sock", blocker / "run" / "wfmd.sock"):
        daemon_root.socket = socket_path
        daemon_root.log_path.unlink(missing_ok=True)
        code, lines, _ = daemon_root.refusal()
        assert code == EXIT_RUNTIME_DIR, "\n".join(lines)
        assert_one_clear_error(lines, str(blocker))
    assert blocker.read_text() == "I am a file\n"


@pytest.mark.parametrize("case", ["parent-not-creatable", "directory-not-writable"])
def test_unusable_runtime_directory_exits_6(
    unprivileged: tuple[Unprivileged, Path], case: str
) -> None:
    runner, base = unprivileged
    runner.own(base)
    data = private_dir(runner, base / "data", 0o700)
    locked = private_dir(runner, base / "locked", 0o555)
    socket_dir = locked / "run" if case == "parent-not-creatable" else locked
    done = runner.wfmd(
        base, "--database", str(data / "wfm.db"), "--socket", str(socket_dir / "wfmd.sock")
    )
    assert done.returncode == EXIT_RUNTIME_DIR, (runner.who, done.stderr)
    assert_one_clear_error(done.stderr.splitlines(), str(socket_dir))
