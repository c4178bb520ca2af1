"""The client library and the wfmctl command when nothing listens on the socket."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from test_cli_support import run_python

from wfmctl import DaemonUnreachable, WfmError
from wfmctl.cli.exit_codes import EXIT_UNAVAILABLE
from wfmctl.client import Client


def test_client_without_a_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing.sock"
    with pytest.raises(DaemonUnreachable) as info:
        Client(path)
    assert isinstance(info.value, WfmError)
    assert info.value.code == "unreachable"
    assert str(path) in info.value.message
    assert "start it with: wfmd" in info.value.message


def test_client_refused(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # bound, never listening: what a dead daemon leaves behind
        with pytest.raises(DaemonUnreachable, match="start it with: wfmd"):
            Client(path, timeout=5)


def test_client_uses_wfm_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFM_SOCKET", str(tmp_path / "env.sock"))
    with pytest.raises(DaemonUnreachable, match=r"env\.sock"):
        Client()


def test_cli_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "nothing.sock"
    proc = run_python("-m", "wfmctl", "status", "abc", "--socket", str(path))
    assert proc.returncode == EXIT_UNAVAILABLE == 69
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("wfmctl: error: cannot reach wfmd at ")
    assert str(path) in lines[0]
    assert "is wfmd running? start it with: wfmd" in lines[0]


def test_cli_unreachable_json_through_env(tmp_path: Path) -> None:
    proc = run_python("-m", "wfmctl", "--json", "ping", WFM_SOCKET=str(tmp_path / "env.sock"))
    assert proc.returncode == 69
    assert json.loads(proc.stdout)["code"] == "unreachable"
    assert len(proc.stderr.splitlines()) == 1
