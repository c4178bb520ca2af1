"""The database's state for upkeep: pages in use, incremental vacuum, the record of each
retention run, and the counts `wfmctl info` shows. Plain functions over a connection."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar, cast

import apsw

from wfmd.store.database import transaction

P = ParamSpec("P")
T = TypeVar("T")

# Records of retention runs kept: a year of hourly runs is 8,760; these are for `wfmctl info`.
KEEP_RUN_RECORDS = 1_000


def timed(
    conn: apsw.Connection,
    fn: Callable[Concatenate[apsw.Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> tuple[T, float]:
    """`fn(conn, *args)` and the seconds it took: retention sizes its steps by it."""
    started = time.perf_counter()
    result = fn(conn, *args, **kwargs)
    return result, time.perf_counter() - started


# --------------------------------------------------------------------------- space


@dataclass(frozen=True, slots=True)
class Pages:
    page_size: int
    page_count: int
    freelist: int

    @property
    def in_use(self) -> int:
        """Bytes of pages holding data: the file's size less its free pages."""
        return (self.page_count - self.freelist) * self.page_size


def pages(conn: apsw.Connection) -> Pages:
    return Pages(
        page_size=cast(int, conn.pragma("page_size")),
        page_count=cast(int, conn.pragma("page_count")),
        freelist=cast(int, conn.pragma("freelist_count")),
    )


def incremental_vacuum(conn: apsw.Connection, max_pages: int) -> int:
    """Give up to `max_pages` free pages back to the file system (auto_vacuum=INCREMENTAL;
    a no-op otherwise); the file shrinks at the next checkpoint. Returns the free pages left."""
    conn.execute(f"PRAGMA incremental_vacuum({int(max_pages)})").fetchall()
    return cast(int, conn.pragma("freelist_count"))


def auto_vacuum(conn: apsw.Connection) -> str:
    mode = cast(int, conn.pragma("auto_vacuum"))
    return {0: "none", 1: "full", 2: "incremental"}.get(mode, str(mode))


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True, slots=True)
class RunRecord:
    started_ms: int
    duration_ms: int
    trigger: str
    executions_removed: int
    log_entries_removed: int
    bytes_freed: int
    bytes_compressed: int = 0


def record_run(conn: apsw.Connection, run: RunRecord) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO retention_runs (started_at, duration_ms, trigger, executions_removed,"
            " log_entries_removed, bytes_freed, bytes_compressed) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                run.started_ms,
                run.duration_ms,
                run.trigger,
                run.executions_removed,
                run.log_entries_removed,
                run.bytes_freed,
                run.bytes_compressed,
            ),
        )
        conn.execute(
            "DELETE FROM retention_runs WHERE id <= (SELECT max(id) FROM retention_runs) - ?",
            (KEEP_RUN_RECORDS,),
        )


def last_run(conn: apsw.Connection, trigger: str | None = None) -> RunRecord | None:
    where = "" if trigger is None else "WHERE trigger = ?"
    row = conn.execute(
        "SELECT started_at, duration_ms, trigger, executions_removed, log_entries_removed,"
        f" bytes_freed, bytes_compressed FROM retention_runs {where} ORDER BY id DESC LIMIT 1",
        () if trigger is None else (trigger,),
    ).get
    return None if row is None else RunRecord(*cast(Sequence[int], row))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- info


def counts_by_status(conn: apsw.Connection) -> dict[str, int]:
    return {
        cast(str, status): cast(int, n)
        for status, n in conn.execute("SELECT status, count(*) FROM executions GROUP BY status")
    }


def oldest_id(conn: apsw.Connection) -> int | None:
    value = conn.execute("SELECT min(id) FROM executions").get
    return None if value is None else cast(int, value)
