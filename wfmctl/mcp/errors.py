"""Errors as the model reads them: what went wrong, and what to do next.

A daemon error (`WfmError`, branched on its `code`) becomes a `ToolFailure`, which the
server returns as a tool error (`isError`). Some explanations ask the daemon for more: the
executions an ambiguous prefix matches, the fields of a workflow that refused parameters.
Those lookups are best effort: if they fail, the explanation goes without.
"""

from __future__ import annotations

from functools import partial

from wfmctl.client import DISCONNECTED, TIMEOUT, UNREACHABLE, Client, WfmError
from wfmctl.mcp.bridge import Bridge
from wfmctl.mcp.results import describe_field, rfc3339
from wfmctl.protocol import ErrorCode

# How many recent executions are searched for the matches of an ambiguous handle prefix.
AMBIGUOUS_SEARCH = 5_000
AMBIGUOUS_SHOWN = 10
IDS_SHOWN = 30  # workflow ids named when an unknown one is asked for


class ToolFailure(Exception):
    """A failed tool call; its message is for the model and says what to do next."""


def unreachable(bridge: Bridge) -> str:
    return (
        f"wfmd, the daemon that runs workflows, is not running (nothing answers at "
        f"{bridge.socket_path}). Ask the user to start it: `wfmd` in a terminal, or "
        "`systemctl --user start wfmd` where it is installed as a service. Then call the "
        "tool again: this MCP server reconnects by itself."
    )


async def explain(
    bridge: Bridge,
    err: WfmError,
    *,
    handle: str | None = None,
    workflow_id: str | None = None,
) -> ToolFailure:
    """The tool error for `err`, raised by a call about `handle` or `workflow_id`."""
    code = err.code
    if code == UNREACHABLE:
        return ToolFailure(unreachable(bridge))
    if code in (DISCONNECTED, TIMEOUT):
        return ToolFailure(
            f"The connection to wfmd was lost ({err.message}): it may have stopped or "
            "restarted. Call the tool again; if it fails again, wfmd needs to be started "
            "(`wfmd`). Before running a workflow again, check list_execution_history: the "
            "run may have been accepted."
        )
    if code == ErrorCode.SHUTTING_DOWN:
        return ToolFailure(
            "wfmd is shutting down and accepts no new runs. Ask the user to start it again "
            "(`wfmd`), then retry."
        )
    if code == ErrorCode.NOT_FOUND and handle is not None:
        return ToolFailure(
            f"No execution has the handle {handle!r}. A handle is the handle_id that "
            "execute_workflow returned (a UUID), or a unique prefix of one; "
            "list_execution_history lists past executions with their handle_id."
        )
    if code == ErrorCode.NOT_FOUND and workflow_id is not None:
        return ToolFailure(await _unknown_workflow(bridge, workflow_id))
    if code == ErrorCode.AMBIGUOUS and handle is not None:
        return ToolFailure(await _ambiguous(bridge, handle))
    if code == ErrorCode.INVALID_PARAMS and workflow_id is not None:
        return ToolFailure(await _invalid_params(bridge, workflow_id, err.message))
    if code == ErrorCode.NOT_RUNNABLE:
        return ToolFailure(
            f"{err.message}. get_workflow_status shows how it ended; nothing is left to cancel."
        )
    if code == ErrorCode.STORAGE:
        return ToolFailure(
            f"wfmd cannot write to its database ({err.message}), so it accepts no new runs; "
            "reading past executions still works. The user must free disk space or fix the "
            "database."
        )
    if code == ErrorCode.BAD_REQUEST:
        return ToolFailure(f"wfmd refused the request: {err.message}. Check the arguments.")
    return ToolFailure(f"wfmd failed ({code}): {err.message}")


async def _unknown_workflow(bridge: Bridge, workflow_id: str) -> str:
    text = f"No workflow has the id {workflow_id!r}."
    try:
        reply = await bridge.call(lambda c: c.workflows())
    except WfmError:
        return text + " list_workflows lists the workflows that can be run."
    ids = [w.id for w in reply.workflows]
    shown = ", ".join(ids[:IDS_SHOWN]) + (", ..." if len(ids) > IDS_SHOWN else "")
    return f"{text} The known ids: {shown or 'none'}. list_workflows describes each."


async def _ambiguous(bridge: Bridge, prefix: str) -> str:
    text = f"The handle prefix {prefix!r} matches more than one execution."
    matches: list[str] = []
    before: str | None = None
    searched = 0
    try:
        while searched < AMBIGUOUS_SEARCH and len(matches) < AMBIGUOUS_SHOWN:
            page = await bridge.call(partial(Client.history, limit=1000, before=before))
            searched += len(page.executions)
            matches += [
                f"{e.handle} ({e.workflow_id}, {e.status}, accepted {rfc3339(e.created_at)})"
                for e in page.executions
                if e.handle.startswith(prefix)
            ]
            if page.next_before is None:
                break
            before = page.next_before
    except WfmError:
        pass
    if matches:
        shown = "; ".join(matches[:AMBIGUOUS_SHOWN])
        text += f" Among the {searched:,} most recent: {shown}."
    return text + " Give more characters of the handle, or the full handle_id."


async def _invalid_params(bridge: Bridge, workflow_id: str, message: str) -> str:
    text = message[0].upper() + message[1:] if message else "Invalid parameters."
    try:
        reply = await bridge.call(lambda c: c.workflows(workflow_id=workflow_id))
    except WfmError:
        reply = None
    found = [w for w in reply.workflows if w.id == workflow_id] if reply else []
    if found:
        fields = found[0].fields
        described = "; ".join(describe_field(f) for f in fields) if fields else "none"
        text += f". The fields of {workflow_id!r}: {described}."
    return text + " Fix every problem listed and call execute_workflow again."
