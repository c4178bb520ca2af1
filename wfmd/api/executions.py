"""Executions: run, rerun, cancel, wait, status, params, history."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import trio

from wfmctl.protocol import (
    FINISHED_STATUSES,
    Accepted,
    Cancel,
    ErrorCode,
    Finished,
    GetParams,
    GetStatus,
    History,
    HistoryPage,
    ParamsReply,
    Rerun,
    Run,
    RunCommand,
    StatusReply,
    Wait,
)
from wfmd.api.context import Services
from wfmd.errors import Refused, did_you_mean
from wfmd.store import HistoryFilter, executions
from wfmd.store.executions import COMMAND_PREFIX
from wfmd.workflows.params import build_argv, positioned, validate_params

# Executions that one history page may carry, so a reply stays far below the frame limit.
MAX_HISTORY_PAGE = 1_000


async def run(s: Services, request: Run) -> Accepted:
    return await _submit(s, request.workflow_id, request.params, request.timeout)


async def rerun(s: Services, request: Rerun) -> Accepted:
    """The original's workflow (as it is now) with the original's parameters, `params`
    overriding them, and the original's timeout unless the request gives one. A one-off
    command runs again as it was: same command line, directory and variables."""
    original = (await s.resolve(request.handle)).info
    timeout = request.timeout
    if timeout is None:
        timeout = 0 if original.timeout is None else original.timeout
    if original.command is not None:
        if request.params:
            raise Refused(ErrorCode.INVALID_PARAMS, "a command takes no parameters")
        command = RunCommand(argv=original.command, cwd=original.cwd, env=original.env)
        return await _submit_command(s, command, timeout, rerun_of=original.handle)
    params = {**original.params, **request.params}
    return await _submit(s, original.workflow_id, params, timeout, rerun_of=original.handle)


async def _submit(
    s: Services,
    workflow_id: str,
    params: Mapping[str, Any],
    run_timeout: float | None,
    *,
    rerun_of: str | None = None,
) -> Accepted:
    workflow = s.catalog.current.workflows.get(workflow_id)
    if workflow is None:  # maybe installed since the last scan (or a typo: scans are shared)
        workflow = (await s.catalog.recent()).workflows.get(workflow_id)
    if workflow is None:
        known = s.catalog.current.workflows
        raise Refused(
            ErrorCode.NOT_FOUND, f"no workflow {workflow_id!r}{did_you_mean(workflow_id, known)}"
        )
    values = validate_params(workflow, params)
    execution = await s.supervisor.submit(
        workflow_id=workflow.id,
        workflow_name=workflow.name,
        argv=build_argv(workflow, values),
        params=positioned(workflow, values),
        run_timeout=run_timeout,
        rerun_of=rerun_of,
    )
    return Accepted(execution=execution)


async def run_command(s: Services, request: RunCommand) -> Accepted:
    return await _submit_command(s, request, request.timeout)


async def _submit_command(
    s: Services, request: RunCommand, run_timeout: float | None, *, rerun_of: str | None = None
) -> Accepted:
    """A one-off command, supervised as a workflow is; `cmd:NAME` in history."""
    argv = request.argv
    problems = [f"argument {i}: contains a NUL byte" for i, a in enumerate(argv) if "\0" in a]
    if not argv[0]:
        problems.append("the command is empty")
    for name, value in request.env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            problems.append(f"environment variable {name!r}: not a NAME=VALUE pair")
    cwd = request.cwd
    if cwd is not None and not await trio.to_thread.run_sync(_is_directory, cwd):
        problems.append(f"working directory {cwd!r}: not an absolute path to a directory")
    if problems:
        raise Refused(ErrorCode.INVALID_PARAMS, "invalid command:\n" + "\n".join(problems))
    execution = await s.supervisor.submit(
        workflow_id=COMMAND_PREFIX + os.path.basename(argv[0]),
        workflow_name=None,
        argv=argv,
        params=[],
        run_timeout=run_timeout,
        rerun_of=rerun_of,
        cwd=cwd,
        env=request.env,
    )
    return Accepted(execution=execution)


def _is_directory(path: str) -> bool:
    return os.path.isabs(path) and os.path.isdir(path)


async def cancel(s: Services, request: Cancel) -> StatusReply:
    stored = await s.resolve(request.handle)
    await s.supervisor.cancel(stored)
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


async def status(s: Services, request: GetStatus) -> StatusReply:
    return StatusReply(execution=s.live(await s.resolve(request.handle)))


async def params(s: Services, request: GetParams) -> ParamsReply:
    info = (await s.resolve(request.handle)).info
    return ParamsReply(handle=info.handle, workflow_id=info.workflow_id, params=info.params)


async def history(s: Services, request: History) -> HistoryPage:
    query = HistoryFilter(
        limit=min(request.limit, MAX_HISTORY_PAGE),
        offset=request.offset,
        before=request.before,
        workflow_id=request.workflow_id,
        status=request.status,
        since_ms=None if request.since is None else int(request.since * 1000),
        until_ms=None if request.until is None else int(request.until * 1000),
    )
    page, next_before = await s.store.read(executions.history, query)
    total = await s.store.read(executions.count, query) if request.count else None
    return HistoryPage(executions=page, next_before=next_before, total=total)
