"""Requests that start, stop or watch executions: run, cancel, wait, follow."""

from __future__ import annotations

from wfmctl.protocol import (
    FINISHED_STATUSES,
    Accepted,
    Cancel,
    ErrorCode,
    Finished,
    Follow,
    LogBatch,
    Run,
    StatusReply,
    Wait,
)
from wfmd.api.context import RequestFailed, Services
from wfmd.api.server import Send
from wfmd.runs.supervisor import RunRefused
from wfmd.store import status_and_logs
from wfmd.workflows.params import ParamError, build_argv, validate_params

# Entries per frame of a follow stream: large enough to keep up with a fast workflow, small
# enough that one frame stays far below the frame limit at typical line lengths.
FOLLOW_PAGE = 2_000


async def run(s: Services, request: Run) -> Accepted:
    workflow = s.catalog.current.workflows.get(request.workflow_id)
    if workflow is None:  # maybe installed since the last scan
        workflow = (await s.catalog.rescan()).workflows.get(request.workflow_id)
    if workflow is None:
        raise RequestFailed(ErrorCode.NOT_FOUND, f"no workflow {request.workflow_id!r}")
    try:
        values = validate_params(workflow, request.params)
        argv = build_argv(workflow, values)
    except ParamError as exc:
        raise RequestFailed(ErrorCode.INVALID_PARAMS, str(exc)) from exc
    if request.timeout is not None and request.timeout < 0:
        raise RequestFailed(ErrorCode.BAD_REQUEST, "timeout must not be negative")
    positions = {f.name: i for i, f in enumerate(workflow.fields)}
    ordered = sorted(((positions[n], n, v) for n, v in values.items()), key=lambda p: p[0])
    try:
        execution = await s.supervisor.submit(
            workflow_id=workflow.id, argv=argv, params=ordered, run_timeout=request.timeout
        )
    except RunRefused as exc:
        raise RequestFailed(exc.code, str(exc)) from exc
    return Accepted(execution=execution)


async def cancel(s: Services, request: Cancel) -> StatusReply:
    stored = await s.resolve(request.handle)
    try:
        await s.supervisor.cancel(stored)
    except RunRefused as exc:
        raise RequestFailed(exc.code, str(exc)) from exc
    return StatusReply(execution=s.live(await s.resolve(stored.info.handle)))


async def wait(s: Services, request: Wait) -> Finished:
    stored = await s.resolve(request.handle)
    while stored.info.status not in FINISHED_STATUSES:
        # The event exists before the read: an ending committed after the read's snapshot
        # sets it, so it cannot slip between the read and the wait.
        ended = s.writer.end_event(stored.id)
        stored = await s.resolve(stored.info.handle)
        info = stored.info
        if info.status in FINISHED_STATUSES:
            break
        # A Running execution the writer no longer knows has ended since our read: read again.
        if info.status != "Running" or s.writer.committed_count(stored.id) is not None:
            await ended.wait()
    return Finished(execution=stored.info)


async def follow(s: Services, request: Follow, send: Send) -> None:
    """Stream committed entries after `request.after` until the execution has ended.

    Reads come from the database, so history and live output join with no gap and no
    duplicate, and a follower that reads slowly only delays itself.
    """
    stored = await s.resolve(request.handle)
    after = request.after
    while True:
        info, entries = await s.store.read(status_and_logs, stored.id, after, FOLLOW_PAGE)
        if entries:
            await send(LogBatch(entries=entries))
            after = entries[-1].seq
            continue
        if info.status in FINISHED_STATUSES:
            await send(Finished(execution=info))
            return
        progress = s.writer.progress_event(stored.id)
        committed = s.writer.committed_count(stored.id)
        if committed is not None and committed > after + 1:
            continue  # committed after our read
        if committed is None and info.status == "Running":
            continue  # ended after our read
        await progress.wait()
