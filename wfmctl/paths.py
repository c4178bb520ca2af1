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
    """
    if os.environ.get("XDG_RUNTIME_DIR"):
        import platformdirs  # only here: most `wfmctl` runs never need it

        return platformdirs.user_runtime_dir(APP_NAME)
    return os.path.join(_temp_dir(), f"{APP_NAME}-{os.getuid()}")


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
