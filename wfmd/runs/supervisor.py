"""The supervisor: a queue of accepted runs, a limit on how many run at once, one task each.

Every accepted run is in the database before `submit` returns (as NotStarted), so a daemon
that dies with runs queued starts them after its restart.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
import uuid
from collections import deque
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import trio

from wfmctl.protocol import EndedBy, ErrorCode, Execution, Status
from wfmd.errors import Refused
from wfmd.ingest.committer import LogWriter
from wfmd.ingest.pipes import Pipe
from wfmd.runs import containment, process
from wfmd.store import Finish, StorageError, Store, StoredExecution, executions, now_ms
from wfmd.store.database import DatabaseFile
from wfmd.store.logs import STDERR, STDOUT

log = logging.getLogger(__name__)

# After the main child exits, how long its pipes may take to reach EOF before whatever is
# left of its process group is killed. Long enough for a pipeline's last stage to finish.
DRAIN_GRACE = 0.5

# After the group is gone, a pipe still open is held by a process that left the group
# (setsid); stop reading it once it has been silent this long.
ORPHAN_PIPE_GRACE = 1.0

# How often the storage watch looks at the writer's health.
STORAGE_CHECK_INTERVAL = 1.0

# How often the orphan-pipe watchdog looks at the pipes.
WATCHDOG_TICK = 0.1

# How long an abandoned pipe may take to be closed by the reader thread (it takes at most a
# poll round; only a stuck reader takes longer, and then the execution must still end).
PIPE_END_TIMEOUT = 10.0


# How `_wait_for_end` saw the main child go: by itself, stopped (cancel, shutdown, storage),
# or at its timeout.
Ending = Literal["exit", "stop", "timeout"]


@dataclass
class _Active:
    stored: StoredExecution
    stop: trio.Event = field(default_factory=trio.Event)
    stop_status: Status = "Cancelled"
    stop_ended_by: EndedBy = "cancelled"
    stop_reason: str = "cancelled by request"


class Supervisor:
    def __init__(
        self,
        store: Store,
        writer: LogWriter,
        database_file: DatabaseFile,
        *,
        max_concurrent: int,
        cancel_grace: float,
        default_timeout: float | None,
        storage_hold_timeout: float,
    ) -> None:
        self._store = store
        self._writer = writer
        self._database_file = database_file
        self._max_concurrent = max_concurrent
        self._cancel_grace = cancel_grace
        self._default_timeout = default_timeout
        self._storage_hold_timeout = storage_hold_timeout
        self._queue: deque[StoredExecution] = deque()
        self._running: dict[int, _Active] = {}
        self._accepting = True
        self._all_done = trio.Event()
        self._none_running: trio.Event | None = None  # set by shutdown, to wait for the last
        self._nursery: trio.Nursery | None = None

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def queued_count(self) -> int:
        return len(self._queue)

    def running_ids(self) -> Container[int]:
        """A live view (not a copy) of the executions this daemon supervises right now."""
        return self._running.keys()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Restore runs queued by an earlier daemon, then supervise until `shutdown`.

        Cancellation: every child's process group is killed (see `_execute`).
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for stored in await self._store.call(executions.active):
                if stored.info.status == "NotStarted":
                    self._queue.append(stored)
            self._fill_slots()
            nursery.start_soon(self._watch_storage)
            if (await containment.current()).adopting:
                nursery.start_soon(containment.reap_adopted_forever)
            task_status.started()
            await self._all_done.wait()
            nursery.cancel_scope.cancel()

    async def submit(
        self,
        *,
        workflow_id: str,
        workflow_name: str | None = None,
        argv: Sequence[str],
        params: Sequence[tuple[int, str, str]],
        run_timeout: float | None,
        rerun_of: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Execution:
        """Persist a run as NotStarted and queue it. Raises Refused."""
        if not self._accepting:
            raise Refused(ErrorCode.SHUTTING_DOWN, "the daemon is shutting down")
        if self._writer.storage_error is not None:
            raise Refused(ErrorCode.STORAGE, f"storage is failing: {self._writer.storage_error}")
        if run_timeout is None:
            run_timeout = self._default_timeout
        timeout_ms = None if not run_timeout or run_timeout <= 0 else int(run_timeout * 1000)
        try:
            stored = await self._store.call(
                executions.create,
                database_file=self._database_file,
                handle=str(uuid.uuid4()),
                workflow_id=workflow_id,
                workflow_name=workflow_name,
                params=params,
                argv=argv,
                timeout_ms=timeout_ms,
                now=now_ms(),
                rerun_of=rerun_of,
                cwd=cwd or process.default_cwd(),
                env=env,
            )
        except StorageError as exc:
            raise Refused(ErrorCode.STORAGE, f"cannot record the run: {exc.detail}") from exc
        self._queue.append(stored)
        self._fill_slots()
        return stored.info

    async def cancel(self, stored: StoredExecution) -> None:
        """Stop a queued or running execution. Raises Refused if it has already ended."""
        active = self._running.get(stored.id)
        if active is not None:
            active.stop.set()
            return
        for queued in self._queue:
            if queued.id == stored.id:
                self._queue.remove(queued)
                reason = "cancelled before it started"
                await self._writer.finish(Finish(stored.id, "Cancelled", "cancelled", reason))
                return
        raise Refused(ErrorCode.NOT_RUNNABLE, f"execution {stored.info.handle} has already ended")

    def queue_position(self, execution_id: int) -> int | None:
        """Where a queued execution stands in the queue (1: it starts next), else None."""
        for position, queued in enumerate(self._queue, start=1):
            if queued.id == execution_id:
                return position
        return None

    async def shutdown(self, failure: str | None = None) -> None:
        """Stop accepting, stop every running execution, wait until each one is recorded:
        Cancelled by the shutdown, or, given a `failure` (a bug in wfmd stopped it), Failed
        with ended_by "internal" and that reason.

        Queued runs stay NotStarted in the database and start after the next daemon start.
        """
        self._accepting = False
        for active in self._running.values():
            if failure is None:
                active.stop_reason = "cancelled: the daemon was shutting down"
            else:
                active.stop_status, active.stop_ended_by = "Failed", "internal"
                active.stop_reason = f"internal error in wfmd: {failure}"
            active.stop.set()
        if self._running:
            self._none_running = trio.Event()
            await self._none_running.wait()
        self._all_done.set()

    async def _watch_storage(self) -> None:
        """Fail the running executions once the database has refused writes for too long,
        and start queued runs once a lost database file is back.

        Until then they are only held: their output backs up into their pipes. Their lines
        and endings stay queued and are committed as soon as the storage recovers.
        """
        while True:
            await trio.sleep(STORAGE_CHECK_INTERVAL)
            if self._accepting:
                self._fill_slots()  # queued runs held while the database file was lost
            since = self._writer.storage_failing_since
            if since is None or trio.current_time() - since < self._storage_hold_timeout:
                continue
            for active in self._running.values():
                if not active.stop.is_set():
                    active.stop_status = "Failed"
                    active.stop_ended_by = "storage"
                    active.stop_reason = (
                        f"storage full or failing for over {self._storage_hold_timeout:g} s: "
                        f"{self._writer.storage_error}"
                    )
                    active.stop.set()

    # ----------------------------------------------------------------- one execution

    def _fill_slots(self) -> None:
        """Start queued runs into free slots; none while the database file is lost (as last
        checked): what they did would be recorded nowhere that lasts."""
        assert self._nursery is not None
        while (
            self._accepting
            and self._queue
            and len(self._running) < self._max_concurrent
            and self._database_file.problem is None
        ):
            stored = self._queue.popleft()
            self._running[stored.id] = _Active(stored)
            self._nursery.start_soon(self._execute, self._running[stored.id])

    async def _execute(self, active: _Active) -> None:
        eid = active.stored.id
        try:
            try:
                finish = await self._supervise(active)
            except Exception as exc:  # a daemon bug or storage failure: record it, serve on
                log.exception("supervising %s failed", active.stored.info.handle)
                finish = Finish(eid, "Failed", "internal", f"internal error in wfmd: {exc}")
            await self._writer.finish(finish)
        finally:
            del self._running[eid]
            if self._accepting:
                self._fill_slots()
            elif not self._running and self._none_running is not None:
                self._none_running.set()

    async def _supervise(self, active: _Active) -> Finish:
        """Spawn into a box of its own, capture, wait for the end (exit, timeout or stop),
        kill whatever is left in the box, reap.

        Cancellation: everything in the execution's box is killed and the child reaped
        (shielded) before the cancellation propagates.
        """
        stored = active.stored
        handle = stored.info.handle
        # The daemon's environment, the variables given for this run, and its handle (last:
        # the tag that contains it cannot be overridden).
        env = {**os.environ, **stored.info.env, process.EXECUTION_ENV: handle}
        # The writer learns of the execution before anyone can see it Running.
        self._writer.begin(stored.id)
        # Running before the child exists: if the daemon dies right after the spawn, recovery
        # finds it Running and kills its processes, instead of running it twice.
        if not await self._mark_running(active):
            return Finish(stored.id, active.stop_status, active.stop_ended_by, active.stop_reason)
        name = containment.execution_box(handle)
        box = await containment.open_box(name, process.EXECUTION_ENV, handle)
        try:
            return await self._supervise_in(active, box, env)
        finally:
            await box.close()

    async def _supervise_in(
        self, active: _Active, box: containment.Box, env: dict[str, str]
    ) -> Finish:
        stored = active.stored
        try:
            proc, out_read, err_read = await _spawn(stored.argv, env, box, stored.info.cwd)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in argv or env
            why = getattr(exc, "strerror", None) or exc
            # subprocess reports a failed chdir with the directory as the file name.
            if stored.info.cwd is not None and getattr(exc, "filename", None) == stored.info.cwd:
                why = f"working directory {stored.info.cwd}: {why}"
            reason = f"could not start {stored.argv[0]}: {why}"
            return Finish(stored.id, "Failed", "spawn_error", reason)
        # The writer's reader thread now owns the read ends.
        pipes = [
            self._writer.pipes.open(stored.id, STDOUT, out_read),
            self._writer.pipes.open(stored.id, STDERR, err_read),
        ]
        timeout = stored.info.timeout
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        try:
            self._writer.record_pid(stored.id, proc.pid)
            ending = await self._wait_for_end(active, proc, box, deadline)
            self._writer.pipes.poke()
            await self._reap(active, box, pipes)
        finally:
            with trio.CancelScope(shield=True):
                # Nothing of the execution outlives its ending (and its pipes' writers die).
                await box.kill()
                # Every line is delivered before the ending is queued behind them.
                open_pipes = [p for p in pipes if not p.finished.is_set()]
                for pipe in open_pipes:
                    self._writer.pipes.abandon(pipe)
                with trio.move_on_after(PIPE_END_TIMEOUT) as waited:
                    for pipe in open_pipes:
                        await pipe.finished.wait()
                if waited.cancelled_caught:
                    log.error("the pipe reader did not close %s's pipes", stored.info.handle)
                await proc.wait()
        return self._finish_for(active, proc, ending, timeout)

    async def _mark_running(self, active: _Active) -> bool:
        """Commit Running with the writer's next commit (which retries while the database
        refuses writes: a user's long write transaction, a full disk). False if the execution
        was stopped before that: its ending is then committed after the start."""
        committed = self._writer.start(active.stored.id)
        while not active.stop.is_set():
            with trio.move_on_after(STORAGE_CHECK_INTERVAL):
                await committed.wait()
                return True
        return False

    async def _wait_for_end(
        self, active: _Active, proc: trio.Process, box: containment.Box, deadline: float
    ) -> Ending:
        """How the main child went; on 'stop' and 'timeout' its group has been terminated."""
        ending: Ending = "exit"
        with trio.move_on_at(deadline):
            async with trio.open_nursery() as race:

                async def on_stop() -> None:
                    await active.stop.wait()
                    race.cancel_scope.cancel()

                race.start_soon(on_stop)
                await proc.wait()
                race.cancel_scope.cancel()
            if proc.returncode is None:
                ending = "stop"
        if proc.returncode is None and ending == "exit":
            ending = "timeout"
        if proc.returncode is None:
            await self._terminate(proc, box)
        return ending

    async def _terminate(self, proc: trio.Process, box: containment.Box) -> None:
        """SIGTERM every process in the box, give the child the grace period, then SIGKILL
        everything in the box.

        Cancellation: the SIGKILL and the final wait run shielded, so no child outlives us.
        """
        await box.signal(signal.SIGTERM)
        with trio.move_on_after(self._cancel_grace):
            await proc.wait()
        await box.kill()
        await process.kill_and_reap(proc)

    async def _reap(self, active: _Active, box: containment.Box, pipes: list[Pipe]) -> None:
        """After the main child has exited: drain, kill whatever is left in its box, and
        stop reading pipes that only a process the box could not hold still holds (in
        process-scan mode, one that dropped its tag)."""

        async def drained(within: float) -> bool:
            with trio.move_on_after(within):
                for pipe in pipes:
                    await pipe.finished.wait()
                return True
            return False

        await drained(DRAIN_GRACE)
        # Whatever is left goes, even if it closed its pipes: nothing outlives the execution
        # it belongs to.
        await box.kill()
        reader = self._writer.pipes
        while not await drained(WATCHDOG_TICK):
            now = time.monotonic()
            # A silent pipe while the reader is held back by the writer is not orphaned.
            if active.stop.is_set() or all(
                p.finished.is_set()
                or (not reader.throttled and now - p.last_data_at > ORPHAN_PIPE_GRACE)
                for p in pipes
            ):
                return  # the caller abandons the pipes still open

    def _finish_for(
        self, active: _Active, proc: trio.Process, ending: Ending, timeout: float | None
    ) -> Finish:
        code = proc.returncode
        assert code is not None
        status: Status
        ended_by: EndedBy
        if ending == "stop":
            status, ended_by, reason = active.stop_status, active.stop_ended_by, active.stop_reason
        elif ending == "timeout":
            status, ended_by, reason = "Failed", "timeout", f"timed out after {timeout:g} s"
        else:
            status = "Completed" if code == 0 else "Failed"
            ended_by = "exit" if code >= 0 else "signal"
            reason = process.describe_exit(code)
        return Finish(
            active.stored.id,
            status,
            ended_by,
            reason,
            exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
        )


async def _spawn(
    argv: Sequence[str], env: dict[str, str], box: containment.Box, cwd: str | None
) -> tuple[trio.Process, int, int]:
    """Start a child in `box`, in its own session, stdin closed, stdout and stderr on pipes
    of our own (not Trio's: their read ends go to the writer's reader thread). Returns the
    process and the two read ends, which the caller owns; on any failure none are left open."""
    fds: list[int] = []
    try:
        fds += os.pipe()
        fds += os.pipe()
        out_read, out_write, err_read, err_write = fds
        proc = await box.spawn(argv, env=env, stdout=out_write, stderr=err_write, cwd=cwd)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    os.close(out_write)  # the child has its copies: EOF comes when its side closes
    os.close(err_write)
    return proc, out_read, err_read
