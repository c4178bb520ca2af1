"""Each execution records its workflow's name as it was run; status and `history --full`
show it (plain `history` keeps to ids, to fit 80 columns)."""

from __future__ import annotations

from pathlib import Path

from conftest import Daemon, write_workflow


def test_status_and_history_show_the_workflow_name(daemon: Daemon, workflow_dir: Path) -> None:
    meta: dict[str, object] = {"id": "nightly", "name": "Nightly report", "fields": []}
    write_workflow(workflow_dir, "nightly", "print('done')\n", meta)
    with daemon.client() as client:
        handle = client.run("nightly").handle
        assert client.wait(handle).workflow_name == "Nightly report"
    status = daemon.wfmctl("status", handle)
    assert status.returncode == 0, status.stderr
    assert "nightly (Nightly report)" in status.stdout
    history = daemon.wfmctl("history", "--full")
    assert "nightly (Nightly report)" in history.stdout
    assert "(Nightly report)" not in daemon.wfmctl("history").stdout
