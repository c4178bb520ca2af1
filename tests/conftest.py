"""Fixtures that run the real daemon: its installed `wfmd` executable, on a temporary socket
and database, with test workflows written the way an outside author would write them.

Every daemon started here tags its environment with a unique WFM_TEST_TAG, which every
workflow process inherits; after each test no process carrying the tag may be alive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from wfmctl import Client, DaemonUnreachable, WfmError

BIN = Path(sys.executable).parent
WFMD = str(BIN / "wfmd")
WFMCTL = str(BIN / "wfmctl")
TAG_ENV = "WFM_TEST_TAG"

# Generous: a loaded 2-core CI machine can take seconds to start an interpreter.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0


def tagged_pids(tag: str) -> list[int]:
    needle = f"{TAG_ENV}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                status = (entry / "stat").read_text()
                if status.rsplit(")", 1)[1].split()[0] != "Z":  # zombies are already dead
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


class Daemon:
    """A real wfmd process on a temporary directory."""

    def __init__(self, root: Path, workflow_dirs: list[Path], extra_args: list[str]) -> None:
        self.root = root
        self.socket = root / "run" / "wfmd.sock"
        self.database = root / "wfm.db"
        self.log_path = root / "wfmd.log"
        self.workflow_dirs = workflow_dirs
        self.extra_args = extra_args
        self.tag = uuid.uuid4().hex
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        argv = [WFMD, "--database", str(self.database), "--socket", str(self.socket)]
        for d in self.workflow_dirs:
            argv += ["--workflow-dir", str(d)]
        return argv + self.extra_args

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[TAG_ENV] = self.tag
        env.pop("WFM_SOCKET", None)
        env.pop("WFM_DATABASE", None)
        env["WFM_CONFIG"] = str(self.root / "no-config.toml")
        (self.root / "no-config.toml").touch()
        return env

    def start(self, *, wait: bool = True) -> Daemon:
        assert self.proc is None or self.proc.poll() is not None
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv(), env=self.env(), stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"wfmd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with Client(self.socket, timeout=5) as client:
                    client.ping()
                return
            except DaemonUnreachable:
                time.sleep(0.02)
            except WfmError as exc:
                # A daemon killed while forking a workflow leaves the listening socket open
                # in that child until its exec: connecting then gets a reset, not a refusal.
                if exc.code != "disconnected":
                    raise
                time.sleep(0.02)
        raise AssertionError(f"wfmd not ready after {START_TIMEOUT}s:\n{self.log()}")

    def client(self, timeout: float | None = 30.0) -> Client:
        return Client(self.socket, timeout=timeout)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(STOP_TIMEOUT)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)

    def restart(self) -> Daemon:
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wfmctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real `wfmctl` executable against this daemon."""
        env = dict(os.environ, WFM_SOCKET=str(self.socket))
        return subprocess.run(
            [WFMCTL, *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    def run_and_wait(self, workflow_id: str, **params: object) -> str:
        with self.client() as client:
            execution = client.run(workflow_id, params)
            client.wait(execution.handle)
            return execution.handle


def write_workflow(directory: Path, name: str, body: str, metadata: dict[str, object]) -> Path:
    """An executable Python workflow: answers --workflow-metadata, otherwise runs `body`."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    source = (
        f"#!{sys.executable}\n"
        "import json, os, sys, time\n"
        "if sys.argv[1:] == ['--workflow-metadata']:\n"
        f"    print({json.dumps(metadata)!r})\n"
        "    sys.exit(0)\n" + textwrap.dedent(body)
    )
    path.write_text(source)
    path.chmod(0o755)
    return path


def metadata(workflow_id: str, *fields: dict[str, object]) -> dict[str, object]:
    return {"id": workflow_id, "name": workflow_id, "description": "", "fields": list(fields)}


def text_field(name: str, *, required: bool = False) -> dict[str, object]:
    return {
        "name": name,
        "field_type": {"type": "text"},
        "label": name,
        "description": "",
        "cli_arg": f"--{name}",
        "required": required,
        "default": None,
        "required_for_phases": None,
    }


@pytest.fixture
def workflow_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "workflows"
    directory.mkdir()
    return directory


@pytest.fixture
def examples_dir() -> Path:
    import wfmd.workflows.discovery

    return wfmd.workflows.discovery.EXAMPLES_DIR


@pytest.fixture
def make_daemon(tmp_path: Path, workflow_dir: Path, examples_dir: Path) -> Iterator[type[Daemon]]:
    """Start daemons with `make_daemon(extra_args=[...])`; all are stopped and checked after."""
    daemons: list[Daemon] = []

    class _Daemon(Daemon):
        def __init__(self, extra_args: list[str] | None = None, root: Path | None = None) -> None:
            super().__init__(root or tmp_path, [workflow_dir, examples_dir], extra_args or [])
            daemons.append(self)

    yield _Daemon
    for daemon in daemons:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
    for daemon in daemons:
        leaked = tagged_pids(daemon.tag)
        for pid in leaked:
            os.kill(pid, signal.SIGKILL)
        assert not leaked, f"processes left behind by the test: {leaked}"


@pytest.fixture
def daemon(make_daemon: type[Daemon]) -> Daemon:
    return make_daemon().start()


# --------------------------------------------------------------------------- processes, files

# Bound on waiting for a file a workflow writes: generous for a loaded 2-core machine.
FILE_TIMEOUT = 15.0


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`.

    `os.killpg(pgid, 0)` would also count zombies, which this machine's init may never reap.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == pgid:
            members.append(int(entry.name))
    return members


def wait_for_file(path: Path, timeout: float = FILE_TIMEOUT) -> str:
    """The file's text once it exists and ends with a newline (written completely)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text()
            if text.endswith("\n"):
                return text
        time.sleep(0.01)
    raise AssertionError(f"{path} did not appear within {timeout}s")


def wait_gone(pids: list[int], timeout: float = 5.0) -> None:
    """Wait until none of `pids` is alive; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return
        time.sleep(0.01)
    raise AssertionError(f"still alive after {timeout}s: {[p for p in pids if alive(p)]}")


def read_pids(path: Path) -> list[int]:
    """Whitespace-separated pids a workflow wrote to `path` (waiting for the file)."""
    return [int(p) for p in wait_for_file(path).split()]
