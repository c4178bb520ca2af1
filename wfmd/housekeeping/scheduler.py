"""Housekeeping on a schedule: the heartbeat (with a look at the database file), recovery
of orphaned executions, and syncing the database's commits to disk."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import trio

from wfmd.housekeeping import recovery
from wfmd.runs.supervisor import Supervisor
from wfmd.store import StorageError, Store, heartbeat, now_ms
from wfmd.store.database import SYNC_INTERVAL, DatabaseFile

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        store: Store,
        supervisor: Supervisor,
        database_file: DatabaseFile,
        *,
        heartbeat_interval: float,
        recovery_interval: float,
    ) -> None:
        self._store = store
        self._supervisor = supervisor
        self._database_file = database_file
        self._heartbeat_interval = heartbeat_interval
        self._recovery_interval = recovery_interval
        self._started_at = now_ms()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await self._beat()
            nursery.start_soon(self._every, self._heartbeat_interval, self._beat)
            nursery.start_soon(self._every, self._recovery_interval, self._recover)
            nursery.start_soon(self._every, SYNC_INTERVAL, self._store.sync)
            task_status.started()

    async def _every(self, interval: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await trio.sleep(interval)
            try:
                await job()
            except StorageError as exc:
                log.error("scheduled job %s failed: %s", getattr(job, "__name__", job), exc)

    async def _beat(self) -> None:
        # Deleted or replaced, the file still takes the beat; ping and new runs learn of it
        # from `problem`, which this updates (and logs).
        await trio.to_thread.run_sync(self._database_file.check)
        await self._store.call(heartbeat.beat, os.getpid(), self._started_at, now_ms())

    async def _recover(self) -> None:
        await recovery.recover(
            self._store, supervised=self._supervisor.running_ids(), after_crash=False
        )
