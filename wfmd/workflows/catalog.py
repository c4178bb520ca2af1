"""The workflows the daemon can run right now: the latest discovery result."""

from __future__ import annotations

from pathlib import Path

import trio

from wfmd.workflows.discovery import Catalog, discover


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
