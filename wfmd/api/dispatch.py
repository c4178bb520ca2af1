"""One `match` from request type to handler; refusals become Error frames here."""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_never

from wfmctl.protocol import (
    Cancel,
    Delete,
    Error,
    Export,
    Follow,
    GetInfo,
    GetLogRows,
    GetLogs,
    GetParams,
    GetStatus,
    History,
    ImportHistory,
    ListWorkflows,
    ParamHistory,
    Ping,
    Prune,
    RequestType,
    Rerun,
    Run,
    RunCommand,
    Search,
    Shutdown,
    Stats,
    Wait,
)
from wfmd.api import admin, executions, export, imports, logs, retention, search, workflows
from wfmd.api.context import Services
from wfmd.api.server import Send, shorten
from wfmd.errors import Refused


class Dispatcher:
    """`stop(reason)` stops the daemon as SIGTERM does: a Shutdown request calls it."""

    def __init__(self, services: Services, stop: Callable[[str], None]) -> None:
        self._services = services
        self._stop = stop

    async def __call__(self, request: RequestType, send: Send) -> None:
        s = self._services
        try:
            match request:
                case Ping():
                    await send(await admin.ping(s))
                case ListWorkflows():
                    await send(await workflows.workflows(s, request))
                case ParamHistory():
                    await send(await workflows.param_history(s, request))
                case Run():
                    await send(await executions.run(s, request))
                case Rerun():
                    await send(await executions.rerun(s, request))
                case RunCommand():
                    await send(await executions.run_command(s, request))
                case Cancel():
                    await send(await executions.cancel(s, request))
                case Wait():
                    await send(await executions.wait(s, request))
                case GetStatus():
                    await send(await executions.status(s, request))
                case GetParams():
                    await send(await executions.params(s, request))
                case History():
                    await send(await executions.history(s, request))
                case GetLogs():
                    await send(await logs.page(s, request))
                case GetLogRows():
                    await send(await logs.rows(s, request))
                case Follow():
                    await logs.follow(s, request, send)
                case Search():
                    await send(await search.find(s, request))
                case Stats():
                    await send(await workflows.workflow_stats(s, request))
                case ImportHistory():
                    await send(await imports.import_history(s, request))
                # retention
                case Prune():
                    await send(await retention.prune(s, request))
                case Delete():
                    await send(await retention.delete(s, request))
                case GetInfo():
                    await send(await retention.info(s, request))
                case Export():
                    await export.export(s, request, send)
                case Shutdown():
                    # Answered first: stopping closes every connection, this one too.
                    try:
                        await send(admin.shutdown(s))
                    finally:
                        self._stop("shutdown requested by a client")
                case _:
                    assert_never(request)
        except Refused as exc:
            await send(Error(code=exc.code, message=shorten(str(exc))))
