"""One `match` from request type to handler; errors become Error frames here."""

from __future__ import annotations

import logging

from wfmctl.protocol import (
    Cancel,
    Error,
    ErrorCode,
    Follow,
    GetLogs,
    GetParams,
    GetStatus,
    History,
    ListWorkflows,
    ParamHistory,
    Ping,
    RequestType,
    Run,
    Wait,
)
from wfmd.api import executions as run
from wfmd.api import queries as query
from wfmd.api.context import RequestFailed, Services
from wfmd.api.server import Send, shorten
from wfmd.store import StorageFull

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, services: Services) -> None:
        self._services = services

    async def __call__(self, request: RequestType, send: Send) -> None:
        s = self._services
        try:
            match request:
                case Ping():
                    await send(await query.ping(s))
                case ListWorkflows():
                    await send(await query.workflows(s, request))
                case Run():
                    await send(await run.run(s, request))
                case GetStatus():
                    await send(await query.status(s, request))
                case GetLogs():
                    await send(await query.logs(s, request))
                case Follow():
                    await run.follow(s, request, send)
                case Wait():
                    await send(await run.wait(s, request))
                case Cancel():
                    await send(await run.cancel(s, request))
                case History():
                    await send(await query.history(s, request))
                case GetParams():
                    await send(await query.params(s, request))
                case ParamHistory():
                    await send(await query.param_history(s, request))
        except RequestFailed as exc:
            await send(Error(code=exc.code, message=shorten(str(exc))))
        except StorageFull as exc:
            await send(Error(code=ErrorCode.STORAGE, message=shorten(f"storage error: {exc}")))
