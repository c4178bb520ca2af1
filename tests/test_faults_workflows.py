"""Workflows that misbehave, through the real daemon: each gets a correct record and a clear
reason, and the daemon carries on as if nothing happened (a ping answers after each).

Quick by default; `WFM_LONG_TESTS=1` makes the one-huge-line test print 100 MB instead of 20.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from conftest import Daemon, MakeDaemon, metadata, proc_status, tagged_pids, write_workflow

from wfmctl.protocol import LogEntry

MiB = 1024 * 1024

# What the daemon promises for an over-long line (wfmd/ingest/lines.py MAX_LINE).
MAX_ENTRY = MiB

# The daemon's memory while it swallows one enormous line.
MAX_RSS_BYTES = 150 * 1024 * 1024

LONG = os.environ.get("WFM_LONG_TESTS") == "1"
HUGE_LINE_BYTES = 100_000_000 if LONG else 20_000_000

PROBE_TIMEOUT = 1.0
# Above probe_timeout: killing and reaping the probe, and a loaded 2-core machine.
PROBE_MARGIN = 4.0


def assert_daemon_fine(daemon: Daemon) -> None:
    """The daemon is up, answers a ping, runs nothing and can write."""
    assert daemon.proc is not None and daemon.proc.poll() is None
    with daemon.client(timeout=5) as client:
        pong = client.ping()
    assert pong.storage_ok and pong.running == 0, pong


def lines(entries: list[LogEntry], stream: str) -> list[str]:
    return [e.line for e in entries if e.stream == stream]


# --------------------------------------------------------------------------- exits and pipes


@pytest.mark.parametrize(
    ("body", "status", "reason", "exit_code", "signal"),
    [
        ("sys.exit(0)\n", "Completed", "exited with status 0", 0, None),
        ("os._exit(3)\n", "Failed", "exited with status 3", 3, None),
        ("os.kill(os.getpid(), 9)\n", "Failed", "killed by signal 9 (SIGKILL)", None, 9),
    ],
    ids=["exit-0", "exit-3", "sigkill-itself"],
)
def test_exits_at_once_without_output(
    daemon: Daemon,
    workflow_dir: Path,
    body: str,
    status: str,
    reason: str,
    exit_code: int | None,
    signal: int | None,
) -> None:
    write_workflow(workflow_dir, "instant", body, metadata("instant"))
    ended, entries = daemon.run_to_end("instant", rescan=True)
    assert_daemon_fine(daemon)
    assert (ended.status, ended.reason) == (status, reason), ended
    assert (ended.exit_code, ended.signal) == (exit_code, signal)
    assert ended.log_count == 0 and entries == []
    assert ended.started_at is not None and ended.ended_at is not None
    assert ended.ended_at >= ended.started_at


def test_closing_stdout_early_and_running_on(daemon: Daemon, workflow_dir: Path) -> None:
    body = """
print("before 1")
print("before 2", flush=True)
os.close(1)
print("stderr after close", file=sys.stderr, flush=True)
time.sleep(0.5)
print("stderr at the end", file=sys.stderr, flush=True)
os._exit(0)  # plain exit would flush the closed stdout and exit 120
"""
    write_workflow(workflow_dir, "closer", body, metadata("closer"))
    ended, entries = daemon.run_to_end("closer", rescan=True)
    assert_daemon_fine(daemon)
    assert ended.status == "Completed" and ended.exit_code == 0, ended
    assert lines(entries, "stdout") == ["before 1", "before 2"]
    assert lines(entries, "stderr") == ["stderr after close", "stderr at the end"]
    # EOF on stdout did not end the execution: it ran until the process exited.
    assert ended.ended_at is not None and ended.started_at is not None
    assert ended.ended_at - ended.started_at >= 0.45, ended
    assert [e.seq for e in entries] == list(range(4))


def test_closing_both_pipes_and_running_on(daemon: Daemon, workflow_dir: Path) -> None:
    body = """
print("out", flush=True)
print("err", file=sys.stderr, flush=True)
os.close(1)
os.close(2)
time.sleep(0.5)
os._exit(4)
"""
    write_workflow(workflow_dir, "silent_tail", body, metadata("silent_tail"))
    ended, entries = daemon.run_to_end("silent_tail", rescan=True)
    assert_daemon_fine(daemon)
    assert (ended.status, ended.exit_code, ended.reason) == (
        "Failed",
        4,
        "exited with status 4",
    )
    assert ended.ended_at is not None and ended.started_at is not None
    assert ended.ended_at - ended.started_at >= 0.45, ended
    assert sorted(e.line for e in entries) == ["err", "out"]


# --------------------------------------------------------------------------- long lines


def pattern(size: int) -> bytes:
    """`size` bytes of ASCII in which every 10-byte cell names its own position."""
    cells = (size + 9) // 10
    return b"".join(b"%09d," % i for i in range(cells))[:size]


def writer_body(size: int, newline: bool) -> str:
    """A workflow writing pattern(size) to stdout in 64 KiB writes, then maybe a newline."""
    return f"""
size = {size}
cells = (size + 9) // 10
data = b"".join(b"%09d," % i for i in range(cells))[:size]
out = sys.stdout.buffer
for start in range(0, size, 65536):
    out.write(data[start:start + 65536])
    out.flush()
if {newline!r}:
    out.write(b"\\n")
    out.flush()
"""


def test_output_without_any_newline_is_kept_in_pieces(daemon: Daemon, workflow_dir: Path) -> None:
    size = 3_000_000
    write_workflow(workflow_dir, "no_newline", writer_body(size, False), metadata("no_newline"))
    ended, entries = daemon.run_to_end("no_newline", rescan=True)
    assert_daemon_fine(daemon)
    assert ended.status == "Completed", ended
    assert [len(e.line) for e in entries] == [MiB, MiB, size - 2 * MiB]
    assert "".join(e.line for e in entries).encode() == pattern(size)
    assert {(e.stream, e.type) for e in entries} == {("stdout", "raw_output")}
    assert ended.log_count == 3


def test_one_enormous_line_is_stored_in_pieces_with_bounded_memory(
    daemon: Daemon, workflow_dir: Path
) -> None:
    size = HUGE_LINE_BYTES
    write_workflow(workflow_dir, "huge_line", writer_body(size, True), metadata("huge_line"))
    assert daemon.proc is not None
    pid = daemon.proc.pid
    rss_before = proc_status(pid, "VmRSS")
    started = time.monotonic()
    with daemon.client() as client:
        client.workflows(rescan=True)
        accepted = client.run("huge_line")
        ended = client.wait(accepted.handle)
        took = time.monotonic() - started
        peak_ingest = proc_status(pid, "VmHWM")
        pieces = size // MiB
        assert ended.status == "Completed", ended
        assert ended.log_count == pieces + 1
        total = 0
        expected = pattern(size)
        for entry in client.iter_logs(accepted.handle, limit=10_000):
            length = len(entry.line)
            assert length == (MiB if entry.seq < pieces else size - pieces * MiB), entry.seq
            assert entry.line.encode() == expected[total : total + length], entry.seq
            total += length
        assert total == size
    peak = proc_status(pid, "VmHWM")
    assert peak_ingest < MAX_RSS_BYTES, peak_ingest
    assert peak < MAX_RSS_BYTES, peak
    assert_daemon_fine(daemon)
    print(
        f"\n{size / 1e6:.0f} MB line: {took:.2f}s, daemon RSS {rss_before / 1e6:.1f} MB before, "
        f"peak {peak_ingest / 1e6:.1f} MB while ingesting, {peak / 1e6:.1f} MB after reading "
        "it back"
    )


def test_line_of_exactly_two_mib_is_two_entries(daemon: Daemon, workflow_dir: Path) -> None:
    """Regression: the partial line was cut at exactly MAX_LINE, leaving it empty, so the
    newline arriving alone was stored as a phantom empty third entry."""
    write_workflow(
        workflow_dir, "exact", writer_body(2 * MiB, True) + "print('next')\n", metadata("exact")
    )
    ended, entries = daemon.run_to_end("exact", rescan=True)
    assert_daemon_fine(daemon)
    assert ended.status == "Completed", ended
    assert [len(e.line) for e in entries] == [MiB, MiB, 4]


def test_line_crossing_the_limit_in_its_last_read_is_still_cut(
    daemon: Daemon, workflow_dir: Path
) -> None:
    """Regression: `partial + data[:end]` went to cut() uncut (only the partial line was ever
    cut at MAX_LINE), so an entry could exceed MAX_LINE by up to READ_SIZE - 1 bytes."""
    body = f"""
out = sys.stdout.buffer
out.write(b"a" * ({MiB} - 100))
out.flush()
time.sleep(0.3)  # the daemon has read the first part by now
out.write(b"b" * 110 + b"\\n")
out.flush()
"""
    write_workflow(workflow_dir, "straddle", body, metadata("straddle"))
    ended, entries = daemon.run_to_end("straddle", rescan=True)
    assert_daemon_fine(daemon)
    assert ended.status == "Completed", ended
    assert "".join(e.line for e in entries) == "a" * (MiB - 100) + "b" * 110
    assert max(len(e.line) for e in entries) <= MAX_ENTRY, [len(e.line) for e in entries]


# --------------------------------------------------------------------------- events


def test_invalid_structured_events_are_kept_as_raw_stderr(
    daemon: Daemon, workflow_dir: Path
) -> None:
    printed = [
        b"__WF_EVENT__:{not json",
        b"__WF_EVENT__:",
        b'__WF_EVENT__:{"type": "no_such_event", "x": 1}',
        b'__WF_EVENT__:{"type": "phase_started", "phase": "one"}',
        b'__WF_EVENT__:{"phase": 1, "name": "no type", "total_phases": 2}',
        b'__WF_EVENT__:["type", "phase_started"]',
        b'__WF_EVENT__:{"type": "task_progress", "task_id": "t1", "message": "fine"}',
        b'__WF_EVENT__:{"type": "task_progress", "task_id": "t1", "message": "trailing"} junk',
        b"__WF_EVENT__:\xff\xfe not utf-8",
        b'  __WF_EVENT__:{"type": "task_progress", "task_id": "t1", "message": "indented"}',
    ]
    body = f"""
for line in {printed!r}:
    sys.stderr.buffer.write(line + b"\\n")
    sys.stderr.buffer.flush()
sys.stdout.write('__WF_EVENT__:{{"type": "task_progress", "task_id": "t", "message": "m"}}\\n')
"""
    write_workflow(workflow_dir, "bad_events", body, metadata("bad_events"))
    ended, entries = daemon.run_to_end("bad_events", rescan=True)
    assert_daemon_fine(daemon)
    assert ended.status == "Completed", ended
    assert len(entries) == len(printed) + 1
    stderr = [e for e in entries if e.stream == "stderr"]
    # Every line as printed, in order (invalid UTF-8 replaced, as for any line).
    assert [e.line for e in stderr] == [p.decode("utf-8", "replace") for p in printed]
    kinds = [(e.type, e.event) for e in stderr]
    valid = 6
    for index, (kind, event) in enumerate(kinds):
        if index == valid:
            assert (kind, event) == ("task_progress", {"task_id": "t1", "message": "fine"})
        else:
            assert (kind, event) == ("raw_output", None), (index, printed[index])
    (stdout,) = [e for e in entries if e.stream == "stdout"]
    assert (stdout.type, stdout.event) == ("raw_output", None)  # events count on stderr only


# --------------------------------------------------------------------------- spawn failures


def test_executable_deleted_between_discovery_and_run(daemon: Daemon, workflow_dir: Path) -> None:
    path = write_workflow(workflow_dir, "vanishing", "print('hi')\n", metadata("vanishing"))
    with daemon.client() as client:
        client.workflows(rescan=True)
        path.unlink()
        accepted = client.run("vanishing")
        ended = client.wait(accepted.handle)
        assert client.logs(accepted.handle).entries == []
    assert ended.status == "Failed", ended
    assert ended.reason is not None and ended.reason.startswith("could not start"), ended.reason
    assert str(path) in ended.reason and "No such file" in ended.reason, ended.reason
    assert (ended.exit_code, ended.signal, ended.log_count) == (None, None, 0)
    assert_daemon_fine(daemon)


def test_bad_interpreter_rewritten_after_discovery(daemon: Daemon, workflow_dir: Path) -> None:
    path = write_workflow(workflow_dir, "shebang", "print('hi')\n", metadata("shebang"))
    with daemon.client() as client:
        client.workflows(rescan=True)
        path.write_text("#!/nonexistent/interpreter\nprint('hi')\n")
        accepted = client.run("shebang")
        ended = client.wait(accepted.handle)
    assert ended.status == "Failed", ended
    assert ended.reason is not None and ended.reason.startswith("could not start"), ended.reason
    assert (ended.exit_code, ended.signal, ended.log_count) == (None, None, 0)
    assert_daemon_fine(daemon)


def test_hanging_metadata_probe_is_skipped_with_a_timeout(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "no-config.toml").write_text(f"probe_timeout = {PROBE_TIMEOUT}\n")
    write_workflow(workflow_dir, "fine", "print('fine')\n", metadata("fine"))
    daemon = make_daemon().start()
    assert daemon.proc is not None
    hanging = workflow_dir / "hangs"
    hanging.write_text(
        f"#!{sys.executable}\n"
        "import subprocess, sys, time\n"
        "if sys.argv[1:] == ['--workflow-metadata']:\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "    print('{', flush=True)  # the start of a document it never finishes\n"
        "    time.sleep(60)\n"
    )
    hanging.chmod(0o755)
    with daemon.client() as client:
        started = time.monotonic()
        catalog = client.workflows(rescan=True)
        took = time.monotonic() - started
        assert took < PROBE_TIMEOUT + PROBE_MARGIN, took
        skipped = {s.path: s.reason for s in catalog.skipped}
        assert skipped[str(hanging)] == f"timed out after {PROBE_TIMEOUT} s", skipped
        assert "fine" in {w.id for w in catalog.workflows}
        # The probe and the child it started are gone (only the daemon carries the tag).
        deadline = time.monotonic() + 5
        while set(tagged_pids(daemon.tag)) - {daemon.proc.pid} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(tagged_pids(daemon.tag)) == {daemon.proc.pid}
        # The same through the command line.
        started = time.monotonic()
        listed = daemon.wfmctl("workflows", "--rescan", timeout=PROBE_TIMEOUT + PROBE_MARGIN + 5)
        cli_took = time.monotonic() - started
        assert listed.returncode == 0, listed.stderr
        assert f"{hanging}: timed out after {PROBE_TIMEOUT} s" in listed.stdout, listed.stdout
        assert cli_took < PROBE_TIMEOUT + PROBE_MARGIN + 2, cli_took  # + wfmctl's start-up
        # Everything else still works.
        accepted = client.run("fine")
        assert client.wait(accepted.handle).status == "Completed"
    assert_daemon_fine(daemon)
    print(
        f"\nhanging probe: rescan took {took:.2f}s ({cli_took:.2f}s with `wfmctl workflows "
        f"--rescan`) with probe_timeout {PROBE_TIMEOUT}s"
    )
