"""A database thread: one OS thread that runs every call on one connection, in arrival order
(the store has two: the writer's and the reader's).

`trio.to_thread.run_sync` under a CapacityLimiter(1) would also serialise the calls, but it
pays a full thread hand-off for each one, and with one connection those hand-offs are the
ceiling on requests per second (tests/bench/RESULTS.md). Here the thread takes every call
queued while it was busy and hands all the results back to Trio in one wake-up, so under load
the hand-off cost is shared by a batch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import outcome
import trio


@dataclass(slots=True)
class _Job:
    fn: Callable[[], Any]
    task: trio.lowlevel.Task
    result: outcome.Outcome[Any] | None = None


_STOP = None

# Longest a finished call's result waits for later calls of its batch before it is handed
# back: a batch must not turn one slow write into latency for every quick read before it.
MAX_HOLD = 0.001


class DatabaseThread:
    def __init__(self, name: str = "wfmd-database", max_hold: float = MAX_HOLD) -> None:
        self._max_hold = max_hold
        self._yield_while: Callable[[], bool] | None = None
        self._yield_pause = 0.0
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.calls = 0  # calls queued so far: who else is using the thread
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run `fn()` on the database thread and return its result (or raise its error).

        Cancellation: a call that has been queued runs to completion (SQLite cannot be
        interrupted safely mid-transaction); only then does the cancellation arrive.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        job = _Job(fn, trio.lowlevel.current_task())
        self.calls += 1
        self._queue.put(job)

        def refuse_abort(_: Any) -> trio.lowlevel.Abort:
            return trio.lowlevel.Abort.FAILED

        return await trio.lowlevel.wait_task_rescheduled(refuse_abort)

    def yield_while(self, busy: Callable[[], bool], pause: float) -> None:
        """From now on, before each batch, wait `pause` if `busy()` (called on this thread):
        for a thread whose calls must not take the cores from more urgent work."""
        self._yield_while, self._yield_pause = busy, pause

    def stop(self) -> None:
        """Let the thread finish the calls already queued, then exit."""
        self._queue.put(_STOP)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            busy = self._yield_while
            if busy is not None and busy():
                time.sleep(self._yield_pause)
            batch: list[_Job] = []
            deliver_by = time.monotonic() + self._max_hold
            while job is not _STOP:
                job.result = outcome.capture(job.fn)
                batch.append(job)
                if time.monotonic() > deliver_by:
                    break
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._token.run_sync_soon(_deliver, batch)
            if job is _STOP:
                return


def _deliver(batch: list[_Job]) -> None:
    for job in batch:
        assert job.result is not None
        trio.lowlevel.reschedule(job.task, job.result)
