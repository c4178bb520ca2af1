"""End to end: a run survives a daemon restart, identical in every detail."""

from __future__ import annotations

from conftest import Daemon


def test_run_complete_restart_query(daemon: Daemon) -> None:
    with daemon.client() as client:
        execution = client.run("echo_params", {"message": "hello world", "count": 3})
        finished = client.wait(execution.handle)
        assert finished.status == "Completed"
        assert finished.exit_code == 0
        before_status = client.status(execution.handle)
        before_params = client.params(execution.handle)
        before_logs = client.logs(execution.handle, limit=10_000)

    assert daemon.stop() == 0
    daemon.start()

    with daemon.client() as client:
        assert client.status(execution.handle) == before_status
        assert client.params(execution.handle) == before_params
        assert client.logs(execution.handle, limit=10_000) == before_logs
    lines = [e.line for e in before_logs.entries]
    assert lines.count("hello world") == 3
    assert before_params.params == {"message": "hello world", "count": "3"}
    assert before_status.log_count == len(before_logs.entries)
    assert before_logs.finished
