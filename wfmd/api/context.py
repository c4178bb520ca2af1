"""What request handlers work with: the daemon's long-lived parts, in one place."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from wfmctl.protocol import FINISHED_STATUSES, Execution
from wfmd.api.pages import SharedPages
from wfmd.housekeeping.indexer import SearchIndexer
from wfmd.housekeeping.retention import Retention
from wfmd.ingest.committer import LogWriter
from wfmd.runs.supervisor import Supervisor
from wfmd.store import Store, StoredExecution, executions
from wfmd.store.database import DatabaseFile
from wfmd.workflows.catalog import WorkflowCatalog


@dataclass
class Services:
    store: Store
    writer: LogWriter
    supervisor: Supervisor
    catalog: WorkflowCatalog
    socket_path: Path
    version: str
    database_file: DatabaseFile
    indexer: SearchIndexer | None = None  # None: search indexing is switched off
    retention: Retention | None = None  # set by the daemon once built; None: requests refused
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.monotonic)
    follow_pages: SharedPages = field(init=False)

    def __post_init__(self) -> None:
        self.follow_pages = SharedPages(self.store)

    def storage_problem(self) -> str | None:
        """What keeps the database from taking writes that last, as last seen, or None."""
        problems = [p for p in (self.database_file.problem, self.writer.storage_error) if p]
        return "; ".join(problems) or None

    async def resolve(self, handle: str) -> StoredExecution:
        """The execution a full handle or a unique prefix names. Raises Refused."""
        return await self.store.lookup(executions.resolve, handle)

    def live(self, stored: StoredExecution) -> Execution:
        """The stored execution with the writer's live line count while it runs."""
        info = stored.info
        if info.status in FINISHED_STATUSES:
            return info
        if info.status == "NotStarted":
            position = self.supervisor.queue_position(stored.id)
            return msgspec.structs.replace(info, queue_position=position)
        count = self.writer.committed_count(stored.id)
        return info if count is None else msgspec.structs.replace(info, log_count=count)
