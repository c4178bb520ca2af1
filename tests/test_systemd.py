"""wfmd under systemd, with systemd's side played for real: a datagram socket as
$NOTIFY_SOCKET, `systemd-socket-activate` for socket activation, a file as the journal's
stream; and `wfmctl shutdown` for a daemon started by hand.

The units themselves and `wfmctl service` are in test_systemd_service.py.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import stat
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import (
    START_TIMEOUT,
    TAG_ENV,
    WFMD,
    Daemon,
    MakeDaemon,
    metadata,
    text_field,
    wait_for_file,
    write_workflow,
)
from test_security import _nobody as nobody
from test_security import run_as

import wfmd
from wfmctl import Client, protocol
from wfmd import systemd
from wfmd.systemd import JournalFormatter, stderr_is_journal

# Variables systemd hands wfmd that no workflow may inherit.
SYSTEMD_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")

# Writes the variables above as it sees them to its --out file, then sleeps until stopped.
SLEEPER = f"""
with open(sys.argv[2] + ".tmp", "w") as f:
    json.dump({{k: os.environ.get(k) for k in {SYSTEMD_ONLY!r}}}, f)
    f.write("\\n")
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
time.sleep(120)
"""

# 0.4 s: wfmd pings every 0.2 s.
WATCHDOG_USEC = 400_000
# How long the pings are counted: 7.5 expected.
WATCHDOG_WINDOW = 1.5

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def require(tool: str) -> str:
    """The path of a systemd tool. CI installs them (.ci/run) and sets
    WFM_REQUIRE_SYSTEMD_TOOLS: there a missing one fails rather than skips."""
    import shutil

    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (Debian: apt-get install systemd)"
        if os.environ.get("WFM_REQUIRE_SYSTEMD_TOOLS"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def sleeper(workflow_dir: Path) -> None:
    write_workflow(workflow_dir, "sleeper", SLEEPER, metadata("sleeper", text_field("out")))


def inherited(path: Path) -> dict[str, str | None]:
    """What the sleeper saw of SYSTEMD_ONLY."""
    seen: dict[str, str | None] = json.loads(wait_for_file(path))
    return seen


# --------------------------------------------------------------------------- sd_notify


class Notice(NamedTuple):
    at: float  # time.monotonic() when received
    pid: int  # the sender, as the kernel says (SCM_CREDENTIALS): how systemd tells them
    fields: dict[str, str]


class NotifyListener:
    """systemd's end of $NOTIFY_SOCKET: a datagram socket that keeps every message."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.seen: list[Notice] = []

    def receive(self, timeout: float) -> Notice | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, ancillary, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except TimeoutError:
            return None
        pid = next(
            _UCRED.unpack(cdata[: _UCRED.size])[0]
            for level, kind, cdata in ancillary
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
        )
        fields = dict(line.partition("=")[::2] for line in data.decode().splitlines())
        notice = Notice(time.monotonic(), pid, fields)
        self.seen.append(notice)
        return notice

    def until(self, wanted: Callable[[Notice], bool], timeout: float) -> Notice:
        """Receive until a message is `wanted`; it is returned (all are kept in `seen`)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            notice = self.receive(remaining)
            if notice is not None and wanted(notice):
                return notice
        raise AssertionError(f"no such message within {timeout}s; got {self.seen}")

    def during(self, seconds: float) -> list[Notice]:
        """Every message received in the next `seconds`."""
        first = len(self.seen)
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.receive(remaining)
        return self.seen[first:]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_path(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(str(tmp_path / "notify"))
    yield listener
    listener.close()


@pytest.fixture
def notify_abstract() -> Iterator[NotifyListener]:
    listener = NotifyListener(f"@wfm-test-notify-{uuid.uuid4().hex}")
    yield listener
    listener.close()


def is_ready(notice: Notice) -> bool:
    return notice.fields.get("READY") == "1"


def is_stopping(notice: Notice) -> bool:
    return notice.fields.get("STOPPING") == "1"


def start_notifying(
    daemon: Daemon, listener: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> Notice:
    """Start `daemon` with $NOTIFY_SOCKET; READY is returned once the socket answered."""
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    daemon.start(wait=False)
    ready = listener.until(is_ready, START_TIMEOUT)
    # READY comes only once the socket accepts: a client is served at once.
    with Client(daemon.socket, timeout=5) as client:
        assert client.ping().pid == daemon.pid
    return ready


def test_notify_ready_status_watchdog_stopping(
    make_daemon: MakeDaemon,
    workflow_dir: Path,
    tmp_path: Path,
    notify_path: NotifyListener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeper(workflow_dir)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    daemon = make_daemon(["--max-concurrent", "1"])
    ready = start_notifying(daemon, notify_path, monkeypatch)

    # Start-up says what it is doing, then READY with the first summary.
    starting = [n.fields.get("STATUS", "") for n in notify_path.seen[:-1]]
    assert starting and all(s.startswith("starting: ") for s in starting), starting
    assert ready.fields["STATUS"] == "0 running, 0 queued"

    # WATCHDOG=1 every WATCHDOG_USEC / 2 (0.2 s): 7.5 in the window. Half a ping's lateness
    # on a loaded machine either way is allowed, not the full period (3.75) nor a quarter (15).
    pings = [n.at for n in notify_path.during(WATCHDOG_WINDOW) if n.fields.get("WATCHDOG")]
    assert 5 <= len(pings) <= 10, pings
    gaps = sorted(b - a for a, b in itertools.pairwise(pings))
    assert 0.15 <= gaps[len(gaps) // 2] <= 0.3, gaps

    # STATUS follows the counts: one running, one waiting for the one slot.
    outs = [tmp_path / "first.json", tmp_path / "second.json"]
    with daemon.client() as client:
        handles = [client.run("sleeper", {"out": str(out)}).handle for out in outs]
    notify_path.until(lambda n: n.fields.get("STATUS") == "1 running, 1 queued", 10)
    assert all(v is None for v in inherited(outs[0]).values()), "a workflow inherited them"

    assert daemon.stop() == 0  # SIGTERM
    stopping = notify_path.until(is_stopping, 5)
    assert stopping.fields["STATUS"] == "stopping: 1 still running"

    # Every message came from wfmd itself, as systemd's NotifyAccess=main requires.
    assert {n.pid for n in notify_path.seen} == {daemon.pid}
    daemon.start()
    with daemon.client() as client:
        assert client.status(handles[0]).status == "Cancelled"


def test_notify_abstract_socket_and_a_watchdog_meant_for_another_process(
    make_daemon: MakeDaemon, notify_abstract: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.setenv("WATCHDOG_PID", "1")  # not wfmd: sd_watchdog_enabled says no
    daemon = make_daemon()
    start_notifying(daemon, notify_abstract, monkeypatch)
    quiet = notify_abstract.during(3 * WATCHDOG_USEC / 1e6)
    assert not [n for n in quiet if "WATCHDOG" in n.fields]
    assert daemon.stop() == 0
    notify_abstract.until(is_stopping, 5)


# --------------------------------------------------------------------------- journald

NOT_A_WORKFLOW = "#!/bin/sh\necho 'not json'\n"


def test_journal_lines_carry_priorities_and_no_time(
    make_daemon: MakeDaemon, workflow_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = workflow_dir / "broken"
    broken.write_text(NOT_A_WORKFLOW)
    broken.chmod(0o755)
    daemon = make_daemon()
    daemon.log_path.touch()  # stands in for the journal's stream, as JOURNAL_STREAM says
    info = daemon.log_path.stat()
    monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
    daemon.start()
    assert daemon.stop() == 0
    lines = daemon.log().splitlines()
    assert lines and all(line[:3] in ("<2>", "<3>", "<4>", "<6>", "<7>") for line in lines), lines
    assert any(line.startswith("<6>wfmd.daemon: wfmd ") and " ready on " in line for line in lines)
    assert any(line.startswith("<4>wfmd.daemon: skipped ") for line in lines), lines
    assert not [line for line in lines if line[3:7].isdigit()], "a timestamp of its own"


def test_journal_formatter_and_stream_check(tmp_path: Path) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("wfmd.x", logging.ERROR, __file__, 1, "failed: %s", ("a",), None)
        record.exc_info = sys.exc_info()
    lines = JournalFormatter().format(record).splitlines()
    assert lines[0] == "<3>wfmd.x: failed: a"
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)  # the traceback too
    assert [systemd.priority(level) for level in (5, 10, 20, 30, 40, 50)] == [7, 7, 6, 4, 3, 2]

    with (tmp_path / "stream").open("w") as stream:
        info = os.fstat(stream.fileno())
        match = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        assert stderr_is_journal(match, stream.fileno())
        # Set, but stderr was redirected since: not the journal.
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{info.st_dev}:1"}, stream.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": "junk"}, stream.fileno())
        assert not stderr_is_journal({}, stream.fileno())


def test_take_environment_takes_the_variables_out() -> None:
    pid = str(os.getpid())
    environ = {
        "NOTIFY_SOCKET": "/nonexistent/notify",
        "WATCHDOG_USEC": "5000000",
        "WATCHDOG_PID": pid,
        "LISTEN_FDS": "1",
        "LISTEN_PID": str(os.getpid() + 1),  # meant for another process: not ours
        "LISTEN_FDNAMES": "wfmd.socket",
        "KEPT": "1",
    }
    taken = systemd.take_environment(environ)
    assert environ == {"KEPT": "1"}
    assert taken.watchdog == 5.0 and taken.notifier.enabled and taken.listen_fds == []
    taken.notifier.send("WATCHDOG=1")  # nobody listens: logged, not raised
    taken.notifier.close()
    assert systemd.take_environment({}).notifier.enabled is False


# --------------------------------------------------------------------------- wfmctl shutdown


def test_wfmctl_shutdown_stops_a_daemon_started_by_hand(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path
) -> None:
    sleeper(workflow_dir)
    daemon = make_daemon(["--max-concurrent", "1"]).start()
    outs = [tmp_path / "running.json", tmp_path / "queued.json"]
    with daemon.client() as client:
        running, queued = (client.run("sleeper", {"out": str(out)}).handle for out in outs)
    wait_for_file(outs[0])

    done = daemon.wfmctl("shutdown", "--json")
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply == {"type": "stopping", "pid": daemon.pid, "running": 1, "queued": 1}
    # It returned once wfmd had exited (a zombie until this test reaps it).
    assert daemon.proc is not None and daemon.proc.wait(1) == 0
    assert "shutdown requested by a client: shutting down" in daemon.log()
    assert not daemon.socket.exists()

    daemon.start()
    with daemon.client() as client:
        stopped = client.status(running)
        assert (stopped.status, stopped.ended_by) == ("Cancelled", "cancelled"), stopped
        assert client.status(queued).status in ("NotStarted", "Running")  # queued, not ended

    # Not running: one line, the unreachable exit code.
    daemon.stop()
    gone = daemon.wfmctl("shutdown")
    assert gone.returncode == 69 and gone.stderr.count("\n") == 1, gone.stderr


# --------------------------------------------------------------------------- socket activation


LISTENING = "Listening on "


def activate(daemon: Daemon, tool: str, address: str | None = None) -> subprocess.Popen[bytes]:
    """`systemd-socket-activate` listening on `address` (the daemon's socket by default), to
    exec wfmd on the first connection; it is the daemon's process (`daemon.proc`), so the
    fixture stops it."""
    env = daemon.env()
    before = daemon.log().count(LISTENING)
    argv = [tool, "--listen", address or str(daemon.socket), "--fdname=wfmd.socket"]
    for name in (TAG_ENV, "WFM_CONFIG"):  # it passes on only what it is told to
        argv.append(f"--setenv={name}={env[name]}")
    with daemon.log_path.open("ab") as log:
        daemon.proc = subprocess.Popen(
            argv + daemon.argv(), env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
    # It says so once it listens (a socket file left behind is there before).
    deadline = time.monotonic() + START_TIMEOUT
    while daemon.log().count(LISTENING) == before:
        assert daemon.proc.poll() is None, daemon.log()
        assert time.monotonic() < deadline, "systemd-socket-activate did not listen"
        time.sleep(0.01)
    return daemon.proc


def command_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_socket_activation(make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path) -> None:
    tool = require("systemd-socket-activate")
    sleeper(workflow_dir)
    daemon = make_daemon()
    daemon.socket.parent.mkdir(mode=0o700)
    proc = activate(daemon, tool)
    assert "wfmd" not in command_of(proc.pid).split()[0]  # not started before a connection

    # The first connection starts wfmd, on the socket passed, and is served.
    with Client(daemon.socket, timeout=START_TIMEOUT) as client:
        pong = client.ping()
        assert (pong.pid, pong.socket) == (proc.pid, str(daemon.socket))
        handle = client.run("sleeper", {"out": str(tmp_path / "env.json")}).handle
    assert all(v is None for v in inherited(tmp_path / "env.json").values())
    assert "passed by socket activation" in daemon.log()

    # Stopped, wfmd leaves the socket file alone: it did not create it.
    assert daemon.stop() == 0
    assert stat.S_ISSOCK(daemon.socket.lstat().st_mode)
    with socket.socket(socket.AF_UNIX) as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(str(daemon.socket))

    # A second activation on the same path works, on the same history.
    proc = activate(daemon, tool)
    with Client(daemon.socket, timeout=START_TIMEOUT) as client:
        assert client.ping().pid == proc.pid
        assert client.status(handle).status == "Cancelled"
    assert daemon.stop() == 0
    assert daemon.socket.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_passed_socket_still_refuses_other_users(make_daemon: MakeDaemon) -> None:
    tool = require("systemd-socket-activate")
    uid, gid = nobody()
    # An abstract socket: no file mode keeps anyone out, only the peer's credentials do.
    address = f"@wfm-test-{uuid.uuid4().hex}"
    daemon = make_daemon()
    activate(daemon, tool, address)
    with Client("\0" + address[1:], timeout=START_TIMEOUT) as client:
        assert client.ping().socket == address
    raw = run_as(
        uid,
        gid,
        """
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect("\\0" + sys.argv[1][1:])
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        print(json.dumps(data.hex()))
        """,
        address,
    )
    reply = protocol.decode_response(bytes.fromhex(raw)[protocol.HEADER.size :])
    assert isinstance(reply, protocol.Error) and reply.code == "forbidden", reply
    assert daemon.stop() == 0


def test_wfmd_version() -> None:
    done = subprocess.run([WFMD, "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, f"wfmd {wfmd.__version__}\n")


# LISTEN_PID must be wfmd's own pid, known only after the fork: this sets it, moves the
# descriptor to 3 and execs wfmd, as systemd does.
PASS_AS_LISTEN_FD = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_a_passed_descriptor_that_is_not_a_unix_stream_socket_is_refused(
    make_daemon: MakeDaemon,
) -> None:
    from wfmd.main import EXIT_RUNTIME_DIR

    daemon = make_daemon()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dgram:
        fd = dgram.fileno()
        with daemon.log_path.open("ab") as log:
            daemon.proc = subprocess.Popen(
                [sys.executable, "-c", PASS_AS_LISTEN_FD, str(fd), *daemon.argv()],
                env=daemon.env(),
                stdout=log,
                stderr=log,
                pass_fds=(fd,),
            )
    assert daemon.proc.wait(START_TIMEOUT) == EXIT_RUNTIME_DIR
    assert "is not a Unix stream socket" in daemon.log()
    assert not daemon.socket.exists()
