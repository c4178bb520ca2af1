"""Operating-system helpers for workflow processes: signals, process groups, finding strays."""

from __future__ import annotations

import os
import signal
from pathlib import Path

EXECUTION_ENV = "WFM_EXECUTION_ID"


def kill_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # the id was reused by someone else's group: not ours to touch
    return True


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def processes_of_execution(handle: str, proc_root: Path = Path("/proc")) -> list[int]:
    """Pids of live processes whose environment says they belong to execution `handle`.

    Every workflow process inherits WFM_EXECUTION_ID, so this finds the process group of an
    execution left behind by a dead daemon, and children that left the group, without
    trusting a recorded pid that may since have been reused by an unrelated process.
    """
    needle = f"{EXECUTION_ENV}={handle}".encode()
    found = []
    try:
        entries = list(proc_root.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone already, or not ours to read
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_execution_processes(handle: str) -> int:
    """SIGKILL every process (and its group) that belongs to `handle`; returns how many."""
    pids = processes_of_execution(handle)
    for pid in pids:
        try:
            pgid = os.getpgid(pid)
            if pgid == pid:
                os.killpg(pgid, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(pids)
