"""The default socket, as a user's `wfmctl` finds it: cheaply, and where platformdirs says.

`wfmctl status HANDLE` is mostly interpreter start-up and imports; platformdirs (with
pathlib, tempfile and more) would cost it a fifth of its time on every call. The client works
out platformdirs' answer itself in the usual case; these tests keep both in agreement.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import platformdirs
import pytest
from conftest import WFMCTL, Daemon, MakeDaemon
from test_cli_imports import imported_modules
from test_cli_support import SUBPROCESS_TIMEOUT

from wfmctl import paths


def _private(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _plain(tmp: Path) -> str:
    return str(_private(tmp / "xdg"))


def _open_mode(tmp: Path) -> str:
    xdg = _private(tmp / "xdg")
    xdg.chmod(0o755)
    return str(xdg)


def _symlink(tmp: Path) -> str:
    target = _private(tmp / "real")
    (tmp / "link").symlink_to(target)
    return str(tmp / "link")


def _below_a_symlink(tmp: Path) -> str:
    _private(tmp / "real" / "xdg")
    (tmp / "via").symlink_to(tmp / "real")
    return str(tmp / "via" / "xdg")


def _group_writable_parent(tmp: Path) -> str:
    parent = tmp / "shared"
    parent.mkdir()
    parent.chmod(0o775)
    return str(_private(parent / "xdg"))


def _sticky_parent(tmp: Path) -> str:
    parent = tmp / "sticky"
    parent.mkdir()
    parent.chmod(0o1777)
    return str(_private(parent / "xdg"))


def _missing(tmp: Path) -> str:
    return str(tmp / "nothing-here")


def _trailing_slash(tmp: Path) -> str:
    return _plain(tmp) + "/"


def _not_a_directory(tmp: Path) -> str:
    (tmp / "file").write_text("")
    return str(tmp / "file")


# name -> (make XDG_RUNTIME_DIR under a temp dir, whether the cheap path answers by itself)
CASES: dict[str, tuple[Callable[[Path], str], bool]] = {
    "plain 0700 directory": (_plain, True),
    "sticky world-writable parent": (_sticky_parent, True),
    "mode 0755": (_open_mode, False),
    "a symlink": (_symlink, False),
    "below a symlink": (_below_a_symlink, False),
    "group-writable parent": (_group_writable_parent, False),
    "missing": (_missing, False),
    "trailing slash": (_trailing_slash, False),
    "a file": (_not_a_directory, False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_runtime_dir_agrees_with_platformdirs(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make, cheap = CASES[case]
    tmp_path.chmod(0o700)
    xdg = make(tmp_path)
    monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)
    monkeypatch.delenv(paths.SOCKET_ENV, raising=False)
    with warnings.catch_warnings():
        # platformdirs warns (once per process and cause) about a directory it will not use.
        warnings.simplefilter("ignore")
        expected = platformdirs.user_runtime_dir(paths.APP_NAME)
        assert paths.default_socket() == os.path.join(expected, paths.SOCKET_NAME)
    assert (paths._plain_xdg_runtime_dir(xdg) is not None) == cheap


def test_default_socket_imports_nothing_a_bare_interpreter_does_not(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    """The installed console script, the default socket (XDG_RUNTIME_DIR, no WFM_SOCKET):
    beyond `python -I -c "import msgspec, socket"` it imports wfmctl's own modules and
    struct, nothing else (no platformdirs, pathlib, tempfile)."""
    xdg = _private(tmp_path / "xdg")
    daemon: Daemon = make_daemon()
    daemon.socket = xdg / "wfm" / "wfmd.sock"
    daemon.start()
    handle = daemon.run_and_wait("echo_params", message="hi")
    env = {k: v for k, v in os.environ.items() if k != paths.SOCKET_ENV}
    env["XDG_RUNTIME_DIR"] = str(xdg)

    def imports(*argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
        proc = subprocess.run(
            [sys.executable, *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=SUBPROCESS_TIMEOUT,
        )
        return proc, imported_modules(proc.stderr)

    proc, client = imports("-P", "-X", "importtime", WFMCTL, "status", handle)
    assert proc.returncode == 0, proc.stderr
    assert handle in proc.stdout
    _, bare = imports("-I", "-X", "importtime", "-c", "import msgspec, socket")
    extra = {m for m in client - bare if not m.startswith("wfmctl")}
    assert extra <= {"struct", "_struct"}, extra
