"""The daemon's life: start every service in order, serve, shut down in order.

Start-up reads nothing proportional to history: the schema version, the executions still
marked Running or NotStarted (an index range), and the heartbeat row.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import trio

from wfmctl import paths
from wfmd import __version__
from wfmd.api.context import Services
from wfmd.api.dispatch import Dispatcher
from wfmd.api.server import Server, adopt_listener, socket_name
from wfmd.config import Config
from wfmd.housekeeping import recovery
from wfmd.housekeeping.indexer import SearchIndexer
from wfmd.housekeeping.policy import Settings
from wfmd.housekeeping.retention import Retention
from wfmd.housekeeping.scheduler import Scheduler
from wfmd.ingest.committer import LogWriter
from wfmd.ingest.logcap import Cap
from wfmd.runs.supervisor import Supervisor
from wfmd.store import DatabaseError, Store
from wfmd.store.database import DatabaseFile
from wfmd.systemd import Notifier, PassedFd, Systemd, feed_watchdog, keep_status_current
from wfmd.workflows.catalog import WorkflowCatalog
from wfmd.workflows.discovery import create_user_dir, default_workflow_dirs

log = logging.getLogger(__name__)


# Beyond the cancel grace period, how long shutdown waits for the last commit. Only a failing
# database makes it take more than milliseconds.
SHUTDOWN_COMMIT_GRACE = 30.0


# The signals wfmd handles: SIGTERM and SIGINT stop it, SIGHUP rescans the workflows.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class AlreadyRunning(Exception):
    pass


class InternalFailure(Exception):
    """A thread of the daemon failed (a bug): wfmd stopped in order, and exits non-zero so
    that systemd restarts it."""


@contextmanager
def database_lock(database: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the database: one daemon per database.

    flock, unlike SQLite's own locks, does not stop people reading the database with `sqlite3`,
    and the kernel releases it when the holder dies, even by `kill -9`.
    """
    lock_path = database.with_name(database.name + ".lock")
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DatabaseError(
            "unwritable", f"cannot create the database lock file {lock_path}: {exc}"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise AlreadyRunning(
                f"another wfmd (pid {holder}) is already using the database {database}"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full disk (ENOSPC), EIO, a quota: the database would fail next
            raise DatabaseError(
                "unwritable", f"cannot write the database lock file {lock_path}: {exc}"
            ) from exc
        yield
    finally:
        os.close(fd)


def prepare_socket_dir(socket_path: Path) -> None:
    """The socket's directory: created 0700; the default one must also be ours alone."""
    directory = socket_path.parent
    try:
        if directory == paths.runtime_dir():
            paths.ensure_private_dir(directory)
        else:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise paths.RuntimeDirError(
            f"cannot create the socket directory {directory}: {exc}"
        ) from exc


# The name socket activation gives wfmd's socket (the socket unit's name), preferred when
# several descriptors are passed.
SOCKET_FD_NAME = "wfmd.socket"


def inherited_listener(passed: list[PassedFd], configured: Path) -> socket.socket | None:
    """The listening socket passed by socket activation, if any: the one named
    SOCKET_FD_NAME, else the first. Raises SocketPathError if it is not a listening Unix
    stream socket."""
    if not passed:
        return None
    chosen = next((p for p in passed if p.name == SOCKET_FD_NAME), passed[0])
    sock = adopt_listener(chosen.fd, chosen.name)
    others = [p.name for p in passed if p is not chosen]
    if others:
        log.warning("serving on %s; ignoring the other descriptors passed: %s", chosen.name, others)
    if socket_name(sock) != configured:
        log.warning(
            "serving on %s, the socket systemd passed, rather than the configured %s",
            socket_name(sock),
            configured,
        )
    return sock


def summary(supervisor: Supervisor, stop: trio.Event) -> str:
    """The one line `systemctl status` shows (STATUS=)."""
    if stop.is_set():
        return f"stopping: {supervisor.running_count} still running"
    return f"{supervisor.running_count} running, {supervisor.queued_count} queued"


async def serve(
    config: Config,
    systemd: Systemd | None = None,
    *,
    task_status: trio.TaskStatus[Services] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until SIGTERM or SIGINT, then shut down cleanly.

    `systemd`: what the service manager handed over (see wfmd.systemd); under socket
    activation wfmd serves on the socket passed, and neither creates nor removes a file.

    Every later signal is logged and ignored: the stop goes on in order, and ends with the
    database closed. Raises InternalFailure, after the same orderly stop, if a thread of the
    daemon failed.

    Cancellation: children are killed (their process groups), the socket is removed and the
    database closed; lines not yet committed may be lost, which is why a signal does not
    cancel but shuts down in order.
    """
    systemd = systemd or Systemd()
    notifier = systemd.notifier
    _ignore_late_signals()
    # Open before anything else and closed after the database: a signal that arrives during
    # start-up is handled once the daemon is ready, and none finds the default disposition.
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        inherited = inherited_listener(systemd.listen_fds, config.socket)
        if inherited is None:
            prepare_socket_dir(config.socket)
        with database_lock(config.database):
            notifier.status("starting: opening the database (and migrating it)")
            store = await Store.open(config.database)
            try:
                failed = await _serve(config, store, signals, systemd, inherited, task_status)
            finally:
                await store.close()
    _stop_waking_trio()
    if failed is not None:
        raise InternalFailure(
            f"wfmd stopped because its pipe reader thread failed ({type(failed).__name__}: "
            f"{failed}); it stopped every running execution and closed the database: "
            "exiting non-zero so that it is restarted"
        ) from failed
    log.info("wfmd stopped")


async def _serve(
    config: Config,
    store: Store,
    signals: AsyncIterator[int],
    systemd: Systemd,
    inherited: socket.socket | None,
    task_status: trio.TaskStatus[Services],
) -> BaseException | None:
    """Start every service, serve until a stop signal, a Shutdown request or an internal
    failure, stop in order.

    Returns the failure of the pipe reader thread, if that is what stopped it.
    """
    notifier = systemd.notifier
    # Identified right after the open: what a deleted or replaced file is told from.
    database_file = await trio.to_thread.run_sync(DatabaseFile, store.path)
    notifier.status("starting: recovering executions left running")
    recovered = await recovery.recover(store, supervised=(), after_crash=True)
    if recovered:
        log.warning("recovered %d execution(s) left running by a daemon that died", recovered)
    if not config.workflow_dirs:  # the defaults: the user's own directory is made for them
        await trio.to_thread.run_sync(create_user_dir)
    catalog = WorkflowCatalog(config.workflow_dirs or default_workflow_dirs(), config.probe_timeout)
    stop = trio.Event()
    failed: BaseException | None = None

    def request_stop(reason: str) -> None:
        if not stop.is_set():
            log.info("%s: shutting down", reason)
            stop.set()

    def pipe_reader_failed(exc: BaseException) -> None:
        # Called once everything it had read is committed; the writer goes on committing
        # endings. Nothing reads a child's output any more: stop them all, record why, exit.
        nonlocal failed
        failed = exc
        log.error("the pipe reader thread failed: stopping every running execution, then wfmd")
        stop.set()

    writer = LogWriter(
        store,
        commit_interval=config.commit_interval,
        on_failure=pipe_reader_failed,
        cap=Cap(config.max_log_lines or None, config.max_log_bytes or None),
    )
    store.reads_yield_while(writer.pipes.holding_back)
    supervisor = Supervisor(
        store,
        writer,
        database_file,
        max_concurrent=config.max_concurrent,
        cancel_grace=config.cancel_grace,
        default_timeout=config.default_timeout or None,
        storage_hold_timeout=config.storage_hold_timeout,
    )
    socket_path = config.socket if inherited is None else socket_name(inherited)
    indexer = (
        SearchIndexer(store, writer.pipes.holding_back, lambda: writer.rows_committed)
        if config.search_index
        else None
    )
    retention = Retention(store, Settings.from_config(config))
    services = Services(
        store, writer, supervisor, catalog, socket_path, __version__, database_file, indexer
    )
    services.retention = retention
    server = Server(config.socket, Dispatcher(services, request_stop), __version__, inherited)
    scheduler = Scheduler(
        store,
        supervisor,
        database_file,
        heartbeat_interval=config.heartbeat_interval,
        recovery_interval=config.recovery_interval,
    )
    async with trio.open_nursery() as root:
        notifier.status("starting: scanning the workflow directories")
        await root.start(catalog.run)
        _report_catalog(catalog)
        writer_done = trio.Event()

        async def run_writer(*, task_status: trio.TaskStatus[None]) -> None:
            await writer.run(task_status=task_status)
            writer_done.set()

        await root.start(run_writer)
        await root.start(supervisor.run)
        await root.start(scheduler.run)
        if indexer is not None:
            await root.start(indexer.run)
        server_scope = trio.CancelScope()

        async def run_server(*, task_status: trio.TaskStatus[None]) -> None:
            with server_scope:
                await server.run(task_status=task_status)

        # Its runs go on in the background: start-up never waits for history's size, only
        # for the archive files' repair (a stat each).
        await root.start(retention.run)
        await root.start(run_server)
        log.info(
            "wfmd %s ready on %s%s (database %s)",
            __version__,
            socket_path,
            "" if inherited is None else ", passed by socket activation",
            store.path,
        )
        _ready(notifier, systemd.watchdog, partial(summary, supervisor, stop), root)
        task_status.started(services)

        root.start_soon(_handle_signals, signals, request_stop, stop, catalog, root)
        await stop.wait()
        notifier.send("STOPPING=1", f"STATUS={summary(supervisor, stop)}")
        server_scope.cancel()
        # Bounded only for a database that cannot take writes: then we would wait forever.
        with trio.move_on_after(config.cancel_grace + SHUTDOWN_COMMIT_GRACE) as bounded:
            why = None if failed is None else f"the pipe reader thread failed ({failed!r})"
            await supervisor.shutdown(failure=why)
            writer.close()
            await writer_done.wait()
        if bounded.cancelled_caught:
            log.error(
                "stopping without committing the last lines and statuses: %s",
                writer.storage_error or "the writer did not finish in time",
            )
        root.cancel_scope.cancel()
    return failed


def _ready(
    notifier: Notifier, watchdog: float | None, status: Callable[[], str], nursery: trio.Nursery
) -> None:
    """READY=1, now that the database is migrated, recovery has run and the socket accepts
    connections; then the watchdog's pings and the STATUS= line, from the event loop, until
    the root nursery ends (after the last commit)."""
    if not notifier.enabled:
        return
    text = status()
    notifier.send("READY=1", f"STATUS={text}")
    if watchdog is not None:
        nursery.start_soon(feed_watchdog, notifier, watchdog)
    nursery.start_soon(keep_status_current, notifier, status, text)


async def _handle_signals(
    signals: AsyncIterator[int],
    request_stop: Callable[[str], None],
    stop: trio.Event,
    catalog: WorkflowCatalog,
    nursery: trio.Nursery,
) -> None:
    """SIGTERM and SIGINT stop the daemon, SIGHUP rescans; once stopping, each is ignored.

    Read to the end (until cancelled): a signal left unread in the receiver when it closes
    would be redelivered under the default disposition.
    """
    async for signum in signals:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("received %s while stopping: ignored", name)
        elif signum == signal.SIGHUP:
            nursery.start_soon(_rescan, catalog)
        else:
            request_stop(f"received {name}")


def _ignore_late_signals() -> None:
    """From now on, for the rest of the process, a stop signal that finds no receiver open
    (one redelivered by Trio as the receiver closes, or one that arrives after) is logged and
    ignored rather than killing wfmd by its default action midway through its last steps.

    A Python handler rather than SIG_IGN: an ignored signal stays ignored across exec, so every
    workflow would inherit it; a handler does not.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, _late_signal)


def _stop_waking_trio() -> None:
    """At the very end: Trio closes its signal wake-up socket before it stops pointing
    signals at it, and a signal in between makes Python print a traceback to stderr (seen in
    test_hardening_signals' storm). Late signals are ignored anyway: nothing needs waking."""
    if threading.current_thread() is threading.main_thread():
        signal.set_wakeup_fd(-1)


def _late_signal(signum: int, _frame: object) -> None:
    log.warning("received %s while stopping: ignored", signal.Signals(signum).name)


async def _rescan(catalog: WorkflowCatalog) -> None:
    await catalog.rescan()
    _report_catalog(catalog)


def _report_catalog(catalog: WorkflowCatalog) -> None:
    current = catalog.current
    log.info("%d workflow(s) in %s", len(current.workflows), ", ".join(map(str, catalog.dirs)))
    for skipped in current.skipped:
        log.warning("skipped %s: %s", skipped.path, skipped.reason)
    for conflict in current.conflicts:
        log.warning("conflict: %s", conflict)
