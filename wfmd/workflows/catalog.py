"""The workflows the daemon can run right now: the latest discovery result, and coalesced
rescans.

A scan runs every probe (each one a process start, up to `probe_timeout` for a slow one), so
scans are shared rather than queued: one task (`run`) does every scan, one at a time, and
callers say how fresh a result they need.

- `rescan()`, for an explicit `workflows --rescan` or SIGHUP, waits for a scan that *started
  after it was called*: the caller has usually just installed a workflow, and a scan already
  in flight may have listed the directory before the file was there. Everyone who asks while
  a scan runs shares the one scan after it.
- `recent()`, for a run of an id the catalog does not know (a new workflow, or a typo), joins
  the scan in flight, reuses one that finished less than RESCAN_REUSE ago, and starts one
  otherwise: a burst of typos costs one scan, not one each. A scan is reused only while no
  workflow directory has changed since it began, so a workflow installed a moment ago is
  found at once.

Nothing else waits for a scan: `current` is replaced only when a scan has finished.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import trio

from wfmd.workflows.discovery import Catalog, discover

log = logging.getLogger(__name__)

# A run of an unknown id is answered from a scan finished this recently: long enough that a
# burst of typos (or a script retrying one) shares a scan, short enough that a workflow
# installed a moment ago is found by the user's next try.
RESCAN_REUSE = 1.0


class WorkflowCatalog:
    """The current discovery result; scans are done by `run`, one at a time."""

    def __init__(self, dirs: list[Path], probe_timeout: float) -> None:
        self.dirs = dirs
        self._probe_timeout = probe_timeout
        self.current = Catalog(workflows={}, skipped=[], conflicts=[])
        self._scanning_since: float | None = None  # trio clock: the scan in flight began
        self._started = -math.inf  # when the scan that produced `current` began
        self._scan_began_ns = 0  # the same moment on the wall clock, for directory mtimes
        self._finished = -math.inf  # ... and ended
        self._wanted = trio.Event()  # someone needs a scan after the one in flight
        self._done = trio.Event()  # set (and replaced) whenever a scan ends

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Scan once, report ready, then scan whenever asked to, one scan at a time.

        Cancellation: a scan in flight is abandoned (`discover` kills and reaps its probes);
        `current` keeps the last complete result.
        """
        await self._scan()
        task_status.started()
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            await self._scan()

    async def rescan(self) -> Catalog:
        """The result of a scan that started after this call.

        Cancellation: only the wait is abandoned; the scan goes on for whoever else needs it.
        """
        asked = trio.current_time()
        while self._started < asked:
            done = self._done
            # A scan in flight that began before we asked will not do: `run` starts another
            # as soon as it ends, shared by everyone who asked meanwhile. One that began
            # after will (asking again would start a scan nobody needs).
            if self._scanning_since is None or self._scanning_since < asked:
                self._wanted.set()
            await done.wait()
        return self.current

    async def recent(self) -> Catalog:
        """The scan in flight, or one that finished less than RESCAN_REUSE ago, or a new one.

        Cancellation: as for `rescan`.
        """
        if await trio.to_thread.run_sync(self._dirs_changed_since, self._scan_began_ns):
            return await self.rescan()
        if self._scanning_since is not None:
            await self._done.wait()
            return self.current
        if trio.current_time() - self._finished < RESCAN_REUSE:
            return self.current
        return await self.rescan()

    def _dirs_changed_since(self, wall_ns: int) -> bool:
        """Whether a file was added, removed or renamed in a workflow directory at or after
        `wall_ns` (its mtime says so; a missing directory counts as unchanged).

        Blocking (stat, which a hung network mount can make slow): run it in a thread."""
        for directory in self.dirs:
            try:
                if os.stat(directory).st_mtime_ns >= wall_ns:
                    return True
            except OSError:
                continue
        return False

    async def _scan(self) -> None:
        started = trio.current_time()
        self._scanning_since = started
        self._scan_began_ns = time.time_ns()
        try:
            self.current = await discover(self.dirs, probe_timeout=self._probe_timeout)
        except Exception:  # a bug in discovery must not take the daemon down: keep the last
            log.exception("scanning the workflow directories failed; keeping the last result")
        finally:
            self._scanning_since = None
        self._started, self._finished = started, trio.current_time()
        self._done.set()
        self._done = trio.Event()
