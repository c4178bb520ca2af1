"""Security: who may connect, where the socket lives, and what hostile strings can do.

- The default runtime directory (`$XDG_RUNTIME_DIR/wfm`) is 0700 and the socket 0600; without
  XDG_RUNTIME_DIR the fallback is a private `wfm-<uid>` directory in the temp dir.
- Another user cannot connect: the 0700 directory stops them at connect (EACCES), and if the
  socket is reachable anyway, SO_PEERCRED makes the daemon answer `forbidden` and hang up.
- A runtime directory that belongs to someone else, is writable by group or others, or is a
  symbolic link is refused: exit 6 with a message saying why.
- Workflow ids are names, never paths: `../x`, `/bin/sh` run nothing.
- Parameter values reach the child as single argv elements, whatever they contain; undeclared
  names are refused.
- SQL in any string field is inert, and the database keeps all its tables.

The other-user cases need root (as in CI): a child Python drops to `nobody` before it
connects, since `nobody` may not be able to execute the test interpreter itself.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    WFMCTL,
    WFMD,
    Daemon,
    kill_leftovers,
    metadata,
    text_field,
    write_workflow,
)

from wfmctl import WfmError, paths, protocol
from wfmctl.protocol import HEADER, ErrorCode
from wfmd.main import EXIT_RUNTIME_DIR

CHILD_TIMEOUT = 30.0

TABLES = {"executions", "execution_params", "execution_logs", "schema_version", "daemon_heartbeat"}

# The argv dumper's fields, in metadata order; values are given in another order on purpose.
ARG_FIELDS = [f"f{i}" for i in range(12)]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


def _nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    return entry.pw_uid, entry.pw_gid


# --------------------------------------------------------------------------- fixtures


class XdgDaemon(Daemon):
    """A daemon started without --socket: it picks its socket from XDG_RUNTIME_DIR (or, with
    `xdg=None`, from the temp dir, which `tmpdir` redirects)."""

    def __init__(
        self,
        root: Path,
        workflow_dirs: list[Path],
        *,
        xdg: Path | None,
        tmpdir: Path | None = None,
    ) -> None:
        super().__init__(root, workflow_dirs, [])
        self.xdg = xdg
        self.tmpdir = tmpdir
        if xdg is not None:
            self.socket = xdg / "wfm" / "wfmd.sock"
        else:
            assert tmpdir is not None
            self.socket = tmpdir / f"wfm-{os.getuid()}" / "wfmd.sock"

    def argv(self) -> list[str]:
        argv = [WFMD, "--database", str(self.database)]
        for d in self.workflow_dirs:
            argv += ["--workflow-dir", str(d)]
        return argv

    def env(self) -> dict[str, str]:
        env = super().env()
        env.pop("XDG_RUNTIME_DIR", None)
        if self.xdg is not None:
            env["XDG_RUNTIME_DIR"] = str(self.xdg)
        if self.tmpdir is not None:
            env["TMPDIR"] = str(self.tmpdir)
        return env


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test starts; all are stopped and checked for leftover processes after."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.proc is not None and daemon.proc.poll() is None:
            assert daemon.stop() == 0, daemon.log()
    for daemon in started:
        leaked = kill_leftovers(daemon.tag)
        assert not leaked, f"processes left behind by the test: {leaked}"


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A fresh directory directly under /tmp that other users can traverse (mode 0711).

    tmp_path lives under a 0700 directory, which would stop another user before the
    directory under test does.
    """
    path = Path(tempfile.mkdtemp(prefix="wfm-security-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """An executable outside every workflow directory; running it creates `<it>.ran`."""
    path = tmp_path / "canary"
    path.write_text(f"#!/bin/sh\ntouch '{path}.ran'\necho canary ran\n")
    path.chmod(0o755)
    return path


def write_argv_workflows(directory: Path) -> Path:
    write_workflow(
        directory,
        "argv_dump",
        "print(json.dumps(sys.argv[1:]))\n",
        metadata("argv_dump", *(text_field(name) for name in ARG_FIELDS)),
    )
    write_workflow(
        directory,
        "sql_echo",
        "print(json.dumps(sys.argv[1:]))\n",
        metadata("sql_echo", text_field("f0"), text_field("f1")),
    )
    return directory


@pytest.fixture
def argv_workflows(tmp_path: Path) -> Path:
    return write_argv_workflows(tmp_path / "workflows")


@pytest.fixture(scope="module")
def argv_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the tests that only send requests (each checks what it changed)."""
    root = tmp_path_factory.mktemp("security")
    daemon = Daemon(root, [write_argv_workflows(root / "workflows")], [])
    daemon.start()
    try:
        yield daemon
    finally:
        code = daemon.stop()
        leaked = kill_leftovers(daemon.tag)
    assert code == 0, daemon.log()
    assert not leaked, f"processes left behind: {leaked}"


def run_as(uid: int, gid: int, code: str, *args: str) -> Any:
    """Run `code` in a child Python that drops to uid/gid (no supplementary groups) first;
    returns the JSON it prints."""
    prologue = textwrap.dedent(
        f"""
        import errno, json, os, socket, sys
        os.setgroups([])
        os.setgid({gid})
        os.setuid({uid})
        assert os.getuid() == os.geteuid() == {uid} and os.getgid() == {gid}
        """
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", prologue + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def history_count(daemon: Daemon) -> int:
    with daemon.client() as client:
        return len(client.history(limit=1000).executions)


# --------------------------------------------------------------------------- where the socket is


def test_default_runtime_dir_is_0700_and_socket_0600(
    tmp_path: Path, argv_workflows: Path, daemons: list[Daemon]
) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    daemon = XdgDaemon(tmp_path, [argv_workflows], xdg=xdg)
    daemons.append(daemon)
    daemon.start()
    sock = xdg / "wfm" / "wfmd.sock"
    with daemon.client() as client:
        assert Path(client.ping().socket) == sock
    dir_info = sock.parent.lstat()
    assert stat.S_ISDIR(dir_info.st_mode)
    assert stat.S_IMODE(dir_info.st_mode) == 0o700
    assert dir_info.st_uid == os.getuid()
    sock_info = sock.lstat()
    assert stat.S_ISSOCK(sock_info.st_mode)
    assert stat.S_IMODE(sock_info.st_mode) == 0o600
    assert sock_info.st_uid == os.getuid()
    # A client with the same environment finds it without being told.
    env = dict(os.environ, XDG_RUNTIME_DIR=str(xdg))
    env.pop("WFM_SOCKET", None)
    result = subprocess.run([WFMCTL, "ping"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_runtime_dir_without_xdg_is_private_dir_in_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit level, so that the real shared /tmp/wfm-<uid> is never touched."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv(paths.SOCKET_ENV, raising=False)
    expected = Path(tempfile.gettempdir()) / f"wfm-{os.getuid()}"
    assert paths.runtime_dir() == expected
    assert paths.default_socket_path() == expected / "wfmd.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "")  # empty counts as unset
    assert paths.runtime_dir() == expected
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/4242")
    assert paths.runtime_dir() == Path("/run/user/4242/wfm")


def test_fallback_runtime_dir_end_to_end(
    tmp_path: Path, argv_workflows: Path, daemons: list[Daemon]
) -> None:
    """XDG_RUNTIME_DIR unset and TMPDIR redirected: the daemon makes `$TMPDIR/wfm-<uid>`
    0700 and a client with the same environment finds it."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(mode=0o1777)
    tmpdir.chmod(0o1777)
    daemon = XdgDaemon(tmp_path, [argv_workflows], xdg=None, tmpdir=tmpdir)
    daemons.append(daemon)
    daemon.start()
    directory = tmpdir / f"wfm-{os.getuid()}"
    assert stat.S_IMODE(directory.lstat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "wfmd.sock").lstat().st_mode) == 0o600
    env = dict(os.environ, TMPDIR=str(tmpdir))
    env.pop("XDG_RUNTIME_DIR", None)
    env.pop("WFM_SOCKET", None)
    result = subprocess.run(
        [WFMCTL, "--json", "ping"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["socket"] == str(directory / "wfmd.sock")


UNSAFE_DIRS: dict[str, tuple[Callable[[Path], None], str]] = {
    "owned_by_nobody": (lambda d: os.chown(d, 65534, 65534), "belongs to uid 65534"),
    "world_writable": (lambda d: d.chmod(0o777), "writable by group or others"),
    "group_writable": (lambda d: d.chmod(0o770), "writable by group or others"),
}


@needs_root
@pytest.mark.parametrize("case", [*UNSAFE_DIRS, "symlink"])
def test_unsafe_runtime_dir_is_refused(
    tmp_path: Path, argv_workflows: Path, daemons: list[Daemon], case: str
) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    directory = xdg / "wfm"
    if case == "symlink":
        # Pointing at a private directory of ours: still refused, since the link (in a
        # directory someone else might control) could be swapped.
        target = tmp_path / "elsewhere"
        target.mkdir(mode=0o700)
        directory.symlink_to(target)
        expected = "not a directory"
    else:
        directory.mkdir(mode=0o700)
        tamper, expected = UNSAFE_DIRS[case]
        tamper(directory)
    before = directory.lstat()
    daemon = XdgDaemon(tmp_path, [argv_workflows], xdg=xdg)
    daemons.append(daemon)
    daemon.start(wait=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(CHILD_TIMEOUT) == EXIT_RUNTIME_DIR, daemon.log()
    assert expected in daemon.log(), daemon.log()
    assert str(directory) in daemon.log()
    after = directory.lstat()  # refused, not "fixed"
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)
    assert not (directory / "wfmd.sock").exists()
    assert not daemon.database.exists(), "the database was opened before the refusal"


# --------------------------------------------------------------------------- other users


@needs_root
@pytest.mark.parametrize("where", ["xdg_runtime_dir", "socket_flag"])
def test_other_user_cannot_reach_the_socket(
    public_dir: Path, argv_workflows: Path, tmp_path: Path, daemons: list[Daemon], where: str
) -> None:
    """The socket's 0700 directory stops another user at connect(): EACCES is the refusal.

    `xdg_runtime_dir`: the default location, with XDG_RUNTIME_DIR 0700 as the XDG spec
    requires (platformdirs ignores a laxer one). `socket_flag`: `--socket` in a directory
    the daemon creates (0700) inside a traversable one, so that it is the daemon's own
    directory that stops them, not a parent.
    """
    uid, gid = _nobody()
    if where == "xdg_runtime_dir":
        xdg = public_dir / "xdg"
        xdg.mkdir(mode=0o700)
        daemon: Daemon = XdgDaemon(tmp_path, [argv_workflows], xdg=xdg)
        reachable = public_dir
    else:
        daemon = Daemon(tmp_path, [argv_workflows], [])
        daemon.socket = public_dir / "made-by-wfmd" / "wfmd.sock"
        reachable = public_dir
    daemons.append(daemon)
    daemon.start()
    assert stat.S_IMODE(daemon.socket.parent.lstat().st_mode) == 0o700
    result = run_as(
        uid,
        gid,
        """
        out = {"parent": os.path.isdir(sys.argv[1])}
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        try:
            s.connect(sys.argv[2])
            out["connect"] = "ok"
        except OSError as exc:
            out["connect"] = errno.errorcode[exc.errno]
        print(json.dumps(out))
        """,
        str(reachable),
        str(daemon.socket),
    )
    assert result == {"parent": True, "connect": "EACCES"}
    with daemon.client() as client:  # and its owner is still served
        client.ping()


@needs_root
def test_peercred_refuses_another_user(
    public_dir: Path, argv_workflows: Path, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """With the socket made reachable on purpose (0755 dir, 0666 socket), SO_PEERCRED still
    refuses: one `forbidden` error frame, no hello, and the connection is closed."""
    uid, gid = _nobody()
    sock_dir = public_dir / "open"
    sock_dir.mkdir()
    sock_dir.chmod(0o755)
    daemon = Daemon(tmp_path, [argv_workflows], [])
    daemon.socket = sock_dir / "wfmd.sock"
    daemons.append(daemon)
    daemon.start()
    daemon.socket.chmod(0o666)
    ping = HEADER.pack(len(b"\x81\xa2op\xa4ping")) + b"\x81\xa2op\xa4ping"
    result = run_as(
        uid,
        gid,
        f"""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(sys.argv[1])
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
            eof = True
        except TimeoutError:
            eof = False
        try:
            s.sendall({ping!r})
            more = s.recv(65536)
        except OSError as exc:
            more = errno.errorcode[exc.errno].encode()
        print(json.dumps({{"data": data.hex(), "eof": eof, "after": more.hex()}}))
        """,
        str(daemon.socket),
    )
    data = bytes.fromhex(result["data"])
    assert result["eof"], "the daemon kept the connection open"
    (length,) = HEADER.unpack(data[: HEADER.size])
    assert len(data) == HEADER.size + length, "more than one frame"
    reply = protocol.decode_response(data[HEADER.size :])
    assert isinstance(reply, protocol.Error)
    assert reply.code == ErrorCode.FORBIDDEN
    assert bytes.fromhex(result["after"]) in (b"", b"EPIPE", b"ECONNRESET")
    with daemon.client() as client:
        assert client.ping().running == 0


# --------------------------------------------------------------------------- workflow ids


HOSTILE_IDS = [
    "../canary",
    "../../bin/sh",
    "/bin/sh",
    "/bin/touch",
    "./argv_dump",
    "argv_dump/../argv_dump",
    "workflows/argv_dump",
    "argv_dump\n",
    " argv_dump",
    "argv_dump\x00",
    "~/argv_dump",
    "$(touch /tmp/wfm-security-pwned)",
]


def test_workflow_ids_are_names_never_paths(argv_daemon: Daemon, canary: Path) -> None:
    workflows = Path(argv_daemon.workflow_dirs[0])
    ids = [*HOSTILE_IDS, str(canary), os.path.relpath(canary, workflows)]
    before = history_count(argv_daemon)
    with argv_daemon.client() as client:
        for workflow_id in ids:
            with pytest.raises(WfmError) as info:
                client.run(workflow_id, {})
            assert info.value.code == ErrorCode.NOT_FOUND, (workflow_id, info.value)
            with pytest.raises(WfmError) as info:
                client.workflows(workflow_id=workflow_id)
            assert info.value.code == ErrorCode.NOT_FOUND
            assert client.history(workflow_id=workflow_id).executions == []
        assert sorted(w.id for w in client.workflows().workflows) == ["argv_dump", "sql_echo"]
    cli = argv_daemon.wfmctl("run", "../canary", "--wait")
    assert cli.returncode == 66, cli
    assert history_count(argv_daemon) == before
    assert not Path(f"{canary}.ran").exists(), "the canary ran"
    assert not Path("/tmp/wfm-security-pwned").exists()


# --------------------------------------------------------------------------- parameters


def hostile_values(marker: Path) -> list[str]:
    return [
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"; touch {marker}",
        f"| touch {marker} &",
        f"&& touch {marker} || touch {marker}",
        "line one\nline two\r\nline three\n",
        "--leading-dashes",
        "-rf /",
        "' OR 1=1 --",
        "${HOME} $PATH * ? [a-z] ~ {a,b} > /tmp/nope < /etc/passwd 2>&1",
        "",
        "quotes ' \" \\ and tab\tand unicode \u00e9\u2713\U0001f680",
    ]


def test_parameter_values_arrive_verbatim_as_single_argv_elements(
    argv_daemon: Daemon, tmp_path: Path
) -> None:
    marker = tmp_path / "metachar.ran"
    values = dict(zip(ARG_FIELDS, hostile_values(marker), strict=True))
    given = dict(reversed(values.items()))  # order of the map is not the order of argv
    with argv_daemon.client() as client:
        execution = client.run("argv_dump", given)
        ended = client.wait(execution.handle)
        assert ended.status == "Completed", ended
        lines = [e.line for e in client.iter_logs(execution.handle) if e.stream == "stdout"]
        recorded = client.params(execution.handle).params
    assert len(lines) == 1, lines
    expected_argv = [item for name in ARG_FIELDS for item in (f"--{name}", values[name])]
    assert json.loads(lines[0]) == expected_argv
    assert recorded == values
    assert list(recorded) == ARG_FIELDS  # recorded in field order
    assert not marker.exists(), "a shell ran"


def test_parameter_values_through_the_cli(argv_daemon: Daemon, tmp_path: Path) -> None:
    marker = tmp_path / "cli.ran"
    values = [*hostile_values(marker)[:5], "-p", "--json", "a=b=c"]
    args = []
    for name, value in zip(ARG_FIELDS, values, strict=False):
        args += ["-p", f"{name}={value}"]
    result = argv_daemon.wfmctl("run", "argv_dump", *args, "--wait", "--json")
    assert result.returncode == 0, result
    ended = json.loads(result.stdout)
    assert ended["status"] == "Completed"
    handle = ended["handle"]
    with argv_daemon.client() as client:
        lines = [e.line for e in client.iter_logs(handle) if e.stream == "stdout"]
    expected = [x for name, v in zip(ARG_FIELDS, values, strict=False) for x in (f"--{name}", v)]
    assert json.loads(lines[0]) == expected
    assert not marker.exists()


def test_nul_in_parameter_value_is_refused(argv_daemon: Daemon) -> None:
    before = history_count(argv_daemon)
    with argv_daemon.client() as client:
        with pytest.raises(WfmError) as info:
            execution = client.run("argv_dump", {"f0": "a\x00b"})
            client.wait(execution.handle)
        assert info.value.code == ErrorCode.INVALID_PARAMS
    assert history_count(argv_daemon) == before


UNDECLARED = [
    {"f0": "ok", "evil": "x"},
    {"--f0": "x"},
    {"f0; touch /tmp/x": "x"},
    {"": "x"},
    {"F0": "x"},
    {"f0 ": "x"},
    {"' OR 1=1 --": "x"},
]


def test_undeclared_parameter_names_are_rejected(argv_daemon: Daemon) -> None:
    before = history_count(argv_daemon)
    with argv_daemon.client() as client:
        for params in UNDECLARED:
            with pytest.raises(WfmError) as info:
                client.run("argv_dump", params)
            assert info.value.code == ErrorCode.INVALID_PARAMS, params
            for name in params:
                if name not in ARG_FIELDS:
                    assert repr(name) in info.value.message, (name, info.value.message)
    assert history_count(argv_daemon) == before


# --------------------------------------------------------------------------- SQL


SQL_STRINGS = [
    "' OR 1=1 --",
    "' OR '1'='1",
    '" OR ""="',
    "x'; DROP TABLE executions; --",
    "1; DELETE FROM execution_logs",
    "%",
    "_",
    "%%",
    "*",
    "' UNION SELECT * FROM executions --",
]


def test_sql_in_string_fields_is_inert(argv_daemon: Daemon) -> None:
    stored_values = SQL_STRINGS[:4]
    with argv_daemon.client() as client:
        assert client.history(workflow_id="sql_echo").executions == []
        handles = []
        for value in stored_values:
            execution = client.run("sql_echo", {"f0": value, "f1": "%"})
            assert client.wait(execution.handle).status == "Completed"
            handles.append(execution.handle)
        total = len(client.history(limit=1000).executions)
        for s in SQL_STRINGS:
            for call in (
                client.status,
                client.logs,
                client.params,
                client.cancel,
                client.wait,
                lambda h: list(client.follow(h)),
            ):
                with pytest.raises(WfmError) as info:
                    call(s)
                assert info.value.code == ErrorCode.NOT_FOUND, (s, info.value)
            with pytest.raises(WfmError) as info:
                client.run(s, {"f0": s})
            assert info.value.code == ErrorCode.NOT_FOUND
            with pytest.raises(WfmError) as info:
                client.history(before=s)
            assert info.value.code == ErrorCode.NOT_FOUND
            with pytest.raises(WfmError) as info:
                client.workflows(workflow_id=s)
            assert info.value.code == ErrorCode.NOT_FOUND
            with pytest.raises(WfmError) as info:
                client.history(status=s)  # type: ignore[arg-type]
            assert info.value.code == ErrorCode.BAD_REQUEST
            assert client.history(workflow_id=s).executions == []
            assert client.param_history(s).values == {}
            assert client.param_history("sql_echo", field_name=s).values == {}
        # The values went in as data and come back as data.
        recorded = client.param_history("sql_echo")
        assert recorded.values == {"f0": list(reversed(stored_values)), "f1": ["%"]}
        for handle, value in zip(handles, stored_values, strict=True):
            assert client.params(handle).params == {"f0": value, "f1": "%"}
            line = next(e.line for e in client.iter_logs(handle) if e.stream == "stdout")
            assert json.loads(line) == ["--f0", value, "--f1", "%"]
        assert len(client.history(limit=1000).executions) == total
        client.ping()

    uri = f"file:{argv_daemon.database}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables >= TABLES, tables
        assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM executions").fetchone() == (total,)
        stored = db.execute(
            "SELECT p.value FROM execution_params AS p JOIN executions AS e"
            " ON e.id = p.execution_id WHERE e.workflow_id = 'sql_echo' AND p.name = 'f0'"
            " ORDER BY e.id"
        ).fetchall()
        assert [v for (v,) in stored] == stored_values
