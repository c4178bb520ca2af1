"""Fixtures that run the real daemon: its installed `wfmd` executable, on a temporary socket
and database, with test workflows written the way an outside author would write them.

Every daemon started here tags its environment with a unique WFM_TEST_TAG, which every
workflow process inherits; after each test no process carrying the tag may be alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import pytest

from wfmctl import Client, DaemonUnreachable, WfmError, protocol
from wfmctl.protocol import Execution, LogEntry

BIN = Path(sys.executable).parent
WFMD = str(BIN / "wfmd")
WFMCTL = str(BIN / "wfmctl")
TAG_ENV = "WFM_TEST_TAG"

# Generous: a loaded 2-core CI machine can take seconds to start an interpreter.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0
# A daemon that refuses to start must say so within this long (start-up is one interpreter
# plus opening a file; a locked database adds SQLite's 5 s busy timeout at most).
REFUSAL_TIMEOUT = 20.0


# --------------------------------------------------------------------------- processes


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...), or
    None once the process is gone. The name is skipped by its last ")": it may hold spaces."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (zombies are already dead, and this
    machine's init may never reap them)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def tagged_pids(tag: str) -> list[int]:
    """Live processes whose environment carries this daemon's tag (never this process)."""
    needle = f"{TAG_ENV}={tag}".encode()
    found = []
    for pid in all_pids():
        if pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ and alive(pid):
            found.append(pid)
    return found


def kill_leftovers(tag: str) -> list[int]:
    """SIGKILL every live process carrying `tag`; returns their pids, for the test to fail
    on after it has cleaned up."""
    leaked = tagged_pids(tag)
    for pid in leaked:
        os.kill(pid, signal.SIGKILL)
    return leaked


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`.

    `os.killpg(pgid, 0)` would also count zombies.
    """
    members = []
    for pid in all_pids():
        fields = stat_fields(pid)
        if fields is not None and fields[0] != "Z" and int(fields[3]) == pgid:
            members.append(pid)
    return members


def parent_of(pid: int) -> int | None:
    """The parent of `pid`, or None once it is gone."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[1])


def proc_status(pid: int, key: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM, ...), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


# --------------------------------------------------------------------------- the daemon


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

    @property
    def pid(self) -> int:
        """The pid of the daemon process last started."""
        assert self.proc is not None, "the daemon was never started"
        return self.proc.pid

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

    def refusal(self) -> tuple[int, list[str], float]:
        """Start, expecting a refusal: the exit code, the log's lines, the seconds it took."""
        started = time.monotonic()
        self.start(wait=False)
        assert self.proc is not None
        try:
            code = self.proc.wait(REFUSAL_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(
                f"wfmd still running after {REFUSAL_TIMEOUT}s:\n{self.log()}"
            ) from None
        return code, self.log().splitlines(), time.monotonic() - started

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

    def wfmctl_popen(self, *args: str) -> subprocess.Popen[bytes]:
        """Start the real `wfmctl` against this daemon, without waiting for it."""
        env = dict(os.environ, WFM_SOCKET=str(self.socket))
        return subprocess.Popen(
            [WFMCTL, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _run(self, client: Client, workflow_id: str, params: Mapping[str, object]) -> Execution:
        return client.wait(client.run(workflow_id, params).handle)

    def run_and_wait(self, workflow_id: str, **params: object) -> str:
        """Run a workflow and wait for its end; its handle."""
        with self.client() as client:
            return self._run(client, workflow_id, params).handle

    def run_to_end(
        self,
        workflow_id: str,
        params: Mapping[str, object] | None = None,
        *,
        rescan: bool = False,
    ) -> tuple[Execution, list[LogEntry]]:
        """Run a workflow, wait for its end and read its whole log: the ended execution and
        its entries, as many as its `log_count` says. `rescan` first rescans the workflow
        directories, for a workflow written after the daemon started."""
        with self.client() as client:
            if rescan:
                client.workflows(rescan=True)
            ended = self._run(client, workflow_id, params or {})
            entries = list(client.iter_logs(ended.handle, limit=10_000))
        assert ended.log_count == len(entries), (ended, len(entries))
        return ended, entries


class MakeDaemon(Protocol):
    """The `make_daemon` fixture: a new, not yet started daemon on the test's directories."""

    def __call__(self, extra_args: list[str] | None = None, root: Path | None = None) -> Daemon: ...


def write_workflow(directory: Path, name: str, body: str, metadata: dict[str, object]) -> Path:
    """An executable Python workflow: answers --workflow-metadata, otherwise runs `body`."""
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
def make_daemon(tmp_path: Path, workflow_dir: Path, examples_dir: Path) -> Iterator[MakeDaemon]:
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
        leaked = kill_leftovers(daemon.tag)
        assert not leaked, f"processes left behind by the test: {leaked}"


@pytest.fixture
def daemon(make_daemon: MakeDaemon) -> Daemon:
    return make_daemon().start()


# --------------------------------------------------------------------------- files

# Bound on waiting for a file a workflow writes: generous for a loaded 2-core machine.
FILE_TIMEOUT = 15.0


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


# --------------------------------------------------------------------------- raw frames
# For tests that speak the protocol by hand, as a client in another language would: a stdlib
# socket, with the header format, size bound and decoder from wfmctl.protocol.

RAW_TIMEOUT = 10.0


class Closed(Exception):
    """The daemon closed the connection before a whole frame arrived."""


def raw_connect(
    path: Path, *, timeout: float = RAW_TIMEOUT, rcvbuf: int | None = None
) -> socket.socket:
    """A connected socket, its hello unread; `rcvbuf` shrinks its receive buffer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """`n` bytes; Closed if the daemon hangs up first."""
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except ConnectionResetError:
            # The daemon closed with bytes of ours still unread (after a bad frame): Linux
            # reports that as a reset once the frames it sent before have been read.
            raise Closed from None
        if not chunk:
            raise Closed
        buf += chunk
    return bytes(buf)


def recv_body(sock: socket.socket) -> bytes:
    """The body of the next frame (a length over MAX_FRAME raises protocol.FrameError)."""
    return recv_exactly(sock, protocol.frame_length(recv_exactly(sock, protocol.HEADER.size)))


def recv_frame(sock: socket.socket) -> protocol.ResponseType:
    """The next frame, which must decode as a valid response; Closed at EOF."""
    return protocol.decode_response(recv_body(sock))


def frame(body: bytes) -> bytes:
    """`body` behind its length header."""
    return protocol.HEADER.pack(len(body)) + body


@contextlib.contextmanager
def small_tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `mountpoint` (created) for a full-disk test; skips the test
    where mounting is not allowed (not root)."""
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
