"""The SQL views, as people read them with `sqlite3`: the same lines as `wfmctl logs`, and
query plans that go through the indexes (a view that scans every log row is unusable on a
real history, however right its answers).

The views are read with the sqlite3 module of the Python running the tests, which uses the
system's SQLite library; test_store.py also reads them with the system's `sqlite3` program.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path

from conftest import Daemon, MakeDaemon, metadata, write_workflow

# Lines a workflow prints: what JSON-escaping must not change, and rows of many lines.
TRICKY = [
    r"back\slash and \n as text, \\n too",
    '"quoted" and {"json": [1, 2]}',
    "tab\there, ESC \x1b[31mred\x1b[0m, bell \x07",
    "ünïcødé 東京 🙂",
    "",
    "carriage\rreturn",
    '__WF_EVENT__:{"type": "task_progress", "task_id": "t", "message": "m \\" q"}',
]

BODY = (
    f"lines = {TRICKY!r}\n"
    + """
for line in lines:
    print(line, flush=True)
sys.stderr.write("to stderr\\n")
sys.stderr.flush()
sys.stdout.write("".join(f"bulk {i}\\n" for i in range(3000)))
sys.stdout.write("no newline at the end")
"""
)


def read_only(path: Path) -> sqlite3.Connection:
    """The database as a program reads it: the `sqlite3` shell has `sqlar_uncompress` built
    in, and the README shows how to define it elsewhere, as here."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.text_factory = lambda data: data.decode("utf-8", "replace")
    conn.create_function("sqlar_uncompress", 2, sqlar_uncompress, deterministic=True)
    return conn


def sqlar_uncompress(data: bytes, size: int | None) -> bytes:
    if not size or size == len(data):
        return data
    return zlib.decompress(data)


def plan(conn: sqlite3.Connection, sql: str, *args: object) -> str:
    return "\n".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))


def test_log_entries_view_matches_wfmctl_logs(make_daemon: MakeDaemon, workflow_dir: Path) -> None:
    write_workflow(workflow_dir, "tricky", BODY, metadata("tricky"))
    daemon = make_daemon().start()
    handle = daemon.run_and_wait("tricky")
    logs = daemon.wfmctl("logs", handle, "--json")
    assert logs.returncode == 0, logs.stderr
    entries = json.loads(logs.stdout)["entries"]
    assert len(entries) == len(TRICKY) + 1 + 3000 + 1

    with read_only(daemon.database) as conn:
        rows = conn.execute(
            "SELECT seq, stream, type, line FROM log_entries_view WHERE handle_id = ? ORDER BY seq",
            (handle,),
        ).fetchall()
        assert rows == [(e["seq"], e["stream"], e["type"], e["line"]) for e in entries]
        (count,) = conn.execute(
            "SELECT sum(lines) FROM log_rows_view WHERE handle_id = ?", (handle,)
        ).fetchone()
        assert count == len(entries)
        (received_at, received) = conn.execute(
            "SELECT received_at, received FROM log_entries_view WHERE handle_id = ? AND seq = 0",
            (handle,),
        ).fetchone()
        assert abs(received_at / 1000 - entries[0]["ts"]) < 0.001
        assert received.endswith("Z")
        row = conn.execute(
            "SELECT workflow_id, ended_by, created_at, started_at, ended_at, log_count"
            " FROM executions_view WHERE handle_id = ?",
            (handle,),
        ).fetchone()
        assert row[0] == "tricky" and row[1] == "exit"
        assert row[2] <= row[3] <= row[4]
        assert row[5] == len(entries)


def test_views_go_through_the_indexes(daemon: Daemon) -> None:
    handle = daemon.run_and_wait("echo_params", message="planned")
    with read_only(daemon.database) as conn:
        for view in ("log_entries_view", "log_rows_view"):
            found = plan(conn, f"SELECT * FROM {view} WHERE handle_id = ?", handle)
            assert "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in found, found
            assert "SCAN l\n" not in found + "\n" and "SCAN l " not in found, found
        newest = plan(conn, "SELECT * FROM executions_view ORDER BY created_at DESC LIMIT 5")
        assert "USING INDEX executions_by_created" in newest, newest
        assert "TEMP B-TREE" not in newest, newest
        one = plan(conn, "SELECT * FROM executions_view WHERE handle_id = ?", handle)
        assert "(handle=?)" in one, one
