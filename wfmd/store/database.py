"""Opening the database: refuse what we must not touch, back up, migrate.

Migrations are the numbered `NNNN_name.sql` files of `schema/`, applied in order, each in one
transaction together with the `schema_version` row that records it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import apsw
import apsw.bestpractice
import apsw.ext

from wfmd.store.sqlar import sqlar_uncompress

log = logging.getLogger(__name__)

# A writer that finds the database busy (someone running `sqlite3` on it, a checkpoint) waits
# this long before the statement fails; long enough to ride out a human's query.
BUSY_TIMEOUT_MS = 5_000

# Page size of a new database (SQLite's default is 4 KiB). Log rows are blobs of up to 64 KiB,
# written to the WAL and checkpointed page by page: larger pages cost less CPU per committed
# byte for a slightly larger file (bench_ingest). An existing database keeps its page size.
PAGE_SIZE = 16 * 1024

# WAL size before an automatic checkpoint (SQLite's default: 1,000 pages of 4 KiB, 4 MB).
# Checkpoints run inside the writer's commits, each with an fsync, and copy the latest version
# of every page written since the last one: with many chatty workflows every commit rewrites
# the same few hundred leaf pages, so fewer, larger checkpoints raise ingestion (bench_ingest,
# bench_scale). Queries read through their own connection, so a longer checkpoint does not
# delay them.
WAL_AUTOCHECKPOINT_BYTES = 16 * 1024 * 1024

# Commits are not synced one by one (synchronous=NORMAL): a crash of wfmd loses nothing (the
# kernel has the WAL), and the WAL is synced this often while there are writes, so a power
# loss or kernel crash loses at most this much. A sync per commit took most of a
# submission's time (bench_runs).
SYNC_INTERVAL = 1.0

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class DatabaseError(Exception):
    """The database cannot be used. `kind` selects the daemon's exit code."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "corrupt", "too_new", "locked", "unwritable", "io"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The migrations shipped with this code, in order.

    An installed wheel carries them as `wfmd/schema`; a source checkout has them in the
    top-level `schema/` directory.
    """
    packaged = resources.files("wfmd").joinpath("schema")
    if packaged.is_dir():
        files = {entry.name: entry.read_text("utf-8") for entry in packaged.iterdir()}
    else:
        checkout = Path(__file__).resolve().parents[2] / "schema"
        files = {p.name: p.read_text("utf-8") for p in checkout.glob("*.sql")}
    migrations = []
    for name, sql in files.items():
        match = _MIGRATION_NAME.match(name)
        if match:
            migrations.append(Migration(int(match[1]), match[2], sql))
    migrations.sort(key=lambda m: m.version)
    expected = list(range(1, len(migrations) + 1))
    if [m.version for m in migrations] != expected:
        raise RuntimeError(f"schema migrations are not numbered 1..N: {sorted(files)}")
    return migrations


def open_database(path: Path) -> apsw.Connection:
    """Open (creating if needed) and migrate the database at `path`.

    Raises DatabaseError, leaving the file untouched, if it is not a database, is corrupt, or
    was written by a newer wfm. SQLite's own log messages while it opens are held back: if
    the open fails they only repeat, in SQLite's words, the one line the daemon reports, so
    they are kept at DEBUG.
    """
    _install_logging()
    try:
        with _sqlite_log_held_back():
            return _open(path)
    except (apsw.NotADBError, apsw.CorruptError) as exc:
        raise DatabaseError("corrupt", f"{path} is not a usable wfm database: {exc}") from exc
    except (apsw.BusyError, apsw.LockedError) as exc:
        raise DatabaseError(
            "locked", f"{path} is locked by another process (waited {BUSY_TIMEOUT_MS} ms): {exc}"
        ) from exc
    except (apsw.Error, OSError) as exc:  # read-only, permissions, I/O, full disk, ...
        raise DatabaseError("unwritable", f"cannot open or write {path}: {exc}") from exc


@contextlib.contextmanager
def transaction(conn: apsw.Connection) -> Iterator[None]:
    """`with conn:` for the hot paths (group commits, client reads).

    BEGIN and COMMIT go through `execute`, which releases the GIL while SQLite works; apsw's
    `with conn:` holds it through the whole commit, WAL writes and checkpoint included, and so
    stalls every other thread of the daemon (the figures are in tests/bench/RESULTS.md).
    """
    conn.execute("BEGIN")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT (full disk) can leave it open
            conn.execute("ROLLBACK")
        raise


def open_reader(path: Path) -> apsw.Connection:
    """A read-only connection to the database `open_database` has opened and migrated.

    In WAL mode its reads never wait for the writer, and the writer never waits for them.
    """
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error as exc:  # the file vanished, or no memory or descriptor for it
        raise DatabaseError("unwritable", f"cannot open {path} for reading: {exc}") from exc
    try:
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        apsw.bestpractice.connection_dqs(conn)
        _add_functions(conn)
        # A first read maps the WAL's shared memory now: a connection that maps it only once
        # the database file has been deleted fails every read (SQLITE_IOERR_FSTAT), and the
        # executions still running into that file could no longer be looked at.
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
    except apsw.Error as exc:
        conn.close()
        raise DatabaseError("unwritable", f"cannot read {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _open(path: Path) -> apsw.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists() and path.stat().st_size > 0
    conn = apsw.Connection(str(path))
    try:
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        # The first read of the file: this is where "not a database" and corruption show.
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        _refuse_newer(conn, path)
        if not existed or not conn.execute("SELECT count(*) FROM sqlite_schema").get:
            # Must precede the first table and WAL (which initialises the file): SQLite can
            # change these later only with a full VACUUM. Incremental auto-vacuum lets freed
            # pages be given back without one.
            conn.pragma("page_size", PAGE_SIZE)
            conn.pragma("auto_vacuum", "INCREMENTAL")
        _apply_best_practice(conn)
        _add_functions(conn)
        conn.wal_autocheckpoint(WAL_AUTOCHECKPOINT_BYTES // conn.pragma("page_size"))
        _migrate(conn, path, existed)
    except BaseException:
        conn.close()
        raise
    return conn


def _add_functions(conn: apsw.Connection) -> None:
    """The sqlite3 shell's `sqlar_uncompress`, which the log views use (see
    schema/0009_compression.sql)."""
    conn.create_scalar_function("sqlar_uncompress", sqlar_uncompress, 2, deterministic=True)


# SQLite's own log messages (its diagnostics, e.g. "statement aborts ... disk is full").
SQLITE_LOG = logging.getLogger("wfmd.sqlite")

_logging_installed = False


def _install_logging() -> None:
    """SQLite's own log messages go to Python logging (apsw best practice), once."""
    global _logging_installed
    if not _logging_installed:
        apsw.ext.log_sqlite(logger=SQLITE_LOG)
        _logging_installed = True


class _HoldBack(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


@contextlib.contextmanager
def _sqlite_log_held_back() -> Iterator[None]:
    """Hold SQLite's log messages back until the end: then log them as they were, or at
    DEBUG if the body raised (its error says what went wrong, in one line).

    Only the thread that opens logs to SQLITE_LOG meanwhile: the reader is opened after.
    """
    held = _HoldBack()
    SQLITE_LOG.addFilter(held)
    failed = True
    try:
        yield
        failed = False
    finally:
        SQLITE_LOG.removeFilter(held)
        for record in held.records:
            if failed:
                SQLITE_LOG.debug("while opening: %s", record.getMessage())
            else:
                SQLITE_LOG.handle(record)


def _apply_best_practice(conn: apsw.Connection) -> None:
    """apsw.bestpractice.recommended, applied by hand once the file is known to be ours.

    `apsw.bestpractice.apply` would run these hooks inside `apsw.Connection()`: switching to
    WAL and `PRAGMA optimize` write to the file before we could refuse a database from a
    newer wfm, and WAL initialises a new file before auto_vacuum can be set.
    """
    apsw.bestpractice.connection_wal(conn)
    apsw.bestpractice.connection_enable_foreign_keys(conn)
    apsw.bestpractice.connection_dqs(conn)
    apsw.bestpractice.connection_recursive_triggers(conn)
    apsw.bestpractice.connection_optimize(conn)
    conn.pragma("synchronous", "NORMAL")  # see SYNC_INTERVAL


def _refuse_newer(conn: apsw.Connection, path: Path) -> None:
    latest = load_migrations()[-1].version
    version = current_version(conn)
    if version > latest:
        raise DatabaseError(
            "too_new",
            f"{path} has schema version {version}, but this wfmd knows only up to {latest}; "
            "upgrade wfm (the database was not modified)",
        )


def current_version(conn: apsw.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_version'"
    ).get
    if not exists:
        return 0
    version = conn.execute("SELECT max(version) FROM schema_version").get
    return int(version or 0)


def _migrate(conn: apsw.Connection, path: Path, existed: bool) -> None:
    migrations = load_migrations()
    version = current_version(conn)
    if version == migrations[-1].version:
        return
    if existed and conn.execute("SELECT count(*) FROM sqlite_schema").get:
        backup_before_migration(conn, path, version)
    for migration in migrations[version:]:
        with conn:
            conn.execute(migration.sql)
            # Not cached: reused after the next migration changed the schema, the statement
            # would be re-prepared with an alarming "statement aborts" in the log.
            conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, int(time.time() * 1000)),
                can_cache=False,
            )


def backup_before_migration(conn: apsw.Connection, path: Path, version: int) -> Path:
    """Write a consistent copy of the database beside it before changing its schema."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.v{version}-{stamp}.bak")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    conn.execute("VACUUM INTO ?", (str(partial),))
    # VACUUM INTO does not sync its output. Synced, then renamed only once complete: neither a
    # crash nor a power loss leaves a plausible-looking but incomplete copy.
    _fsync(partial)
    os.replace(partial, target)
    _fsync(target.parent)
    return target


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_wal(conn: apsw.Connection) -> None:
    """Force every commit so far to disk: an fsync of the WAL (see SYNC_INTERVAL)."""
    try:
        fd = os.open(conn.filename_wal, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # checkpointed and truncated: nothing waits in it
    try:
        os.fsync(fd)
    except OSError as exc:  # an I/O error: the commits themselves will report it too
        log.error("cannot sync %s: %s", conn.filename_wal, exc)
    finally:
        os.close(fd)


def close_database(conn: apsw.Connection) -> None:
    """Checkpoint the WAL into the main file and close: a clean database for `sqlite3` users."""
    try:
        conn.pragma("optimize")
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
    except apsw.Error:
        pass  # the data is safe in the WAL; the next open checkpoints it
    conn.close()


class DatabaseFile:
    """The database file wfmd opened (and its WAL), known by device and inode.

    Deleted or replaced while wfmd runs, the open file lives on unseen: every commit goes into
    a file nobody will open again, and the next start begins an empty (or another) database.
    SQLite cannot tell; a stat of the path can. `check` compares the two.

    The identity is taken just after the open: a file swapped within those milliseconds would
    be taken for the original.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._watched = [p for p in (path, _wal_path(path)) if p.exists()]
        self._opened = {p: _identity(p) for p in self._watched}
        self.problem: str | None = None

    def check(self) -> str | None:
        """Why the files at the paths are no longer those opened, or None. Updates `problem`
        and logs each change of it. Blocking (stat): run it in a thread."""
        problem = None
        for path in self._watched:
            try:
                identity = _identity(path)
            except FileNotFoundError:
                problem = f"the database file {path} was deleted while wfmd was running"
            except OSError as exc:
                problem = f"cannot check the database file {path}: {exc}"
            else:
                if identity != self._opened[path]:
                    problem = f"the database file {path} was replaced while wfmd was running"
            if problem is not None:
                problem += (
                    ": new runs are refused, and what is recorded from then on will be lost; "
                    "queued ones wait; running executions go on, recorded in the open file "
                    "only; restart wfmd"
                )
                break
        if problem != self.problem:
            if problem is None:
                log.warning("the database file %s is back as it was opened", self.path)
            else:
                log.error("%s", problem)
            self.problem = problem
        return problem


def _wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _identity(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino
