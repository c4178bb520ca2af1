"""`wfmctl mcp`: wfmd's tools for Claude and other MCP clients, over stdio.

A front end beside `wfmctl.cli`, reaching the daemon only through the wfmctl library. It
needs the MCP SDK, an optional extra (`pip install 'wfm[mcp]'`): this module imports
nothing of it until `main` runs, so that `import wfmctl` and every other command stay thin.

    bridge.py     daemon calls: worker threads for the client, async streams for waits
    errors.py     daemon errors as tool errors that say what to do next
    results.py    the original tool's result shapes, and the output bound
    logs.py       pages of a log, forward, backward and filtered
    times.py      the times history filters on
    resources.py  executions as MCP resources
    server.py     the MCP server and its tools
"""

from __future__ import annotations

import sys

INSTALL_HINT = "install it with: pip install 'wfm[mcp]'"
EXIT_NO_SDK = 1


def main(socket_path: str | None = None) -> int:
    """Serve MCP on stdin/stdout for the daemon at `socket_path`; returns the exit code."""
    try:
        import mcp.server.mcpserver  # noqa: F401  # the SDK: the optional extra
    except ImportError as exc:
        if (exc.name or "mcp").partition(".")[0] == "mcp":
            print(f"wfmctl: error: wfmctl mcp needs the MCP SDK; {INSTALL_HINT}", file=sys.stderr)
        else:  # the SDK is there but one of its dependencies is not
            print(
                f"wfmctl: error: the MCP SDK cannot be imported ({exc}); {INSTALL_HINT}",
                file=sys.stderr,
            )
        return EXIT_NO_SDK

    from wfmctl.mcp.server import serve

    return serve(socket_path)
