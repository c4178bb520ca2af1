"""`wfmd`: command line, logging, and the exit codes people and systemd see."""

from __future__ import annotations

import argparse
import errno
import faulthandler
import logging
import resource
import signal
import sys
from pathlib import Path

import trio

from wfmctl.paths import RuntimeDirError
from wfmd import __version__
from wfmd.api.server import SocketInUse, SocketPathError
from wfmd.config import Config, ConfigError, default_config_path, load
from wfmd.daemon import STOP_SIGNALS, AlreadyRunning, InternalFailure, serve
from wfmd.memory import pin_mmap_threshold
from wfmd.store import DatabaseError, StorageError
from wfmd.systemd import ActivationError, JournalFormatter, stderr_is_journal, take_environment

EXIT_OK = 0
EXIT_ERROR = 1  # an unexpected failure (a bug): the log has the traceback
EXIT_USAGE = 2  # bad flags or configuration
EXIT_ALREADY_RUNNING = 3  # another daemon owns the socket or the database
EXIT_DATABASE_CORRUPT = 4  # not a database, or corrupt: the file was left untouched
EXIT_DATABASE_TOO_NEW = 5  # written by a newer wfm: the file was left untouched
EXIT_RUNTIME_DIR = 6  # the socket's directory or path cannot be used safely
EXIT_STORAGE = 7  # the database cannot be opened or written (permissions, disk, locked)

_DATABASE_EXITS = {
    "corrupt": EXIT_DATABASE_CORRUPT,
    "too_new": EXIT_DATABASE_TOO_NEW,
    "locked": EXIT_STORAGE,
    "unwritable": EXIT_STORAGE,
}

# Errors of a disk or file system that cannot take writes: they mean EXIT_STORAGE wherever
# start-up meets them.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})

EPILOG = f"""\
configuration: {default_config_path()} (TOML; see README), overridden by the
environment (WFM_CONFIG, WFM_DATABASE, WFM_SOCKET, WFM_WORKFLOW_DIRS, and WFM_<KEY>
for the retention keys, e.g. WFM_MAX_AGE_DAYS) and by these flags.

exit codes:
  {EXIT_OK}  stopped cleanly (SIGTERM / SIGINT; more signals while stopping are ignored)
  {EXIT_ERROR}  unexpected error, or a thread of wfmd failed (after stopping in order)
  {EXIT_USAGE}  bad flags or configuration
  {EXIT_ALREADY_RUNNING}  another wfmd already serves this socket or database
  {EXIT_DATABASE_CORRUPT}  the database file is not a database or is corrupt (left untouched)
  {EXIT_DATABASE_TOO_NEW}  the database was written by a newer wfm (left untouched)
  {EXIT_RUNTIME_DIR}  the socket directory is unsafe or the socket cannot be created
  {EXIT_STORAGE}  the database cannot be opened or written
"""

# Each client connection and each running workflow holds descriptors; the usual soft limit
# of 1024 would cap us well below what the hard limit allows.
WANTED_OPEN_FILES = 65536


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="wfmd",
        description="wfm daemon: runs workflows as supervised processes and records "
        "every execution in SQLite.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wfmd {__version__}")
    parser.add_argument("--config", type=Path, help="configuration file (TOML)")
    parser.add_argument("--database", type=Path, help="SQLite database path")
    parser.add_argument("--socket", type=Path, help="Unix socket path")
    parser.add_argument(
        "--workflow-dir",
        dest="workflow_dirs",
        type=Path,
        action="append",
        help="a directory of workflows (repeatable; replaces the defaults)",
    )
    parser.add_argument("--max-concurrent", type=int, help="runs at once (default 8)")
    parser.add_argument("--cancel-grace", type=float, help="seconds from SIGTERM to SIGKILL")
    parser.add_argument("--default-timeout", type=float, help="seconds per run, 0 = none")
    parser.add_argument(
        "--commit-interval", type=float, help="longest a line waits before commit (s)"
    )
    parser.add_argument(
        "--storage-hold-timeout",
        type=float,
        help="seconds a workflow may wait for a failing database before it is failed",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    # retention; 0 disables a limit
    parser.add_argument("--max-age-days", type=float, help="remove executions older (30)")
    parser.add_argument("--max-executions", type=int, help="keep the newest N (10000)")
    parser.add_argument("--max-db-bytes", type=int, help="database size limit (1 GiB)")
    parser.add_argument(
        "--retention-interval", type=float, help="seconds between retention runs (3600)"
    )
    parser.add_argument(
        "--compress-after", type=float, help="seconds after its end a log is compressed (600)"
    )
    parser.add_argument(
        "--archive",
        action="store_true",
        default=None,
        help="archive each execution before retention deletes it",
    )
    parser.add_argument("--archive-dir", type=Path, help="where archives go (beside the db)")
    parser.add_argument("--max-log-lines", type=int, help="log cap per execution (10000000)")
    parser.add_argument("--max-log-bytes", type=int, help="log cap per execution (1 GiB)")
    return parser.parse_args(argv)


# The readable form, for a terminal or a file. The journal stamps lines itself, and takes the
# priority from a `<N>` prefix (wfmd.systemd.JournalFormatter).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def raise_open_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = WANTED_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, WANTED_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _unwrap(exc: BaseException) -> BaseException:
    """The one real error inside nested single-exception groups (Trio nurseries wrap)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def exit_code_for(exc: BaseException, log: logging.Logger) -> int:
    """Expected failures are one clear log line; anything else gets its traceback."""
    match exc:
        case InternalFailure():  # the failed thread's traceback is in the log already
            code = EXIT_ERROR
        case AlreadyRunning() | SocketInUse():
            code = EXIT_ALREADY_RUNNING
        case RuntimeDirError() | SocketPathError() | ActivationError():
            code = EXIT_RUNTIME_DIR
        case DatabaseError():
            code = _DATABASE_EXITS.get(exc.kind, EXIT_STORAGE)
        case StorageError():  # the first writes (recovery, heartbeat) after a good open
            log.error("cannot write the database: %s", exc.detail)
            return EXIT_STORAGE
        case PermissionError():
            code = EXIT_STORAGE
        case OSError() if exc.errno in _STORAGE_ERRNOS:  # a start-up path not wrapped above
            code = EXIT_STORAGE
        case KeyboardInterrupt():
            return EXIT_OK
        case _:
            log.error("wfmd failed", exc_info=exc)
            return EXIT_ERROR
    log.error("%s", exc)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "config"}
    try:
        config: Config = load(args.config, overrides)
    except ConfigError as exc:
        print(f"wfmd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(config.log_level)
    # A stuck event loop stops the watchdog's pings, and systemd then sends SIGABRT: the
    # journal gets every thread's stack before wfmd dies (a crash in C code gets one too).
    faulthandler.enable()
    raise_open_file_limit()
    pin_mmap_threshold()
    log = logging.getLogger("wfmd")
    try:
        systemd = take_environment()  # before any child starts: none may inherit them
        trio.run(serve, config, systemd)
    except BaseException as exc:  # every failure must become an exit code
        return exit_code_for(_unwrap(exc), log)
    finally:
        # The daemon has stopped and starts no more children: a late signal must not turn
        # the exit status into 143 while the interpreter exits (which resets handlers).
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
