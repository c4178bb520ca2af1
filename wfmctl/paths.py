"""Where wfm keeps things by default. Shared by the daemon and the client, so both agree.

Every path here is only a default: config, environment and flags override it.

`wfmctl status` runs this module on every invocation, so the client's path (`default_socket`)
uses plain strings: importing pathlib alone costs a short-lived client ~10 ms. The daemon's
helpers return `Path`s and import pathlib when called.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

APP_NAME = "wfm"
SOCKET_ENV = "WFM_SOCKET"
SOCKET_NAME = "wfmd.sock"


class RuntimeDirError(Exception):
    """The runtime directory exists but is not safe to use (wrong owner or mode)."""


def _runtime_dir() -> str:
    """The per-user runtime directory for the socket: `$XDG_RUNTIME_DIR/wfm`.

    Without XDG_RUNTIME_DIR (cron, CI, `su`), platformdirs would warn and guess; we fall back
    to a private directory in the temp dir instead, which the daemon creates with mode 0700.
    With it, the answer is platformdirs': `_plain_xdg_runtime_dir` finds it with a few
    `lstat`s in the usual case, and anything unusual is left to platformdirs itself.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        plain = _plain_xdg_runtime_dir(xdg)
        if plain is not None:
            return os.path.join(plain, APP_NAME)
        import platformdirs  # only here: costs a short-lived client ~15 ms with its imports

        return platformdirs.user_runtime_dir(APP_NAME)
    return os.path.join(_temp_dir(), f"{APP_NAME}-{os.getuid()}")


def _plain_xdg_runtime_dir(path: str) -> str | None:
    """`path` if platformdirs would accept it as is as XDG_RUNTIME_DIR, else None (unsure).

    Accepted: an absolute, normalised path whose every component is a real directory (no
    symlink) owned by root or by us and not writable by group or others unless sticky, and
    whose last component is ours with mode 0700. That is platformdirs' check (`_paths`,
    `_runtime`) in the case where it passes without following a link; everything else goes
    to platformdirs, which also explains (warns) what is wrong. test_paths compares both.
    """
    if not path.startswith("/") or os.path.normpath(path) != path or path == "/":
        return None
    uid = os.geteuid()
    current = ""
    try:
        for part in path.split("/")[1:]:
            current += "/" + part
            info = os.lstat(current)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid not in (0, uid):
                return None
            shared = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            if shared and not info.st_mode & stat.S_ISVTX:
                return None
    except OSError:
        return None
    if info.st_uid != uid or stat.S_IMODE(info.st_mode) != 0o700:
        return None
    return path


def runtime_dir() -> Path:
    from pathlib import Path

    return Path(_runtime_dir())


def _temp_dir() -> str:
    """tempfile.gettempdir()'s choice on Linux, without importing tempfile (~6 ms)."""
    for name in ("TMPDIR", "TEMP", "TMP"):
        candidate = os.environ.get(name)
        if candidate and os.path.isdir(candidate):
            return candidate
    return "/tmp"


def default_socket() -> str:
    """The socket clients connect to: `$WFM_SOCKET`, else in the runtime directory."""
    return os.environ.get(SOCKET_ENV) or os.path.join(_runtime_dir(), SOCKET_NAME)


def default_socket_path() -> Path:
    from pathlib import Path

    return Path(default_socket())


def state_dir() -> Path:
    from pathlib import Path

    import platformdirs

    return Path(platformdirs.user_state_dir(APP_NAME))


def data_dir() -> Path:
    from pathlib import Path

    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME))


def config_dir() -> Path:
    from pathlib import Path

    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME))


def ensure_private_dir(path: Path) -> None:
    """Create `path` with mode 0700 if missing; refuse one that others could tamper with.

    A directory owned by another user, or writable by group or others, could let someone
    swap our socket for theirs, so it is refused rather than "fixed".
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeDirError(f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise RuntimeDirError(f"{path} belongs to uid {info.st_uid}, not to you ({os.getuid()})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RuntimeDirError(
            f"{path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o}); "
            "fix it with: chmod 700 " + str(path)
        )
