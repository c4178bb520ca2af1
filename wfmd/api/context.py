"""What request handlers work with: the daemon's long-lived parts, in one place."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import trio

from wfmctl.protocol import FINISHED_STATUSES, Execution
from wfmd.ingest.committer import LogWriter
from wfmd.runs.supervisor import Supervisor
from wfmd.store import LookupFailed, Store, StoredExecution, executions
from wfmd.workflows.discovery import Catalog, discover


class RequestFailed(Exception):
    """A request that cannot be served; becomes an Error frame with `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class WorkflowCatalog:
    """The current discovery result; rescans are serialised so two never race."""

    def __init__(self, dirs: list[Path], probe_timeout: float) -> None:
        self.dirs = dirs
        self._probe_timeout = probe_timeout
        self._lock = trio.Lock()
        self.current = Catalog(workflows={}, skipped=[], conflicts=[])

    async def rescan(self) -> Catalog:
        async with self._lock:
            self.current = await discover(self.dirs, probe_timeout=self._probe_timeout)
        return self.current


@dataclass
class Services:
    store: Store
    writer: LogWriter
    supervisor: Supervisor
    catalog: WorkflowCatalog
    socket_path: Path
    version: str
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.monotonic)

    async def resolve(self, handle: str) -> StoredExecution:
        try:
            return await self.store.lookup(executions.resolve, handle)
        except LookupFailed as exc:
            raise RequestFailed(exc.code, str(exc)) from exc

    def live(self, stored: StoredExecution) -> Execution:
        """The stored execution with the writer's live line count while it runs."""
        info = stored.info
        if info.status in FINISHED_STATUSES:
            return info
        count = self.writer.committed_count(stored.id)
        return info if count is None else msgspec.structs.replace(info, log_count=count)
