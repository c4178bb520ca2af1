"""`wfmctl stats`: outcomes and durations per workflow, over a window of history.

Exact durations come from an imported workflow-manager history, whose times are given; live
runs show that the daemon's own executions count too.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from conftest import Daemon
from test_import import SCHEMA

DAY = "2025-06-01"


def write_history(path: Path) -> None:
    """Twenty completed runs of `report` lasting 1 to 20 s, two failures, one cancellation."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    rows: list[tuple[Any, ...]] = []
    for n in range(1, 21):
        start = f"{DAY}T10:{n:02d}:00+00:00"
        end = f"{DAY}T10:{n:02d}:{n:02d}+00:00"
        rows.append((str(uuid.uuid4()), "report", "Completed", start, end, 0))
    rows.append((str(uuid.uuid4()), "report", "Failed", f"{DAY}T11:00:00+00:00", None, 1))
    rows.append((str(uuid.uuid4()), "report", "Failed", f"{DAY}T11:30:00+00:00", None, 3))
    rows.append((str(uuid.uuid4()), "report", "Cancelled", f"{DAY}T12:00:00+00:00", None, None))
    conn.executemany(
        "INSERT INTO executions (id, workflow_id, status, start_time, end_time, exit_code)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.commit()
    conn.close()


def stats(daemon: Daemon, *args: str) -> Any:
    result = daemon.wfmctl("stats", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_outcomes_durations_and_last_failure(daemon: Daemon, tmp_path: Path) -> None:
    source = tmp_path / "executions.db"
    write_history(source)
    assert daemon.wfmctl("import", str(source), "--yes").returncode == 0
    daemon.run_and_wait("echo_params", message="one")
    daemon.run_and_wait("always_fails")

    reply = stats(daemon)
    assert [w["workflow_id"] for w in reply["workflows"]] == [
        "always_fails",
        "echo_params",
        "report",
    ]
    report = reply["workflows"][2]
    assert (report["runs"], report["completed"], report["failed"]) == (23, 20, 2)
    assert (report["cancelled"], report["active"]) == (1, 0)
    assert report["success_rate"] == 20 / 23
    assert report["p50_duration"] == 10.5  # halfway between 10 s and 11 s
    assert report["p95_duration"] == 19.05  # SQLite's percentile interpolates
    assert report["last_failure_reason"] == "exited with status 3"
    assert report["last_failure"] == 1748777400.0  # 11:30 UTC
    fails = reply["workflows"][0]
    assert (fails["runs"], fails["failed"], fails["success_rate"]) == (1, 1, 0.0)
    assert fails["p50_duration"] is None
    echo = reply["workflows"][1]
    assert (echo["runs"], echo["completed"], echo["success_rate"]) == (1, 1, 1.0)
    assert echo["p50_duration"] is not None and echo["p50_duration"] >= 0

    one = stats(daemon, "--workflow", "report")
    assert one["workflows"] == [report]
    recent = stats(daemon, "--since", "1d")  # the imported runs are older
    assert [w["workflow_id"] for w in recent["workflows"]] == ["always_fails", "echo_params"]
    assert stats(daemon, "--since", "1d", "--workflow", "report")["workflows"] == []

    table = daemon.wfmctl("stats")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "WORKFLOW", "RUNS", "OK", "FAILED", "CANCELLED", "SUCCESS", "P50", "P95", "LAST", "RUN"
    ]  # fmt: skip
    assert lines[3].split()[:8] == ["report", "23", "20", "2", "1", "87%", "10.5s", "19.0s"]
    assert any("exited with status 3" in line for line in lines)


def test_nothing_to_count(daemon: Daemon) -> None:
    assert stats(daemon)["workflows"] == []
    result = daemon.wfmctl("stats", "--since", "2d")
    assert result.returncode == 0
    assert result.stdout.startswith("no executions since ")
