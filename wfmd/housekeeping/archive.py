"""Archive before delete: each execution retention removes is first appended, whole, to a
gzip-compressed JSON-lines file of its month (the month it ended, UTC) in the archive
directory, in the shape of `wfmctl export --format jsonl` (`wfmctl.export`).

Nothing is deleted unless its archive write succeeded and was synced: the files are
flushed and fsynced (and their directory, for a new file) before the deletion's
transaction, which records each file's new size (`archive_files`). The next append first
truncates the file back to its recorded size, so what a crash left between the sync and the
commit (or halfway through a write) is neither kept twice nor left half-written: the
executions it held are still in the database, and are archived again.
"""

from __future__ import annotations

import gzip
import logging
import os
import time
from pathlib import Path
from typing import BinaryIO

import trio

from wfmctl.export import ExportWriter
from wfmctl.protocol import ErrorCode
from wfmd.errors import Refused
from wfmd.store import Store, StoredExecution, executions, logs, retention

log = logging.getLogger(__name__)

# Log data read per step while archiving: bounded memory, whatever the execution's size.
READ_BYTES = 4 * 1024 * 1024

# gzip's level: 6 is zlib's default, a few percent larger than 9 for half the CPU.
GZIP_LEVEL = 6


def file_name(ended_at: float | None) -> str:
    month = time.strftime("%Y-%m", time.gmtime(ended_at or 0))
    return f"wfm-archive-{month}.jsonl.gz"


class Archive:
    def __init__(self, store: Store, directory: Path) -> None:
        self._store = store
        self.directory = directory

    async def repair(self) -> None:
        """Cut every archive file back to its recorded size (what a crash during an append
        left after it is not archived: those executions are still in the database). Cheap:
        one stat per file. Run before the daemon serves, so nobody reads a torn archive.

        Cancellation: each file is cut or not.
        """
        recorded = dict(await self._store.read(retention.archive_sizes))
        await trio.to_thread.run_sync(_repair, self.directory, recorded)

    async def write(self, ids: list[int]) -> dict[str, int]:
        """Append these (finished) executions to their months' files, synced. Returns each
        file's new size, for the deletion's transaction. Raises Refused (storage) if a file
        cannot be written: then nothing may be deleted.

        Cancellation: a file half-appended is truncated back by the next write.
        """
        groups: dict[str, list[StoredExecution]] = {}
        for eid in ids:
            stored = await self._store.read(executions.get_by_id, eid)
            groups.setdefault(file_name(stored.info.ended_at), []).append(stored)
        sizes = {}
        for name, group in sorted(groups.items()):
            path = self.directory / name
            try:
                sizes[name] = await self._append(path, group)
            except OSError as exc:
                raise Refused(
                    ErrorCode.STORAGE,
                    f"cannot write the archive {path}: {exc}; nothing was deleted",
                ) from exc
        return sizes

    async def _append(self, path: Path, group: list[StoredExecution]) -> int:
        committed = await self._store.read(retention.archive_size, path.name)
        out = await trio.to_thread.run_sync(_open_at, path, committed)
        try:
            # One gzip member per append: members concatenate into one valid gzip file.
            gz = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)
            writer = ExportWriter(gz, "jsonl")
            for stored in group:
                writer.start(stored.info)
                after = -1
                while rows := await self._store.read(logs.read_rows, stored.id, after, READ_BYTES):
                    batch = logs.export_rows(rows)
                    await trio.to_thread.run_sync(writer.rows, batch)
                    after = rows[-1][0]
                writer.end()
            await trio.to_thread.run_sync(gz.close)  # the member's trailer; `out` stays open
            return await trio.to_thread.run_sync(_sync, out, path, committed == 0)
        finally:
            out.close()


def _repair(directory: Path, recorded: dict[str, int]) -> None:
    try:
        paths = list(directory.glob("wfm-archive-*.jsonl.gz"))
    except OSError:
        return  # no archive yet, or unreadable: the next write reports it
    for path in paths:
        size = recorded.get(path.name, 0)
        try:
            if path.stat().st_size > size:
                log.warning("cutting %s back to %d bytes: an append never committed", path, size)
                if size == 0:
                    path.unlink()
                else:
                    os.truncate(path, size)
        except OSError as exc:
            log.error("cannot repair the archive %s: %s", path, exc)


def _open_at(path: Path, size: int) -> BinaryIO:
    """The file, cut back to `size` bytes (what the last committed deletion recorded), at
    its end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    out = os.fdopen(fd, "r+b")
    try:
        out.truncate(size)
        out.seek(size)
    except BaseException:
        out.close()
        raise
    return out


def _sync(out: BinaryIO, path: Path, new: bool) -> int:
    out.flush()
    os.fsync(out.fileno())
    if new:  # the file's name must survive a power loss too
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return out.tell()
