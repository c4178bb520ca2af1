"""`wfmctl import`: the original workflow-manager's history, brought into wfmd's.

The source database is built with exactly workflow-manager's schema (as rusqlite wrote it,
in WAL mode), with every log type, a stale Running row, an execution without logs, a
non-ASCII line and rows that cannot be mapped; the result is queried through `wfmctl`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from conftest import WFMCTL, Daemon, MakeDaemon

SCHEMA = """
CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    workflow_name TEXT,
    status TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT,
    exit_code INTEGER,
    binary_path TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE execution_params (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    param_name TEXT NOT NULL,
    param_value TEXT NOT NULL,
    UNIQUE(execution_id, param_name)
);
CREATE TABLE execution_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    sequence INTEGER NOT NULL,
    timestamp TEXT NOT NULL,
    log_type TEXT NOT NULL,
    log_data TEXT NOT NULL
);
CREATE TABLE schema_version (version INTEGER PRIMARY KEY,
                             applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE INDEX idx_executions_workflow_id ON executions(workflow_id);
CREATE INDEX idx_executions_status ON executions(status);
CREATE INDEX idx_executions_start_time ON executions(start_time DESC);
CREATE INDEX idx_execution_params_execution_id ON execution_params(execution_id);
CREATE INDEX idx_execution_logs_execution_sequence ON execution_logs(execution_id, sequence);
"""

DONE = "6f1d3c3e-0d2a-4c55-9a59-0a4f8f3f2b01"  # Completed, every log type
FAILED = "6f1d3c3e-0d2a-4c55-9a59-0a4f8f3f2b02"  # Failed with exit code 3, no logs
STALE = "6f1d3c3e-0d2a-4c55-9a59-0a4f8f3f2b03"  # left Running
NOT_A_UUID = "run-17"

# Every log type of workflow-manager, as its log_data JSON (nulls for absent fields).
ENTRIES: list[tuple[str, dict[str, Any]]] = [
    ("PhaseStarted", {"type": "phase_started", "phase": 1, "name": "Research", "total_phases": 2}),
    (
        "TaskStarted",
        {
            "type": "task_started",
            "phase": 1,
            "task_id": "t1",
            "description": "look",
            "total_tasks": None,
        },
    ),
    ("TaskProgress", {"type": "task_progress", "task_id": "t1", "message": "half way"}),
    (
        "AgentStarted",
        {
            "type": "agent_started",
            "task_id": "t1",
            "agent_name": "searcher",
            "description": "searches",
        },
    ),
    (
        "AgentMessage",
        {
            "type": "agent_message",
            "task_id": "t1",
            "agent_name": "searcher",
            "message": "Zürich — 東京",
        },
    ),
    (
        "AgentCompleted",
        {"type": "agent_completed", "task_id": "t1", "agent_name": "searcher", "result": None},
    ),
    ("AgentFailed", {"type": "agent_failed", "task_id": "t1", "agent_name": "b", "error": "quota"}),
    ("TaskCompleted", {"type": "task_completed", "task_id": "t1", "result": "done"}),
    ("TaskFailed", {"type": "task_failed", "task_id": "t2", "error": "boom"}),
    (
        "StateFileCreated",
        {
            "type": "state_file_created",
            "phase": 1,
            "file_path": "/tmp/s.json",
            "description": "state",
        },
    ),
    ("PhaseCompleted", {"type": "phase_completed", "phase": 1, "name": "Research"}),
    ("PhaseFailed", {"type": "phase_failed", "phase": 2, "name": "Write", "error": "no"}),
    ("RawOutput", {"type": "raw_output", "stream": "stdout", "line": "plain line ünïcødé"}),
    ("RawOutput", {"type": "raw_output", "stream": "stderr", "line": "a warning"}),
]


def build_source(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(SCHEMA)
    conn.executemany(
        "INSERT INTO executions (id, workflow_id, workflow_name, status, start_time, end_time,"
        " exit_code, binary_path, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                DONE,
                "research",
                "Research",
                "Completed",
                "2025-11-25T14:19:05.123456789+01:00",
                "2025-11-25T14:20:00.5+01:00",
                0,
                "/opt/wf/research",
                "2025-11-25T14:19:05+01:00",
                "2025-11-25T14:20:00+01:00",
            ),
            (
                FAILED,
                "build",
                "Build",
                "Failed",
                "2025-11-26T09:00:00+00:00",
                "2025-11-26T09:00:07+00:00",
                3,
                "/opt/wf/build",
                "x",
                "x",
            ),
            (
                STALE,
                "build",
                "Build",
                "Running",
                "2025-11-27T10:00:00+00:00",
                None,
                None,
                "/opt/wf/build",
                "x",
                "x",
            ),
            (
                NOT_A_UUID,
                "build",
                "Build",
                "Completed",
                "2025-11-27T11:00:00+00:00",
                None,
                0,
                None,
                "x",
                "x",
            ),
        ],
    )
    conn.executemany(
        "INSERT INTO execution_params (execution_id, param_name, param_value) VALUES (?, ?, ?)",
        [(DONE, "topic", "rust"), (DONE, "depth", ""), (FAILED, "target", "all")],
    )
    logs = [
        (DONE, seq, f"2025-11-25T14:19:{10 + seq:02d}.000000001+01:00", kind, json.dumps(data))
        for seq, (kind, data) in enumerate(ENTRIES)
    ]
    logs.append((DONE, len(ENTRIES), "2025-11-25T14:19:59+01:00", "TaskProgress", "{not json"))
    logs.append(
        (
            STALE,
            0,
            "2025-11-27T10:00:01+00:00",
            "RawOutput",
            json.dumps({"type": "raw_output", "stream": "stdout", "line": "started"}),
        )
    )
    conn.executemany(
        "INSERT INTO execution_logs (execution_id, sequence, timestamp, log_type, log_data)"
        " VALUES (?, ?, ?, ?, ?)",
        logs,
    )
    conn.commit()
    conn.close()  # the last connection: SQLite checkpoints and removes the -wal file


def wfmctl_json(daemon: Daemon, *args: str) -> Any:
    result = daemon.wfmctl(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_import_maps_every_execution_and_entry(daemon: Daemon, tmp_path: Path) -> None:
    source = tmp_path / "wm" / "executions.db"
    source.parent.mkdir()
    build_source(source)
    before = digest(source)
    already = daemon.run_and_wait("echo_params", message="from wfm")

    report = wfmctl_json(daemon, "import", str(source), "--yes")
    assert report["found"] == 4
    assert report["imported"] == 3
    assert report["already_present"] == 0
    assert report["log_entries"] == len(ENTRIES) + 2
    assert report["kept_as_raw"] == 1  # the entry whose JSON is broken, kept as its text
    assert report["unfinished"] == 1
    assert report["out_of_order"] == 0
    assert report["unmapped"] == [f"{NOT_A_UUID}: its id is not a UUID"]
    # From 2025: older than the default max_age_days (30), so retention would remove them.
    assert report["retention_removes"] == {"research": 1, "build": 2}
    assert digest(source) == before
    assert sorted(p.name for p in source.parent.iterdir()) == ["executions.db"]

    done = wfmctl_json(daemon, "status", DONE)
    assert done["status"] == "Completed"
    assert done["workflow_id"] == "research"
    assert done["workflow_name"] == "Research"
    assert done["created_at"] == 1764076745.123  # 13:19:05.123 UTC, to the millisecond
    assert done["ended_at"] == 1764076800.5
    assert done["exit_code"] == 0
    assert done["log_count"] == len(ENTRIES) + 1
    assert wfmctl_json(daemon, "params", DONE)["params"] == {"topic": "rust", "depth": ""}

    entries = wfmctl_json(daemon, "logs", DONE)["entries"]
    assert [e["seq"] for e in entries] == list(range(len(ENTRIES) + 1))
    assert [e["type"] for e in entries[: len(ENTRIES)]] == [d["type"] for _, d in ENTRIES]
    message = entries[4]
    assert message["event"] == {
        "task_id": "t1",
        "agent_name": "searcher",
        "message": "Zürich — 東京",
    }
    assert message["ts"] == 1764076754.0  # 14:19:14+01:00
    assert entries[12]["line"] == "plain line ünïcødé"
    assert entries[12]["stream"] == "stdout"
    assert entries[13]["stream"] == "stderr"
    assert entries[-1]["type"] == "raw_output"
    assert entries[-1]["line"] == "{not json"

    failed = wfmctl_json(daemon, "status", FAILED)
    assert (failed["status"], failed["exit_code"], failed["ended_by"]) == ("Failed", 3, "exit")
    assert failed["log_count"] == 0
    assert daemon.wfmctl("logs", FAILED).stdout == ""
    stale = wfmctl_json(daemon, "status", STALE)
    assert stale["status"] == "Failed"
    assert stale["ended_by"] == "daemon_died"
    assert "imported unfinished" in stale["reason"]
    assert daemon.wfmctl("wait", STALE).returncode == 125  # failed with no exit code

    # Newest first: the run made here, then the imported ones by their own times; and a
    # time filter selects imported executions by the times they were created.
    listed = wfmctl_json(daemon, "history")["executions"]
    assert [e["handle"] for e in listed] == [already, STALE, FAILED, DONE]
    window = wfmctl_json(daemon, "history", "--since", "2025-11-26", "--until", "2025-11-27")
    assert [e["handle"] for e in window["executions"]] == [FAILED]


def test_workflows_with_limits_of_their_own_keep_their_history(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    config = tmp_path / "keep.toml"
    config.write_text("[retention.workflows.build]\nmax_age_days = 0\nmax_executions = 0\n")
    daemon = make_daemon(["--config", str(config)]).start()
    source = tmp_path / "executions.db"
    build_source(source)
    plan = wfmctl_json(daemon, "import", str(source), "--dry-run")
    assert plan["retention_removes"] == {"research": 1}


def test_import_again_adds_nothing(daemon: Daemon, tmp_path: Path) -> None:
    source = tmp_path / "executions.db"
    build_source(source)
    first = wfmctl_json(daemon, "import", str(source), "--yes")
    assert first["imported"] == 3
    again = daemon.wfmctl("import", str(source), "--yes")
    assert again.returncode == 0, again.stderr
    assert "would import 0 executions" in again.stdout
    assert "already here (skipped): 3" in again.stdout
    assert len(wfmctl_json(daemon, "history")["executions"]) == 3


def test_dry_run_and_no_answer_change_nothing(daemon: Daemon, tmp_path: Path) -> None:
    source = tmp_path / "executions.db"
    build_source(source)
    plan = wfmctl_json(daemon, "import", str(source), "--dry-run")
    assert (plan["dry_run"], plan["imported"], plan["log_entries"]) == (True, 3, len(ENTRIES) + 2)
    refused = daemon.wfmctl("import", str(source))  # stdin is no terminal: no one to ask
    assert refused.returncode == 2
    assert "would import 3 executions" in refused.stderr
    assert "retention would remove 3 of them at its next run" in refused.stderr
    assert "[retention.workflows.build]" in refused.stderr
    assert "--yes" in refused.stderr
    assert wfmctl_json(daemon, "history")["executions"] == []


def test_unreadable_sources_are_refused(daemon: Daemon, tmp_path: Path) -> None:
    missing = daemon.wfmctl("import", str(tmp_path / "nothing.db"), "--yes")
    assert missing.returncode == 66
    assert "no workflow-manager database at" in missing.stderr
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    wrong = daemon.wfmctl("import", str(other), "--yes")
    assert wrong.returncode == 1
    assert "is not a workflow-manager history database" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    unreadable = daemon.wfmctl("import", str(garbage), "--yes")
    assert unreadable.returncode == 1
    assert "cannot read" in unreadable.stderr
    assert daemon.wfmctl("ping").returncode == 0


def test_asks_on_a_terminal(daemon: Daemon, tmp_path: Path) -> None:
    source = tmp_path / "executions.db"
    build_source(source)
    for answer, code, listed in ((b"n\n", 1, 0), (b"y\n", 0, 3)):
        primary, secondary = pty.openpty()
        try:
            proc = subprocess.Popen(
                [WFMCTL, "import", str(source)],
                stdin=secondary,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(os.environ, WFM_SOCKET=str(daemon.socket)),
            )
            os.write(primary, answer)
            _, err = proc.communicate(timeout=60)
        finally:
            os.close(primary)
            os.close(secondary)
        assert proc.returncode == code, err
        assert b"import 3 executions? [y/N]" in err
        assert len(wfmctl_json(daemon, "history")["executions"]) == listed
