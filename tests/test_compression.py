"""Compression of cold history: rows in sqlar format, read back identically by every
reader (logs, tail, pages, follow, export, the views in the stock sqlite3 shell)."""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import Daemon, MakeDaemon, metadata, write_workflow

from wfmctl import protocol
from wfmd.housekeeping.compression import MAX_ROWS
from wfmd.store.compression import rows_to_pack
from wfmd.store.logs import key_range
from wfmd.store.sqlar import pack, unpack

SQLITE3 = shutil.which("sqlite3")

BODY = r"""
sys.stdout.buffer.write(b"plain\n\xff not utf-8\n")
sys.stdout.flush()
sys.stderr.write('__WF_EVENT__:{"type": "phase_started", "phase": 1, "name": "P1",'
                 ' "total_phases": 2}\n')
sys.stderr.flush()
for i in range(5000):
    print(f"{i:06d} INFO worker: processed item {i * 7919 % 100003} in {i % 97} ms")
    if i % 2000 == 0:
        sys.stdout.flush()
        print("x" * 200000, file=sys.stderr, flush=True)
sys.stdout.write("no newline at the end")
"""


def test_pack_follows_sqlar_rules() -> None:
    text = b"hello world\n" * 1000
    stored, size = pack(text)
    assert size == len(text) and stored == zlib.compress(text, 6) and len(stored) < len(text)
    assert unpack(stored, size) == text
    noise = bytes(range(256))
    assert pack(noise) == (noise, len(noise))  # kept as is: sz == length(data)
    assert unpack(noise, len(noise)) == noise and unpack(noise, None) == noise


def snapshot(d: Daemon, handle: str, tmp_path: Path, name: str) -> dict[str, Any]:
    """Everything every reader serves of the execution."""
    out: dict[str, Any] = {}
    with d.client() as client:
        out["logs"] = [protocol.to_builtins(e) for e in client.iter_logs(handle, limit=777)]
        out["tail"] = protocol.to_builtins(client.logs(handle, tail=10))
        out["page"] = protocol.to_builtins(client.logs(handle, after=3000, limit=50))
        out["follow"] = [protocol.to_builtins(x) for x in client.follow(handle, after=4990)]
    for fmt in ("jsonl", "text"):
        target = tmp_path / f"{name}.{fmt}"
        done = d.wfmctl("export", handle, "--format", fmt, "-o", str(target))
        assert done.returncode == 0, done.stderr
        out[fmt] = target.read_bytes()
    if SQLITE3 is not None:
        for view in ("log_entries_view", "log_rows_view"):
            shell = subprocess.run(
                [SQLITE3, "-json", str(d.database)],
                input=f"SELECT * FROM {view} WHERE handle_id = '{handle}';".encode(),
                capture_output=True,
                check=True,
            )
            out[view] = json.loads(shell.stdout.decode("utf-8", "replace"))
    return out


def stored(d: Daemon) -> tuple[int, int, int]:
    """(rows compressed, their bytes as stored, as printed)."""
    conn = apsw.Connection(str(d.database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        row = conn.execute(
            "SELECT count(*), coalesce(sum(length(data)), 0), coalesce(sum(raw_size), 0)"
            " FROM execution_logs WHERE raw_size IS NOT NULL AND raw_size <> length(data)"
        ).get
    finally:
        conn.close()
    assert isinstance(row, tuple)
    return row[0], row[1], row[2]


def test_compressed_rows_read_back_identically_everywhere(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    write_workflow(workflow_dir, "mixed", BODY, metadata("mixed"))
    d = make_daemon(["--retention-interval", "0", "--compress-after", "3600"]).start()
    handle = d.run_and_wait("mixed")
    before = snapshot(d, handle, tmp_path, "before")
    assert stored(d)[0] == 0
    assert len(before["logs"]) == 2 + 1 + 5000 + 3 + 1
    if SQLITE3 is not None:
        assert len(before["log_entries_view"]) == len(before["logs"])

    # The same history, now cold: compress_after is what says so.
    d.stop()
    d.extra_args = ["--retention-interval", "0", "--compress-after", "0.001"]
    d.start()

    with d.client() as client:
        reply = client.prune(keep=1000)  # removes nothing; compresses what is cold
        assert reply.executions_removed == 0
        info = client.info()
    rows, size, raw = stored(d)
    assert rows >= 5 and size < raw * 0.45, (rows, size, raw)

    after = snapshot(d, handle, tmp_path, "after")
    assert after == before
    # Nothing left to do: a second pass compresses nothing.
    with d.client() as client:
        client.prune(keep=1000)
        info = client.info()
    assert info.last_retention is not None and info.last_retention.bytes_compressed == 0


@pytest.mark.skipif(SQLITE3 is None, reason="no sqlite3 shell")
def test_the_stock_shell_reads_a_compressed_row(tmp_path: Path) -> None:
    """What sqlite3's own sqlar_uncompress makes of what wfmd stores."""
    assert SQLITE3 is not None
    text = b"line of text\n" * 500
    data, size = pack(text)
    db = tmp_path / "t.db"
    conn = apsw.Connection(str(db))
    conn.execute("CREATE TABLE t (data BLOB, raw_size INTEGER)")
    conn.execute("INSERT INTO t VALUES (?, ?), (?, ?)", (data, size, b"as is\n", 6))
    conn.close()
    done = subprocess.run(
        [SQLITE3, str(db), "SELECT hex(sqlar_uncompress(data, raw_size)) FROM t"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == [text.hex().upper(), b"as is\n".hex().upper()]


def test_a_compression_step_holds_at_most_its_bytes(
    make_daemon: MakeDaemon, workflow_dir: Path
) -> None:
    """Regression: a step took up to MAX_ROWS rows whatever their size, and rows of huge
    lines are megabytes each: 64 of them held ~200 MB (the long event fuzz saw wfmd jump past
    its RSS bound ten minutes in, when the first compression pass came)."""
    body = "for i in range(12):\n    print(str(i) * 2_500_000, flush=True)\n"
    write_workflow(workflow_dir, "huge", body, metadata("huge"))
    d = make_daemon(["--retention-interval", "0"]).start()
    handle = d.run_and_wait("huge")
    d.stop()
    conn = apsw.Connection(str(d.database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        eid = conn.execute("SELECT id FROM executions WHERE handle = ?", (handle,)).get
        assert isinstance(eid, int)
        biggest = conn.execute(
            "SELECT max(length(data)) FROM execution_logs WHERE id BETWEEN ? AND ?",
            key_range(eid),
        ).get
        assert isinstance(biggest, int)
        step = 8 * 1024 * 1024
        rows, done = rows_to_pack(conn, [eid], MAX_ROWS, step)
        assert sum(len(data) for _, data in rows) < step + biggest
        assert done == []  # rows are left for the next step
        everything, done = rows_to_pack(conn, [eid], MAX_ROWS, 1 << 40)
        assert sum(len(data) for _, data in everything) >= 30_000_000
        assert done == [eid] and everything[: len(rows)] == rows
    finally:
        conn.close()
