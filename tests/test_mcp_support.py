"""Helpers for the MCP tests (this file holds no tests): the real `wfmctl mcp`, driven by the
SDK's own client over stdio.

The SDK's client is async (anyio). The tests are plain functions, so that several can share
one server: `McpClient` runs the session on an event loop in a thread of its own (an anyio
blocking portal) and makes each call synchronous.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio.from_thread
from conftest import WFMCTL
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

T = TypeVar("T")

CALL_TIMEOUT = 120.0  # seconds: a loaded 2-core machine, a 300 s wait is never asked for
DEFAULT_MAX_OUTPUT = 32 * 1024


class McpClient:
    """A `wfmctl mcp --socket SOCKET` process with an initialized ClientSession on it."""

    def __init__(
        self, socket: Path, *, env: Mapping[str, str] | None = None, errlog: Path | None = None
    ) -> None:
        self._stack = contextlib.ExitStack()
        try:
            self.portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
            params = StdioServerParameters(
                command=WFMCTL, args=["mcp", "--socket", str(socket)], env=dict(env or {})
            )
            log = self._stack.enter_context((errlog or Path("/dev/null")).open("a"))
            read, write = self._stack.enter_context(
                self.portal.wrap_async_context_manager(stdio_client(params, errlog=log))
            )
            self.session = self._stack.enter_context(
                self.portal.wrap_async_context_manager(
                    ClientSession(read, write, read_timeout_seconds=CALL_TIMEOUT)
                )
            )
            self.initialized = self.portal.call(self.session.initialize)
        except BaseException:
            self._stack.close()
            raise

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        return self.portal.call(fn)

    def call(self, tool: str, **arguments: Any) -> CallToolResult:
        """A tool call's whole result (tool errors included)."""
        return self.run(functools.partial(self.session.call_tool, tool, arguments))

    def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """A successful call's structured content, after checking that its text says the
        same and stays under the output bound."""
        result = self.call(tool, **arguments)
        assert not result.is_error, text_of(result)
        text = text_of(result)
        assert len(text.encode()) <= DEFAULT_MAX_OUTPUT, len(text.encode())
        assert json.loads(text) == result.structured_content
        structured: dict[str, Any] = result.structured_content
        return structured

    def error(self, tool: str, **arguments: Any) -> str:
        """A call that must fail as a tool error: its text."""
        result = self.call(tool, **arguments)
        assert result.is_error, text_of(result)
        return text_of(result)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> McpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def text_of(result: CallToolResult) -> str:
    [content] = result.content
    assert isinstance(content, TextContent)
    return content.text
