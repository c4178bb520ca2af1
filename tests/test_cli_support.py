"""Helpers shared by the wfmctl tests that need no daemon (this file holds no tests).

Subprocesses run the installed wfmctl, like the rest of the suite: `-P` keeps the current
directory off the front of sys.path, where `-m` and `-c` would put it, so that running the
tests from a checkout does not import the checkout instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from wfmctl.protocol import Execution, LogEntry

SUBPROCESS_TIMEOUT = 60  # seconds: a cold interpreter start on a loaded CI machine
T0 = datetime(2026, 11, 26, 14, 3, 7, tzinfo=UTC).timestamp()


@contextmanager
def time_zone(name: str) -> Iterator[None]:
    """Local time is `name` inside the block (restored afterwards, tzset included)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def execution(status: str = "Completed", **kw: Any) -> Execution:
    base: dict[str, Any] = {
        "handle": "a1b2c3",
        "workflow_id": "simple_echo",
        "status": status,
        "created_at": T0,
        "started_at": T0 + 1,
        "ended_at": T0 + 2.25,
    }
    base.update(kw)
    return Execution(**base)


def entry(type: str, line: str = "", **event: Any) -> LogEntry:
    return LogEntry(
        seq=1,
        ts=T0,
        stream="stdout" if type == "raw_output" else "stderr",
        type=type,
        line=line,
        event=event or None,
    )


def run_python(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -P ARGS`, output captured; WFM_SOCKET only if given in `env`."""
    environ = {k: v for k, v in os.environ.items() if k != "WFM_SOCKET"}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-P", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=SUBPROCESS_TIMEOUT,
    )
