"""`wfmctl mcp` against the real daemon, through the SDK's own client over stdio.

Most tests share one daemon and one server (starting an MCP server costs seconds: the SDK's
imports); the ones that stop and start the daemon get their own.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Daemon,
    MakeDaemon,
    kill_leftovers,
    metadata,
    text_field,
    write_workflow,
)
from test_cli_imports import imported_modules
from test_cli_support import run_python
from test_mcp_support import DEFAULT_MAX_OUTPUT, McpClient, text_of

from wfmctl.cli.exit_codes import EXIT_UNAVAILABLE

TOOLS = {
    "list_workflows",
    "execute_workflow",
    "get_workflow_status",
    "get_workflow_logs",
    "cancel_workflow",
    "list_execution_history",
    "get_execution_params",
    "get_workflow_history",
    "wait_for_workflow",
    "search_logs",
}
FINISHED = {"Completed", "Failed", "Cancelled"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")
BIG_LINES = 1_000_000


def number_field(name: str) -> dict[str, object]:
    return {**text_field(name), "field_type": {"type": "number", "min": 0, "max": 100}}


def write_test_workflows(directory: Path) -> None:
    write_workflow(
        directory,
        "sleeper",
        """
        print("started", flush=True)
        time.sleep(600)
        """,
        metadata("sleeper"),
    )
    write_workflow(
        directory,
        "typed",
        """
        print(" ".join(sys.argv[1:]), flush=True)
        """,
        metadata("typed", number_field("count"), number_field("ratio"), text_field("flag")),
    )
    write_workflow(
        directory,
        "flood",
        """
        n = int(sys.argv[2])
        out = sys.stdout.buffer
        for start in range(0, n, 100_000):
            out.write(b"".join(b"line %d\\n" % i for i in range(start, min(n, start + 100_000))))
        out.flush()
        """,
        metadata("flood", text_field("lines", required=True)),
    )
    write_workflow(directory, "quick", "print('done', flush=True)\n", metadata("quick"))


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    import wfmd.workflows.discovery

    root = tmp_path_factory.mktemp("mcp")
    workflows = root / "workflows"
    write_test_workflows(workflows)
    daemon = Daemon(root, [workflows, wfmd.workflows.discovery.EXAMPLES_DIR], [])
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        assert not kill_leftovers(daemon.tag)


@pytest.fixture(scope="module")
def mcp(shared_daemon: Daemon) -> Iterator[McpClient]:
    with McpClient(shared_daemon.socket, errlog=shared_daemon.root / "mcp.log") as client:
        yield client


def wait_ended(mcp: McpClient, handle: str) -> dict[str, Any]:
    result = mcp.ok("wait_for_workflow", handle_id=handle, timeout_seconds=60)
    assert result["ended"], result
    return result


def run_to_end(mcp: McpClient, workflow_id: str, **parameters: Any) -> dict[str, Any]:
    started = mcp.ok("execute_workflow", workflow_id=workflow_id, parameters=parameters)
    return wait_ended(mcp, started["handle_id"])


# --------------------------------------------------------------------------- the tools


def test_tools_and_their_schemas(mcp: McpClient) -> None:
    assert mcp.initialized.server_info.name == "workflow_manager"
    tools = {t.name: t for t in mcp.run(mcp.session.list_tools).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 80, tool.name
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
    execute = tools["execute_workflow"].input_schema
    assert execute["required"] == ["workflow_id"]
    values = execute["properties"]["parameters"]["anyOf"][0]["additionalProperties"]["anyOf"]
    assert {v["type"] for v in values} == {"string", "integer", "number", "boolean", "null"}
    assert execute["properties"]["wait_seconds"]["anyOf"][0]["maximum"] == 300
    logs = tools["get_workflow_logs"].input_schema["properties"]
    assert logs["limit"]["default"] == 50
    assert set(logs) == {"handle_id", "limit", "after_seq", "before_seq", "types"}
    assert "phase_started" in logs["types"]["anyOf"][0]["items"]["enum"]
    history = tools["list_execution_history"].input_schema["properties"]
    assert history["limit"]["default"] == 10 and history["offset"]["default"] == 0
    assert set(history) == {"limit", "offset", "workflow_id", "status", "since", "until"}
    wait = tools["wait_for_workflow"].input_schema["properties"]
    assert set(wait) == {"handle_id", "timeout_seconds"}  # the context is not an argument
    assert wait["timeout_seconds"]["maximum"] == 300
    status = tools["get_workflow_status"].output_schema
    assert status is not None
    assert {"handle_id", "workflow_name", "ended_by", "queue_position"} <= set(status["required"])


def test_list_workflows(mcp: McpClient) -> None:
    listed = mcp.ok("list_workflows")
    by_id = {w["id"]: w for w in listed["workflows"]}
    assert {"multi_phase", "echo_params", "always_fails", "typed"} <= set(by_id)
    [phases, _] = by_id["multi_phase"]["fields"]
    assert phases["name"] == "phases"
    assert phases["field_type"] == {"type": "number", "min": 1, "max": 5}
    assert phases["default"] == "3" and phases["required"] is False
    one = mcp.ok("list_workflows", workflow_id="echo_params")
    assert [w["id"] for w in one["workflows"]] == ["echo_params"]


def test_multi_phase_followed_to_completion(mcp: McpClient) -> None:
    started = mcp.ok(
        "execute_workflow", workflow_id="multi_phase", parameters={"phases": 2, "delay": 0.02}
    )
    handle = started["handle_id"]
    assert started["workflow_id"] == "multi_phase"
    assert started["status"] in {"NotStarted", "Running"}
    seen = []
    deadline = time.monotonic() + 60
    while True:
        status = mcp.ok("get_workflow_status", handle_id=handle)
        seen.append(status["status"])
        if status["status"] in FINISHED or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status["status"] == "Completed", status
    assert status["exit_code"] == 0 and status["ended_by"] == "exit"
    assert status["workflow_name"] == "Multi Phase"
    assert all(RFC3339.match(status[k]) for k in ("accepted_time", "start_time", "end_time"))
    assert status["log_count"] > 20
    assert "Running" in seen or len(seen) == 1  # followed while it ran (or it was that quick)


def test_logs_with_and_without_after_seq_and_types(mcp: McpClient) -> None:
    ended = run_to_end(mcp, "multi_phase", phases=2, delay=0)
    handle, count = ended["handle_id"], ended["log_count"]

    last = mcp.ok("get_workflow_logs", handle_id=handle, limit=5)
    assert [e["seq"] for e in last["entries"]] == list(range(count - 5, count))
    assert last["finished"] and not last["has_more"]
    assert last["next_before_seq"] == count - 5 and f"before_seq={count - 5}" in last["hint"]
    assert all(RFC3339.match(e["timestamp"]) for e in last["entries"])
    default = mcp.ok("get_workflow_logs", handle_id=handle)
    assert len(default["entries"]) == min(50, count)

    earlier = mcp.ok("get_workflow_logs", handle_id=handle, limit=5, before_seq=count - 5)
    assert [e["seq"] for e in earlier["entries"]] == list(range(count - 10, count - 5))

    entries: list[dict[str, Any]] = []
    after = -1
    while True:
        page = mcp.ok("get_workflow_logs", handle_id=handle, limit=7, after_seq=after)
        entries += page["entries"]
        after = page["next_after_seq"]
        if not page["has_more"]:
            break
    assert page["finished"]
    assert [e["seq"] for e in entries] == list(range(count))
    [done] = [e for e in entries if e.get("line") == "multi_phase: all phases completed"]
    assert done == {
        "seq": done["seq"],
        "timestamp": done["timestamp"],
        "type": "raw_output",
        "stream": "stdout",
        "line": "multi_phase: all phases completed",
    }
    started = [e for e in entries if e["type"] == "phase_started"]
    assert started[0] == {
        "seq": started[0]["seq"],
        "timestamp": started[0]["timestamp"],
        "type": "phase_started",
        "phase": 1,
        "name": "Phase 1",
        "total_phases": 2,
    }

    phases = mcp.ok(
        "get_workflow_logs", handle_id=handle, types=["phase_started", "phase_completed"]
    )
    expected = [e for e in entries if e["type"] in {"phase_started", "phase_completed"}]
    assert phases["entries"] == expected
    assert phases["scanned_from_seq"] == 0 and phases["scanned_to_seq"] == count - 1
    first = mcp.ok(
        "get_workflow_logs", handle_id=handle, after_seq=-1, limit=1, types=["phase_failed"]
    )
    [failed] = first["entries"]
    assert failed["type"] == "phase_failed" and failed["error"] == "task 2 failed"
    assert first["has_more"] and first["next_after_seq"] == failed["seq"]
    raw = mcp.ok("get_workflow_logs", handle_id=handle, after_seq=-1, types=["raw_output"])
    assert raw["entries"] == [e for e in entries if e["type"] == "raw_output"]
    assert {e["stream"] for e in raw["entries"]} == {"stdout", "stderr"}


def test_params_and_history(mcp: McpClient) -> None:
    handles = [
        run_to_end(mcp, "echo_params", message=f"hello {n}", count=n)["handle_id"]
        for n in (1, 2, 3)
    ]
    params = mcp.ok("get_execution_params", handle_id=handles[1])
    assert params == {
        "handle_id": handles[1],
        "workflow_id": "echo_params",
        "params": {"message": "hello 2", "count": "2"},
    }
    history = mcp.ok("get_workflow_history", workflow_id="echo_params")
    assert history["field_history"] == {
        "message": ["hello 3", "hello 2", "hello 1"],
        "count": ["3", "2", "1"],
    }
    only = mcp.ok("get_workflow_history", workflow_id="echo_params", field_name="count")
    assert only["field_history"] == {"count": ["3", "2", "1"]}

    listed = mcp.ok("list_execution_history", workflow_id="echo_params", limit=2)
    assert listed["total"] == 3 and listed["limit"] == 2 and listed["offset"] == 0
    assert [e["handle_id"] for e in listed["executions"]] == handles[:0:-1]
    assert listed["next_offset"] == 2
    item = listed["executions"][0]
    assert set(item) >= {
        "handle_id",
        "workflow_id",
        "workflow_name",
        "status",
        "start_time",
        "end_time",
        "exit_code",
    }
    assert item["workflow_name"] == "Echo Params" and item["exit_code"] == 0
    rest = mcp.ok("list_execution_history", workflow_id="echo_params", limit=2, offset=2)
    assert [e["handle_id"] for e in rest["executions"]] == handles[:1]
    assert rest["next_offset"] is None and rest["total"] == 3
    recent = mcp.ok("list_execution_history", workflow_id="echo_params", since="1h")
    assert recent["total"] == 3
    none = mcp.ok("list_execution_history", workflow_id="echo_params", until="2000-01-01")
    assert none["total"] == 0 and none["executions"] == []
    completed = mcp.ok("list_execution_history", workflow_id="echo_params", status="Completed")
    assert completed["total"] == 3
    bad = mcp.error("list_execution_history", since="last tuesday")
    assert "2h" in bad and "2026-11-26" in bad


def test_search_logs(mcp: McpClient) -> None:
    handles = [
        run_to_end(mcp, "echo_params", message=f"quokka sighting {n}", count=1)["handle_id"]
        for n in (1, 2)
    ]
    deadline = time.monotonic() + 10
    while {m["handle_id"] for m in mcp.ok("search_logs", query="quokka")["matches"]} != set(
        handles
    ):  # the index follows new rows in the background
        assert time.monotonic() < deadline
        time.sleep(0.1)
    found = mcp.ok("search_logs", query="quokka", limit=1, context=1)
    (match,) = found["matches"]
    assert match["handle_id"] == handles[1] and match["workflow_id"] == "echo_params"
    assert match["entry"]["type"] == "raw_output"
    assert "quokka sighting 2" in match["entry"]["line"]  # echo_params also prints its argv
    assert found["next_cursor"] is not None and "cursor=" in found["hint"]
    rest = mcp.ok("search_logs", query='"quokka sighting"', cursor=found["next_cursor"])
    assert [m["handle_id"] for m in rest["matches"]] == [handles[1], handles[0], handles[0]]
    assert rest["next_cursor"] is None
    one = mcp.ok("search_logs", query="quokka", handle_id=handles[0][:8])
    assert {m["handle_id"] for m in one["matches"]} == {handles[0]}
    assert "nothing to search for" in mcp.error("search_logs", query="!!!")


def test_execute_with_numbers_and_booleans(mcp: McpClient) -> None:
    ended = mcp.ok(
        "execute_workflow",
        workflow_id="typed",
        parameters={"count": 2, "ratio": 0.5, "flag": True},
        wait_seconds=60,
    )
    assert ended["status"] == "Completed" and ended["exit_code"] == 0
    assert "ended" in ended["message"]
    params = mcp.ok("get_execution_params", handle_id=ended["handle_id"])
    assert params["params"] == {"count": "2", "ratio": "0.5", "flag": "true"}
    logs = mcp.ok("get_workflow_logs", handle_id=ended["handle_id"])
    assert logs["entries"][0]["line"] == "--count 2 --ratio 0.5 --flag true"


def test_invalid_parameters(mcp: McpClient) -> None:
    before = mcp.ok("list_execution_history", workflow_id="multi_phase", limit=1)["total"]
    message = mcp.error(
        "execute_workflow", workflow_id="multi_phase", parameters={"phases": 9, "speed": "fast"}
    )
    assert "unknown parameter 'speed'" in message
    assert "above the maximum of 5" in message
    assert "phases (number; min 1; max 5; optional; default '3')" in message  # constraints
    assert "execute_workflow again" in message
    after = mcp.ok("list_execution_history", workflow_id="multi_phase", limit=1)["total"]
    assert after == before  # nothing was started
    unknown = mcp.error("execute_workflow", workflow_id="no_such_workflow")
    assert "no_such_workflow" in unknown and "multi_phase" in unknown
    # Arguments that do not fit the input schema are tool errors too.
    assert "wait_seconds" in mcp.error("execute_workflow", workflow_id="quick", wait_seconds=301)


def test_unknown_handle(mcp: McpClient) -> None:
    handle = "0badc0de-0000-4000-8000-000000000000"
    for tool in ("get_workflow_status", "get_workflow_logs", "get_execution_params"):
        message = mcp.error(tool, handle_id=handle)
        assert handle in message and "list_execution_history" in message
    assert "list_execution_history" in mcp.error("wait_for_workflow", handle_id=handle)
    assert "list_execution_history" in mcp.error("cancel_workflow", handle_id=handle)


def test_a_handle_prefix(mcp: McpClient) -> None:
    # 17 executions: two of them share their first hex digit.
    handles = [mcp.ok("execute_workflow", workflow_id="quick")["handle_id"] for _ in range(17)]
    status = mcp.ok("get_workflow_status", handle_id=handles[0][:13])
    assert status["handle_id"] == handles[0]
    assert mcp.ok("get_workflow_logs", handle_id=handles[0][:13])["handle_id"] == handles[0][:13]
    assert mcp.ok("get_execution_params", handle_id=handles[0][:13])["handle_id"] == handles[0]
    digit = next(h[0] for h in handles if sum(g[0] == h[0] for g in handles) > 1)
    message = mcp.error("get_workflow_status", handle_id=digit)
    assert "matches more than one execution" in message
    shared = [h for h in handles if h.startswith(digit)]
    assert all(h in message for h in shared), (shared, message)
    for handle in handles:
        wait_ended(mcp, handle)


def test_cancel_a_long_running_run(mcp: McpClient) -> None:
    handle = mcp.ok("execute_workflow", workflow_id="sleeper")["handle_id"]
    deadline = time.monotonic() + 30
    while mcp.ok("get_workflow_status", handle_id=handle)["log_count"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # A wait in progress stalls no other call: status and the cancel go through meanwhile.
    waiting = mcp.portal.start_task_soon(
        functools.partial(
            mcp.session.call_tool, "wait_for_workflow", {"handle_id": handle, "timeout_seconds": 60}
        )
    )
    for _ in range(3):
        assert mcp.ok("get_workflow_status", handle_id=handle)["status"] == "Running"
    assert not waiting.done()
    cancelled = mcp.ok("cancel_workflow", handle_id=handle[:8])
    assert cancelled["handle_id"] == handle
    assert cancelled["status"] in {"Running", "Cancelled"}
    ended = waiting.result(timeout=60).structured_content
    assert ended["ended"] and ended["status"] == "Cancelled" and ended["ended_by"] == "cancelled"
    again = mcp.error("cancel_workflow", handle_id=handle)
    assert "already ended" in again and "get_workflow_status" in again


def test_wait_for_workflow_reports_progress(mcp: McpClient) -> None:
    short = mcp.ok("execute_workflow", workflow_id="sleeper")["handle_id"]
    timed_out = mcp.ok("wait_for_workflow", handle_id=short, timeout_seconds=0.5)
    assert not timed_out["ended"] and timed_out["status"] in {"NotStarted", "Running"}
    assert timed_out["waited_seconds"] >= 0.5 and "again" in timed_out["message"]
    mcp.ok("cancel_workflow", handle_id=short)

    handle = mcp.ok(
        "execute_workflow", workflow_id="multi_phase", parameters={"phases": 2, "delay": 0.1}
    )["handle_id"]
    reports: list[tuple[float, float | None, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        reports.append((value, total, message))

    result = mcp.run(
        functools.partial(
            mcp.session.call_tool,
            "wait_for_workflow",
            {"handle_id": handle, "timeout_seconds": 60},
            progress_callback=progress,
        )
    )
    assert not result.is_error, text_of(result)
    assert result.structured_content["ended"] and result.structured_content["status"] == "Completed"
    values = [r[0] for r in reports]
    assert len(values) >= 4 and values == sorted(set(values))  # it only grows
    messages = [r[2] for r in reports]
    assert "phase 2/2 completed: Phase 2" in messages, messages
    assert any(m and m.startswith("task p2-t1 started") for m in messages), messages


def test_resources(mcp: McpClient) -> None:
    ended = run_to_end(mcp, "echo_params", message="as a resource")
    handle = ended["handle_id"]
    listed = mcp.run(mcp.session.list_resources).resources
    uris = [r.uri for r in listed]
    assert uris[:2] == [f"wfm://executions/{handle}", f"wfm://executions/{handle}/logs"]
    templates = mcp.run(mcp.session.list_resource_templates).resource_templates
    assert {t.uri_template for t in templates} == {
        "wfm://executions/{handle_id}",
        "wfm://executions/{handle_id}/logs{?after_seq,before_seq}",
    }

    def read(uri: str) -> dict[str, Any]:
        [content] = mcp.run(functools.partial(mcp.session.read_resource, uri)).contents
        assert content.mime_type == "application/json"
        text = getattr(content, "text", "")
        assert len(text.encode()) <= DEFAULT_MAX_OUTPUT
        parsed: dict[str, Any] = json.loads(text)
        return parsed

    execution = read(f"wfm://executions/{handle[:10]}")
    assert execution["handle_id"] == handle and execution["status"] == "Completed"
    assert execution["params"] == {"message": "as a resource"}
    logs = read(f"wfm://executions/{handle}/logs")
    assert logs["entries"][0]["line"] == "as a resource" and logs["finished"]
    tail = read(f"wfm://executions/{handle}/logs?after_seq=0")
    assert [e["seq"] for e in tail["entries"]] == list(range(1, ended["log_count"]))


def read_forward(
    mcp: McpClient, handle: str, after: int, pages: int | None = None
) -> tuple[int, dict[str, Any]]:
    """Page forward from `after` with the largest page the bound allows (all of them, or
    `pages`), checking that every line is there, in order; the last seq and page."""
    read = 0
    while pages is None or read < pages:
        page = mcp.ok("get_workflow_logs", handle_id=handle, limit=10_000, after_seq=after)
        entries = page["entries"]
        assert [e["seq"] for e in entries] == list(range(after + 1, after + 1 + len(entries)))
        assert all(e["line"] == f"line {e['seq']}" for e in entries)
        read += 1
        assert page["next_after_seq"] == entries[-1]["seq"]
        after = page["next_after_seq"]
        if not page["has_more"]:
            break
        assert len(entries) > 200, page["hint"]  # as many as the bound holds, not 50
    return after, page


def test_a_million_lines_page_by_page_under_the_bound(mcp: McpClient) -> None:
    """Every page stays under the bound (McpClient.ok checks each). Paging all 1,000,000
    lines through MCP takes minutes on a loaded CI machine (~3,700 pages), so this reads
    the whole of a 50,000-line log, and of the big one both ends and pages at ten places
    between, forward and backward."""
    small = mcp.ok(
        "execute_workflow", workflow_id="flood", parameters={"lines": 50_000}, wait_seconds=60
    )
    assert small["status"] == "Completed" and small["log_count"] == 50_000
    began = time.monotonic()
    end, page = read_forward(mcp, small["handle_id"], -1)
    assert end == 49_999 and page["finished"] and not page["has_more"]
    print(f"\n50,000 lines paged in {time.monotonic() - began:.1f} s", file=sys.stderr)

    big = mcp.ok(
        "execute_workflow", workflow_id="flood", parameters={"lines": BIG_LINES}, wait_seconds=120
    )
    assert big["status"] == "Completed" and big["log_count"] == BIG_LINES
    handle = big["handle_id"]
    read_forward(mcp, handle, -1, pages=3)
    for start in range(BIG_LINES // 10 - 7, BIG_LINES, BIG_LINES // 10):
        read_forward(mcp, handle, start, pages=2)
    end, page = read_forward(mcp, handle, BIG_LINES - 600)
    assert end == BIG_LINES - 1 and page["finished"]
    # Backward from the end: the last page, then the ones before it.
    page = mcp.ok("get_workflow_logs", handle_id=handle, limit=10_000)
    high = BIG_LINES
    for _ in range(3):
        entries = page["entries"]
        assert [e["seq"] for e in entries] == list(range(high - len(entries), high))
        assert all(e["line"] == f"line {e['seq']}" for e in entries)
        assert len(entries) > 200 and page["next_before_seq"] == entries[0]["seq"]
        high = entries[0]["seq"]
        page = mcp.ok("get_workflow_logs", handle_id=handle, limit=10_000, before_seq=high)
    default = mcp.ok("get_workflow_logs", handle_id=handle)
    assert [e["seq"] for e in default["entries"]] == list(range(BIG_LINES - 50, BIG_LINES))
    # A type filter over a log without a match looks at 100,000 entries, then says where
    # it stopped and how to go on.
    back = mcp.ok("get_workflow_logs", handle_id=handle, types=["phase_started"])
    assert back["entries"] == [] and back["next_before_seq"] == BIG_LINES - 100_000
    assert (back["scanned_from_seq"], back["scanned_to_seq"]) == (
        BIG_LINES - 100_000,
        BIG_LINES - 1,
    )
    assert f"before_seq={BIG_LINES - 100_000}" in back["hint"]
    ahead = mcp.ok("get_workflow_logs", handle_id=handle, types=["phase_started"], after_seq=-1)
    assert ahead["entries"] == [] and ahead["has_more"] and ahead["next_after_seq"] == 99_999
    assert (ahead["scanned_from_seq"], ahead["scanned_to_seq"]) == (0, 99_999)
    assert "after_seq=99999" in ahead["hint"]


def test_long_lines_are_cut_with_their_length(mcp: McpClient) -> None:
    ended = run_to_end(mcp, "echo_params", message="x" * 100_000)
    page = mcp.ok("get_workflow_logs", handle_id=ended["handle_id"], after_seq=-1)
    [long] = [e for e in page["entries"] if e["line"].startswith("xxx")]
    assert len(long["line"]) < 5_000
    assert long["line"].endswith("… [cut: 100,000 characters in all]")
    params = mcp.ok("get_execution_params", handle_id=ended["handle_id"])
    assert params["params"]["message"].endswith("… [cut: 100,000 characters in all]")


# --------------------------------------------------------------------------- the daemon away


def test_daemon_stopped_mid_session(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    """The server starts without the daemon, and each call works or fails on its own."""
    write_test_workflows(workflow_dir)
    daemon = make_daemon()
    with McpClient(daemon.socket, errlog=tmp_path / "mcp.log") as mcp:
        down = mcp.error("get_workflow_status", handle_id="0123")
        assert "not running" in down and "wfmd" in down and str(daemon.socket) in down
        daemon.start()
        ended = run_to_end(mcp, "echo_params", message="before the restart")
        daemon.stop()
        for tool, args in (
            ("get_workflow_status", {"handle_id": ended["handle_id"]}),
            ("list_workflows", {}),
            ("execute_workflow", {"workflow_id": "quick"}),
            ("wait_for_workflow", {"handle_id": ended["handle_id"]}),
        ):
            message = mcp.error(tool, **args)
            assert "not running" in message and "start it" in message, (tool, message)
        assert mcp.run(mcp.session.list_resources).resources == []
        daemon.start()
        status = mcp.ok("get_workflow_status", handle_id=ended["handle_id"])
        assert status["status"] == "Completed"
        assert run_to_end(mcp, "quick")["status"] == "Completed"


def test_an_execution_from_before_a_restart(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    write_test_workflows(workflow_dir)
    daemon = make_daemon().start()
    with McpClient(daemon.socket, errlog=tmp_path / "mcp1.log") as mcp:
        ended = run_to_end(mcp, "multi_phase", phases=1, delay=0)
        running = mcp.ok("execute_workflow", workflow_id="sleeper")["handle_id"]
        while mcp.ok("get_workflow_status", handle_id=running)["log_count"] == 0:
            time.sleep(0.05)
    daemon.restart()
    with McpClient(daemon.socket, errlog=tmp_path / "mcp2.log") as mcp:
        status = mcp.ok("get_workflow_status", handle_id=ended["handle_id"])
        assert {k: status[k] for k in ("status", "exit_code", "log_count", "end_time")} == {
            k: ended[k] for k in ("status", "exit_code", "log_count", "end_time")
        }
        logs = mcp.ok("get_workflow_logs", handle_id=ended["handle_id"], after_seq=-1)
        assert len(logs["entries"]) == ended["log_count"] and logs["finished"]
        stopped = mcp.ok("get_workflow_status", handle_id=running)
        assert stopped["status"] == "Cancelled" and stopped["ended_by"] == "cancelled"
        assert mcp.ok("get_workflow_logs", handle_id=running)["entries"][0]["line"] == "started"


# --------------------------------------------------------------------------- imports


def test_wfmctl_imports_nothing_of_the_sdk(tmp_path: Path) -> None:
    check = "import sys, wfmctl; assert 'mcp' not in sys.modules, sorted(sys.modules)"
    proc = run_python("-c", check)
    assert proc.returncode == 0, proc.stderr
    proc = run_python(
        "-X",
        "importtime",
        "-m",
        "wfmctl",
        "status",
        "ab",
        WFM_SOCKET=str(tmp_path / "nothing.sock"),
    )
    assert proc.returncode == EXIT_UNAVAILABLE, proc.stderr
    imported = imported_modules(proc.stderr)
    assert "wfmctl.cli.commands" in imported  # the check below looks at the right output
    assert not {m for m in imported if m.split(".")[0] in {"mcp", "mcp_types", "pydantic"}}
    assert "wfmctl.mcp" not in imported


def test_without_the_extra_one_line_says_how_to_install_it() -> None:
    # The SDK made unimportable, as when the mcp extra is not installed.
    script = (
        "import sys; sys.modules['mcp'] = None; "
        "from wfmctl.cli.main import main; sys.exit(main(['mcp']))"
    )
    proc = run_python("-c", script)
    assert proc.returncode != 0
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "pip install 'wfm[mcp]'" in line


def test_a_bad_output_bound_is_refused() -> None:
    env = {"WFM_MCP_MAX_OUTPUT": "12"}
    proc = run_python("-m", "wfmctl", "mcp", **env)
    assert proc.returncode == 2
    assert "WFM_MCP_MAX_OUTPUT" in proc.stderr and "at least" in proc.stderr
