"""`wfmctl export`: one execution whole, in each format, equal to what `logs` serves."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

from conftest import Daemon, MakeDaemon, metadata, text_field, write_workflow

from wfmctl import protocol

BODY = r"""
sys.stdout.buffer.write(b"plain\n\xff not utf-8\n")
sys.stdout.flush()
sys.stderr.write('__WF_EVENT__:{"type": "phase_started", "phase": 1, "name": "P1",'
                 ' "total_phases": 2}\n')
sys.stderr.flush()
for i in range(2500):
    print(f"line {i}\ttab \"quoted\" \\ back")
sys.stdout.write("no newline at the end")
"""


def mixed(daemon: Daemon, workflow_dir: Path) -> str:
    write_workflow(workflow_dir, "mixed", BODY, metadata("mixed", text_field("who")))
    with daemon.client() as client:
        client.workflows(rescan=True)
        handle = client.run("mixed", {"who": "me"}).handle
        client.wait(handle)
    return handle


def logs_json(daemon: Daemon, handle: str) -> list[dict[str, object]]:
    with daemon.client() as client:
        return [protocol.to_builtins(e) for e in client.iter_logs(handle, limit=10_000)]


def test_jsonl_and_json_hold_the_execution_and_every_entry_as_logs_serves_them(
    daemon: Daemon, workflow_dir: Path, tmp_path: Path
) -> None:
    handle = mixed(daemon, workflow_dir)
    expected = logs_json(daemon, handle)
    assert len(expected) == 2 + 1 + 2500 + 1
    with daemon.client() as client:
        status = protocol.to_builtins(client.status(handle))

    out = daemon.wfmctl("export", handle[:8])
    assert out.returncode == 0, out.stderr
    docs = [json.loads(line) for line in out.stdout.splitlines()]
    assert docs[0] == {"type": "execution", "execution": status}
    assert docs[0]["execution"]["params"] == {"who": "me"}
    assert docs[1:] == expected

    target = tmp_path / "one.json"
    out = daemon.wfmctl("export", handle, "--format", "json", "--output", str(target))
    assert out.returncode == 0 and out.stdout == "", out.stderr
    doc = json.loads(target.read_text())
    assert doc == {"execution": status, "entries": expected}
    assert not list(tmp_path.glob("*.partial"))


def test_text_has_a_header_and_one_line_per_entry_as_printed(
    daemon: Daemon, workflow_dir: Path, tmp_path: Path
) -> None:
    handle = mixed(daemon, workflow_dir)
    target = tmp_path / "one.txt"
    assert daemon.wfmctl("export", handle, "--format", "text", "-o", str(target)).returncode == 0
    data = target.read_bytes()
    header = [line for line in data.split(b"\n") if line.startswith(b"# ")]
    body = data.split(b"\n")[len(header) : -1]
    assert header[0] == f"# wfm export of {handle}".encode()
    assert b"# status: Completed" in header and b"# param who: me" in header
    assert len(body) == 2504
    entries = [line.split(b"\t", 4) for line in body]
    assert [int(e[0]) for e in entries] == list(range(2504))
    # stdout and stderr interleave in read order: find the lines, not their places.
    assert [b"stdout", b"raw_output", b"\xff not utf-8"] in [e[2:] for e in entries]
    assert [e[3] for e in entries].count(b"phase_started") == 1
    assert [b"stdout", b"raw_output", b'line 0\ttab "quoted" \\ back'] in [e[2:] for e in entries]
    ts = entries[0][1]
    assert ts.endswith(b"Z") and len(ts) == len(b"2026-12-02T16:00:00.000Z")
    assert body[-1].endswith(b"\tno newline at the end")


def test_an_unknown_handle_is_a_clear_error(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    d = make_daemon().start()
    target = tmp_path / "x.jsonl"
    out = d.wfmctl("export", "ffffffff", "-o", str(target))
    assert out.returncode != 0 and "no execution" in out.stderr
    assert "Traceback" not in out.stderr
    assert not target.exists() and not list(tmp_path.glob("*.partial"))


def test_a_fifo_is_written_in_place_never_replaced(
    daemon: Daemon, workflow_dir: Path, tmp_path: Path
) -> None:
    handle = mixed(daemon, workflow_dir)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    out = daemon.wfmctl("export", handle, "--format", "text", "-o", str(fifo))
    reader.join(30)
    assert out.returncode == 0, out.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received and received[0].count(b"\n") > 2500
