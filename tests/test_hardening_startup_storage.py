"""A full disk at start-up exits 7 with one line.

Before, a full state directory made wfmd exit 1 with a traceback (writing its pid into the
lock file), and a little room left gave exit 7 with SQLite's own diagnostics logged as errors
before the daemon's line. Each case runs on a small tmpfs mounted for the test (it needs
root; it skips when the mount fails), filled to leave a few KiB or nothing: the lock file,
the new database, the WAL of an existing one each meet the full disk in turn.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import MakeDaemon, small_tmpfs

from wfmd.main import EXIT_STORAGE

# A new database takes ~200 KiB (16 KiB pages, the WAL); an existing one needs room for its
# WAL and shared-memory file to open.
FRESH_FS = "256k"
EXISTING_FS = "1m"


def fill(directory: Path, leave: int) -> None:
    """Take all of `directory`'s file system but `leave` bytes."""
    stats = os.statvfs(directory)
    size = max(stats.f_bavail * stats.f_frsize - leave, 0)
    with (directory / "filler").open("wb") as f:
        while size > 0:
            written = f.write(b"\0" * min(size, 64 * 1024))
            size -= written
    assert os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize <= leave


def assert_one_line(code: int, lines: list[str], *needles: str) -> None:
    assert code == EXIT_STORAGE, (code, lines)
    assert len(lines) == 1, lines
    assert " ERROR wfmd: " in lines[0], lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    print("\n" + lines[0].split(" ERROR ", 1)[1])


@pytest.mark.parametrize("leave_kib", [0, 4, 16, 64])
def test_full_disk_before_the_first_start(
    make_daemon: MakeDaemon, tmp_path: Path, leave_kib: int
) -> None:
    with small_tmpfs(tmp_path / "state", FRESH_FS) as state:
        fill(state, leave_kib * 1024)
        daemon = make_daemon()
        daemon.database = state / "wfm.db"
        code, lines, _ = daemon.refusal()
        assert_one_line(code, lines, str(daemon.database))
        if leave_kib == 0:
            assert "lock file" in lines[0] and "No space left on device" in lines[0], lines


@pytest.mark.parametrize("leave_kib", [0, 4, 16, 64])
def test_full_disk_under_an_existing_database(
    make_daemon: MakeDaemon, tmp_path: Path, leave_kib: int
) -> None:
    with small_tmpfs(tmp_path / "state", EXISTING_FS) as state:
        daemon = make_daemon()
        daemon.database = state / "wfm.db"
        daemon.start()
        assert daemon.stop() == 0
        before = hashlib.sha256(daemon.database.read_bytes()).hexdigest()
        daemon.log_path.unlink()
        fill(state, leave_kib * 1024)
        code, lines, _ = daemon.refusal()
        assert_one_line(code, lines, str(daemon.database))
        assert hashlib.sha256(daemon.database.read_bytes()).hexdigest() == before
