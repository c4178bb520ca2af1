"""The tool that searches every execution's log: search_logs.

Annotations here are evaluated (no `from __future__ import annotations`): the SDK reads the
tools' signatures to build their JSON schemas.
"""

from typing import Annotated, Any

from mcp.types import CallToolResult
from pydantic import Field
from typing_extensions import TypedDict

from wfmctl.mcp.results import fitting, log_entry, room_for_list
from wfmctl.mcp.toolkit import Since, StatusFilter, ToolBase, Until, WorkflowFilter


class SearchMatch(TypedDict):
    handle_id: str
    workflow_id: str
    entry: dict[str, Any]
    before: list[dict[str, Any]]
    after: list[dict[str, Any]]


class SearchResult(TypedDict):
    matches: list[SearchMatch]
    next_cursor: int | None
    hint: str


class SearchTools(ToolBase):
    async def search_logs(
        self,
        query: Annotated[
            str,
            Field(
                min_length=1,
                max_length=1000,
                description='Words that must all appear in one line, "a phrase" in quotes, '
                "or prefix* (case and accents are ignored), e.g. timeout or "
                '"disk full" or conn*.',
            ),
        ],
        workflow_id: WorkflowFilter = None,
        status: StatusFilter = None,
        since: Since = None,
        until: Until = None,
        handle_id: Annotated[
            str | None, Field(max_length=100, description="Only this execution.")
        ] = None,
        context: Annotated[
            int, Field(ge=0, le=20, description="Lines before and after each match (0).")
        ] = 0,
        limit: Annotated[int, Field(ge=1, le=200, description="At most this many (20).")] = 20,
        cursor: Annotated[
            int | None, Field(description="A previous result's next_cursor, to read on.")
        ] = None,
    ) -> Annotated[CallToolResult, SearchResult]:
        """Find log lines across every execution, newest first: each match with its
        execution's handle_id and workflow, the entry (seq, timestamp, type, and the line or
        the event's fields) and `context` lines around it. Answers "which run printed X?";
        read more of a run with get_workflow_logs (after_seq near the match's seq)."""

        async def body() -> CallToolResult:
            since_s, until_s = self.window(since, until)
            page = await self.bridge.call(
                lambda c: c.search(
                    query,
                    workflow_id=workflow_id,
                    status=status,
                    since=since_s,
                    until=until_s,
                    handle=handle_id,
                    context=context,
                    limit=limit,
                    before=cursor,
                )
            )
            cap = self.limits.line_cap
            matches: list[SearchMatch] = [
                {
                    "handle_id": hit.handle,
                    "workflow_id": hit.workflow_id,
                    "entry": log_entry(hit.entry, cap),
                    "before": [log_entry(e, cap) for e in hit.before],
                    "after": [log_entry(e, cap) for e in hit.after],
                }
                for hit in page.hits
            ]
            result: SearchResult = {"matches": [], "next_cursor": None, "hint": ""}
            shown = fitting(matches, room_for_list(result, self.limits))
            result["matches"] = matches[:shown]
            if shown < len(matches):
                result["next_cursor"] = page.hits[shown - 1].position if shown else cursor
            else:
                result["next_cursor"] = page.next_before
            result["hint"] = _hint(len(matches), shown, result["next_cursor"], page.backlog)
            return self.ok(result)

        return await self.attempt(body, handle=handle_id, workflow_id=workflow_id)


def _hint(found: int, shown: int, cursor: int | None, backlog: int) -> str:
    text = f"{shown} match{'es' if shown != 1 else ''}" + (
        f" shown of {found} (cut to fit the output bound)" if shown < found else ""
    )
    if cursor is not None:
        text += f"; more: call again with cursor={cursor}"
    else:
        text += "; no more"
    if backlog:
        text += f". The newest {backlog:,} stored log rows are not searchable yet."
    return text + "."
