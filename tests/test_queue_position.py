"""A queued execution says where it stands in the queue."""

from __future__ import annotations

from pathlib import Path

from conftest import MakeDaemon, metadata, write_workflow


def test_queued_runs_report_their_place(make_daemon: MakeDaemon, workflow_dir: Path) -> None:
    write_workflow(workflow_dir, "sleeper", "time.sleep(60)\n", metadata("sleeper"))
    daemon = make_daemon(["--max-concurrent", "1"]).start()
    with daemon.client() as client:
        handles = [client.run("sleeper").handle for _ in range(3)]
        positions = [client.status(h).queue_position for h in handles]
        assert positions == [None, 1, 2]
        client.cancel(handles[1])
        assert client.status(handles[2]).queue_position == 1
        for handle in (handles[0], handles[2]):
            client.cancel(handle)
        assert client.wait(handles[2]).queue_position is None
