"""The MCP server `workflow_manager`: wfmd's operations as the original tool's MCP tools.

Tool names and arguments are the original workflow-manager's, so prompts written for it keep
working; results keep its keys and add some. Each tool returns one JSON document, as
structured content (described by the tool's output schema) and as text, within the output
bound (`results.Limits`). Failures are tool errors (`isError`) whose text tells the model
what to do next (`errors`); only a bug in a tool reaches the SDK's own handler.

The tools live by what they read: one execution (`executions`), across executions and
workflows (`history`), or every log (`search`); `toolkit` holds what they share.
"""

import inspect
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from wfmctl import __version__
from wfmctl.mcp import resources
from wfmctl.mcp.bridge import Bridge
from wfmctl.mcp.executions import ExecutionTools
from wfmctl.mcp.history import HistoryTools
from wfmctl.mcp.results import Limits
from wfmctl.mcp.search import SearchTools

SERVER_NAME = "workflow_manager"

INSTRUCTIONS = """\
wfm runs workflows (programs that report progress as phases, tasks and agents) under a
local daemon, wfmd, and keeps every execution's status, parameters and full log forever.
Find workflows with list_workflows, start one with execute_workflow, then follow it with
get_workflow_status, get_workflow_logs or wait_for_workflow. Every execution stays
readable by its handle_id (or a unique prefix of it), also long after it ended and across
daemon restarts: list_execution_history finds past ones, search_logs finds the lines
that mention something. Results are bounded in size;
a result cut short says how to get the rest."""


class Tools(ExecutionTools, HistoryTools, SearchTools):
    """Every tool, over one bridge to wfmd and one output bound."""


# --------------------------------------------------------------------------- the server

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
TOOLS: tuple[tuple[str, ToolAnnotations], ...] = (
    ("list_workflows", READ_ONLY),
    (
        "execute_workflow",
        ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False),
    ),
    ("get_workflow_status", READ_ONLY),
    ("get_workflow_logs", READ_ONLY),
    (
        "cancel_workflow",
        ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False),
    ),
    ("list_execution_history", READ_ONLY),
    ("get_execution_params", READ_ONLY),
    ("get_workflow_history", READ_ONLY),
    ("wait_for_workflow", READ_ONLY),
    ("search_logs", READ_ONLY),
)


def build_server(bridge: Bridge, limits: Limits) -> MCPServer[Any]:
    tools = Tools(bridge, limits)
    server: MCPServer[Any] = resources.ExecutionResources(
        bridge,
        limits,
        SERVER_NAME,
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    for name, annotations in TOOLS:
        fn = getattr(tools, name)
        description = inspect.cleandoc(fn.__doc__ or "")
        server.add_tool(fn, name=name, description=description, annotations=annotations)
    resources.add_templates(server, bridge, limits)
    return server


def serve(socket_path: str | None) -> int:
    """Serve on stdin and stdout until the client goes away; the exit code."""
    try:
        limits = Limits.from_env()
    except ValueError as exc:
        print(f"wfmctl: error: {exc}", file=sys.stderr)
        return 2
    build_server(Bridge(socket_path), limits).run("stdio")
    return 0
