"""Operating-system helpers for workflow processes: start one in its own session, signal and
reap its process group, describe how it exited, find the strays of an execution."""

from __future__ import annotations

import math
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import trio

EXECUTION_ENV = "WFM_EXECUTION_ID"


async def open_in_session(
    argv: Sequence[str], *, env: dict[str, str] | None = None, stdout: int, stderr: int
) -> trio.Process:
    """Start `argv` as the leader of a new session (so of its own process group), with
    stdin closed. The group id is the process id: `kill_group(proc.pid, ...)` reaches every
    process that has not left the group."""
    return await trio.lowlevel.open_process(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        env=env,
    )


def kill_group(pgid: int, sig: int) -> None:
    """Send `sig` to a process group, if it still exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        pass  # the id was reused by someone else's group: not ours to touch


async def kill_and_reap(proc: trio.Process, *, within: float = math.inf) -> None:
    """SIGKILL `proc`'s group and wait for `proc` to be reaped (at most `within` seconds:
    only a process stuck in the kernel takes more than an instant).

    Cancellation: runs shielded, so no child outlives the task that started it.
    """
    with trio.CancelScope(shield=True):
        kill_group(proc.pid, signal.SIGKILL)
        with trio.move_on_after(within):
            await proc.wait()


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(returncode: int) -> str:
    """`exited with status 3`, or `killed by signal 9 (SIGKILL)` for a negative returncode."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    return f"killed by signal {-returncode} ({signal_name(-returncode)})"


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
