"""The systemd units (systemd/) and `wfmctl service install|uninstall|status`.

`systemd-analyze verify` checks the shipped units and what `service install` writes. It
runs without a service manager, in user mode, given a runtime directory of its own
(XDG_RUNTIME_DIR); it exits 0 even when it warns, so its stderr must be empty too.

`systemctl` is a recording stub: this machine (a container, CI) has no user manager. Where
one exists it is the tester's own session, which a test must not install into; the real
systemctl is only asked, where no user manager answers, to show the one-line refusal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import WFMCTL, WFMD
from test_systemd import require

from wfmctl import WfmError, paths
from wfmctl.cli import service
from wfmd.config import Config
from wfmd.daemon import SHUTDOWN_COMMIT_GRACE
from wfmd.main import (
    EXIT_DATABASE_CORRUPT,
    EXIT_DATABASE_TOO_NEW,
    EXIT_RUNTIME_DIR,
    EXIT_USAGE,
)

SHIPPED = Path(__file__).resolve().parents[1] / "systemd"

# Records each call's arguments, one JSON list a line, and answers as a user manager would:
# `show` with a version, or with the units' state.
STUB = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if os.environ.get("STUB_FAIL"):
    sys.exit("Failed to connect to bus: No medium found")
if args[:2] == ["--user", "show"]:
    if "--property=Version" in args:
        print("Version=252 (stub)")
    else:
        units = [a for a in args[2:] if not a.startswith("-")]
        print("\\n\\n".join(
            f"Id={{u}}\\nLoadState=loaded\\nUnitFileState=enabled\\nActiveState=active\\n"
            f"SubState={{'running' if u.endswith('.service') else 'listening'}}\\n"
            f"MainPID={{4242 if u.endswith('.service') else 0}}\\n"
            f"StatusText={{'0 running, 0 queued' if u.endswith('.service') else ''}}"
            for u in units
        ))
"""


def settings(unit: str) -> dict[str, list[str]]:
    """A unit file's settings: key -> values, in order (comments and sections left out)."""
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def verify(tmp_path: Path, *units: Path, home: Path | None = None) -> None:
    """`systemd-analyze verify --user`: exit 0 and not a word on stderr."""
    tool = require("systemd-analyze")
    runtime = tmp_path / "verify-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), SYSTEMD_LOG_COLOR="0")
    if home is not None:
        env["HOME"] = str(home)  # %h
    done = subprocess.run(
        [tool, "verify", "--user", *map(str, units)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr


class Session:
    """wfmctl run with a temporary XDG_CONFIG_HOME and XDG_DATA_HOME, and the stub first on
    PATH."""

    def __init__(self, root: Path) -> None:
        self.config = root / "config"
        self.data = root / "data"
        self.log = root / "systemctl.log"
        self.bin = root / "bin"
        self.bin.mkdir()
        stub = self.bin / "systemctl"
        stub.write_text(STUB)
        stub.chmod(0o755)
        self.env = dict(
            os.environ,
            XDG_CONFIG_HOME=str(self.config),
            XDG_DATA_HOME=str(self.data),
            STUB_LOG=str(self.log),
            PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        self.env.pop("STUB_FAIL", None)

    @property
    def unit_dir(self) -> Path:
        return self.config / "systemd" / "user"

    def wfmctl(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [WFMCTL, *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def session(tmp_path: Path) -> Session:
    return Session(tmp_path)


# --------------------------------------------------------------------------- the shipped units


def test_the_shipped_units_verify(tmp_path: Path) -> None:
    # %h/.local/bin/wfmd (pipx's place) must exist: a home where it is this wfmd.
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "wfmd").symlink_to(WFMD)
    verify(tmp_path, SHIPPED / "wfmd.service", SHIPPED / "wfmd.socket", home=home)


def test_the_shipped_units_say_what_wfmd_needs() -> None:
    unit = settings((SHIPPED / "wfmd.service").read_text())
    assert unit["Type"] == ["notify"]
    assert unit["KillMode"] == ["mixed"]  # wfmd stops its workflows itself
    assert unit["Delegate"] == ["yes"]  # a cgroup per execution below wfmd's
    assert unit["OOMPolicy"] == ["continue"]
    assert unit["Restart"] == ["on-failure"]
    assert float(unit["WatchdogSec"][0]) > 0
    # Stopping takes at most cancel_grace, then SHUTDOWN_COMMIT_GRACE for the last commit.
    assert float(unit["TimeoutStopSec"][0]) > Config().cancel_grace + SHUTDOWN_COMMIT_GRACE
    never_retried = {EXIT_USAGE, EXIT_DATABASE_CORRUPT, EXIT_DATABASE_TOO_NEW, EXIT_RUNTIME_DIR}
    assert {int(code) for code in unit["RestartPreventExitStatus"][0].split()} == never_retried
    assert unit["Requires"] == unit["After"] == ["wfmd.socket"]
    assert "NoNewPrivileges" not in unit  # see the unit's comment: it breaks sudo, FUSE, ...

    socket_unit = settings((SHIPPED / "wfmd.socket").read_text())
    # The daemon's and the clients' default path under systemd: $XDG_RUNTIME_DIR/wfm/wfmd.sock.
    assert socket_unit["ListenStream"] == [f"%t/{paths.APP_NAME}/{paths.SOCKET_NAME}"]
    assert socket_unit["SocketMode"] == ["0600"]
    assert socket_unit["DirectoryMode"] == ["0700"]


def test_the_readme_table_lists_the_codes_that_prevent_a_restart() -> None:
    readme = (SHIPPED.parent / "README.md").read_text()
    prevented = settings((SHIPPED / "wfmd.service").read_text())["RestartPreventExitStatus"]
    for code in prevented[0].split():
        assert re.search(rf"^\| {code} \| ", readme, re.MULTILINE), code


# --------------------------------------------------------------------------- wfmctl service


def test_install_writes_units_that_verify_then_status_and_uninstall(
    session: Session, tmp_path: Path
) -> None:
    done = session.wfmctl("service", "install", "--now")
    assert done.returncode == 0, done.stderr
    service_file = session.unit_dir / "wfmd.service"
    socket_file = session.unit_dir / "wfmd.socket"
    doc = session.data / "doc" / "wfm" / "README.md"
    assert {p.name for p in session.unit_dir.iterdir()} == {"wfmd.service", "wfmd.socket"}
    unit = settings(service_file.read_text())
    assert unit["ExecStart"] == [WFMD]  # the wfmd beside this wfmctl, by its absolute path
    assert unit["Documentation"] == [doc.as_uri()]
    assert settings(socket_file.read_text())["Documentation"] == [doc.as_uri()]
    assert doc.read_text().startswith("# wfm")
    assert "loginctl enable-linger" in done.stdout or Path("/var/lib/systemd/linger").is_dir()
    assert session.calls() == [
        ["--user", "show", "--property=Version"],
        ["--user", "daemon-reload"],
        ["--user", "enable", "--now", "wfmd.socket", "wfmd.service"],
    ]
    verify(tmp_path, service_file, socket_file)

    status = session.wfmctl("service", "status")
    assert status.returncode == 0, status.stderr
    assert "wfmd.service: active (running), enabled, pid 4242: 0 running, 0 queued" in status.stdout
    assert "wfmd.socket: active (listening), enabled" in status.stdout
    assert f"(wfmd: {WFMD})" in status.stdout
    as_json = json.loads(session.wfmctl("service", "status", "--json").stdout)
    assert as_json["units"]["wfmd.service"]["StatusText"] == "0 running, 0 queued"

    # A unit the user wrote is not theirs to remove; those install wrote are.
    gone = session.wfmctl("service", "uninstall")
    assert gone.returncode == 0, gone.stderr
    assert list(session.unit_dir.iterdir()) == [] and not doc.exists()
    assert session.calls()[-2:] == [
        ["--user", "disable", "--now", "wfmd.socket", "wfmd.service"],
        ["--user", "daemon-reload"],
    ]
    again = session.wfmctl("service", "uninstall")
    assert again.returncode == 0 and "not installed" in again.stdout


def test_uninstall_keeps_a_unit_install_did_not_write(session: Session) -> None:
    session.unit_dir.mkdir(parents=True)
    mine = session.unit_dir / "wfmd.service"
    mine.write_text("[Service]\nExecStart=/bin/true\n")
    done = session.wfmctl("service", "uninstall")
    assert done.returncode == 0, done.stderr
    assert mine.exists() and "kept " in done.stdout


def test_an_awkward_wfmd_path_is_escaped_in_execstart(tmp_path: Path) -> None:
    # Spaces, `%` (a specifier) and `$` (a variable, in arguments).
    awkward = tmp_path / "my 100% $HOME" / "bin"
    awkward.mkdir(parents=True)
    (awkward / "wfmd").symlink_to(WFMD)
    doc = {"Documentation": service.escape((awkward / "README.md").as_uri())}
    units = service.shipped_units()
    written = tmp_path / "units"
    written.mkdir()
    (written / "wfmd.socket").write_text(service.render(units["wfmd.socket"], doc))
    text = service.render(
        units["wfmd.service"], {**doc, "ExecStart": service.exec_argument(str(awkward / "wfmd"))}
    )
    (written / "wfmd.service").write_text(text)
    verify(tmp_path, written / "wfmd.service", written / "wfmd.socket")
    # Quotes and backslashes systemd will not run: said before anything is written.
    for bad in ('/opt/"wfm"/bin/wfmd', "/opt/w\\fm/bin/wfmd", "/opt/w'fm/bin/wfmd"):
        with pytest.raises(WfmError, match="systemd refuses to run"):
            service.exec_argument(bad)


# --------------------------------------------------------------------------- without systemd


def assert_one_line_refusal(done: subprocess.CompletedProcess[str], session: Session) -> None:
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("wfmctl: error: "), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not session.config.exists() and not session.data.exists(), "wrote without systemd"


def test_without_systemctl_one_line_and_nothing_written(session: Session, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for action in ("install", "uninstall", "status"):
        done = session.wfmctl("service", action, PATH=str(empty))
        assert_one_line_refusal(done, session)
        assert "systemd is not available here" in done.stderr


def test_without_a_user_manager_one_line_and_nothing_written(session: Session) -> None:
    done = session.wfmctl("service", "install", STUB_FAIL="1")
    assert_one_line_refusal(done, session)
    assert "no systemd user manager" in done.stderr and "No medium found" in done.stderr
    assert session.calls() == [["--user", "show", "--property=Version"]]


def test_the_real_systemctl_without_a_user_manager(session: Session, tmp_path: Path) -> None:
    real = [
        d for d in os.environ.get("PATH", "").split(os.pathsep) if Path(d, "systemctl").exists()
    ]
    if not real:
        pytest.skip("no systemctl here: test_without_systemctl covers it")
    probe = subprocess.run(
        ["systemctl", "--user", "show", "--property=Version"], capture_output=True, timeout=30
    )
    if probe.returncode == 0:
        pytest.skip("a user manager answers here: the tester's own session, not to install into")
    done = session.wfmctl("service", "install", PATH=os.pathsep.join(real))
    assert_one_line_refusal(done, session)
    assert "no systemd user manager" in done.stderr
