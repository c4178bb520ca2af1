"""`wfmctl rerun HANDLE`: the same workflow with the same parameters, overrides applied; the
new execution records what it reran, and `status` shows it."""

from __future__ import annotations

import json

from conftest import Daemon
from test_cli import ok

from wfmctl import WfmError
from wfmctl.cli.exit_codes import EXIT_DATAERR, EXIT_NOINPUT


def test_rerun_with_an_override(daemon: Daemon) -> None:
    first = ok(daemon.wfmctl("run", "echo_params", "-p", "message=hi", "-p", "count=1",
                             "--timeout", "30", "--wait")).split()[0]  # fmt: skip
    out = ok(daemon.wfmctl("rerun", "@last", "-p", "count=2", "--wait")).splitlines()
    assert len(out) == 2 and out[1].startswith("echo_params  Completed")
    again = out[0]
    doc = json.loads(ok(daemon.wfmctl("status", again, "--json")))
    assert doc["params"] == {"message": "hi", "count": "2"}
    assert doc["rerun_of"] == first
    assert doc["timeout"] == 30
    assert f"rerun of:     {first}" in ok(daemon.wfmctl("status", again))
    assert ok(daemon.wfmctl("logs", again)).splitlines()[:2] == ["hi", "hi"]
    assert json.loads(ok(daemon.wfmctl("status", first, "--json"))).get("rerun_of") is None


def test_rerun_follow_and_the_python_client(daemon: Daemon) -> None:
    first = daemon.run_and_wait("echo_params", message="again")
    followed = daemon.wfmctl("rerun", first[:8], "--follow")
    assert ok(followed).splitlines()[1] == "again"
    assert "echo_params  Completed" in followed.stderr
    with daemon.client() as client:
        third = client.rerun(first, {"message": "third"}, timeout=5)
        ended = client.wait(third.handle)
        assert ended.rerun_of == first and ended.params["message"] == "third"
        assert ended.timeout == 5


def test_rerun_refusals(daemon: Daemon) -> None:
    daemon.run_and_wait("echo_params", message="x")
    bad = daemon.wfmctl("rerun", "@last", "-p", "count=many")
    assert bad.returncode == EXIT_DATAERR and "count" in bad.stderr
    missing = daemon.wfmctl("rerun", "ffffffff")
    assert missing.returncode == EXIT_NOINPUT
    with daemon.client() as client:
        try:
            client.rerun("@last", {"nope": "1"})
        except WfmError as err:
            assert err.code == "invalid_params"
        else:
            raise AssertionError("an unknown parameter was accepted")
