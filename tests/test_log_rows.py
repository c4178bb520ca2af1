"""`wfmctl logs` reads stored rows in bulk (the `log_rows` request): its output is exactly
what the entries render to, from any point, across pages, for every kind of line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import WFMCTL, Daemon, MakeDaemon, metadata, write_workflow

from wfmctl.cli import render

MIXED = r"""
out = sys.stdout.buffer
out.write(b"plain\n\xff not utf-8\ntab\there\rcarriage\n")
out.flush()
sys.stderr.write('__WF_EVENT__:{"type": "phase_started", "phase": 1, "name": "P",'
                 ' "total_phases": 2}\n')
sys.stderr.write("a warning\n")
sys.stderr.flush()
for i in range(120_000):  # 9 MB: more than one reply
    out.write(b"%06d INFO worker: processed an item of the batch, as logs do\n" % i)
out.write(b"no newline at the end")
"""


def test_logs_prints_what_the_entries_render_to(
    make_daemon: MakeDaemon, workflow_dir: Path
) -> None:
    write_workflow(workflow_dir, "mixed", MIXED, metadata("mixed"))
    daemon = make_daemon().start()
    handle = daemon.run_and_wait("mixed")
    with daemon.client() as client:
        entries = list(client.iter_logs(handle, limit=10_000))
        pages = list(client.log_row_pages(handle))
    assert len(entries) == 3 + 2 + 120_000 + 1
    assert len(pages) >= 2 and pages[-1].finished
    assert pages[-1].next_after == entries[-1].seq

    expected = "".join(render.render_entry(e) + "\n" for e in entries)
    assert logs_output(daemon, handle) == expected.encode()
    for after in (0, 4, 60_000, len(entries) - 2):  # mid-row, an event's edge, the end
        rest = "".join(render.render_entry(e) + "\n" for e in entries if e.seq > after)
        assert logs_output(daemon, handle, "--after", str(after)) == rest.encode(), after


def logs_output(daemon: Daemon, *args: str) -> bytes:
    """`wfmctl logs` as bytes (text mode would turn a carriage return into a newline)."""
    env = dict(os.environ, WFM_SOCKET=str(daemon.socket))
    done = subprocess.run([WFMCTL, "logs", *args], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout
