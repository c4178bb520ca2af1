"""Operating-system helpers for workflow processes: start one in its own session (optionally
inside a cgroup), signal and reap its process group, describe how it exited, find and kill
the processes that carry a tag in their environment, and adopt orphans as a subreaper.

Every child of the daemon is started by `open_in_session`. That is what makes reaping
orphans safe: trio waits for each child it started by pid, and reaping any other child of
ours (`reap_adopted`) never takes a status trio is waiting for.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import trio

from wfmd.runs.joining import joining_argv

log = logging.getLogger(__name__)

T = TypeVar("T")

EXECUTION_ENV = "WFM_EXECUTION_ID"

# prctl(2) option: orphaned descendants are reparented to us instead of to init.
PR_SET_CHILD_SUBREAPER = 36

# Pause between two scans of /proc while killing: time for the killed processes to exit, so
# that the next scan does not find them again.
SCAN_PAUSE = 0.005

# A scan of /proc lists it again for processes born while it read (see `_scan`), this many
# times at most: each pass reads only the newcomers, so more passes cost little, but a
# machine busy forking would otherwise keep one going.
SCAN_CATCH_UP = 3

# Deeper than any process tree a workflow makes; bounds a walk up the parents.
MAX_DEPTH = 4096


def default_cwd() -> str:
    """Where a child runs unless told otherwise: the user's home directory (`/` if it has
    none), the same whichever directory the daemon was started from. Read at each spawn:
    cheap, and a home created after the daemon started is used."""
    home = os.path.expanduser("~")
    return home if os.path.isdir(home) else "/"


# Children we started and trio has not reaped yet, by pid, and how many spawns are under way
# (their pid is not known until the spawn returns). `reap_adopted` leaves both alone.
_children: dict[int, trio.Process] = {}
_spawning = 0


async def open_in_session(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdout: int,
    stderr: int,
    cgroup: Path | None = None,
    cwd: str | None = None,
) -> trio.Process:
    """Start `argv` as the leader of a new session (so of its own process group), with
    stdin closed, in `cwd` (None: `default_cwd()`). The group id is the process id:
    `kill_group(proc.pid, ...)` reaches every process that has not left the group.

    `cgroup`: the child joins it before it execs, so nothing it runs is ever outside it.
    A child that cannot join raises OSError, as one that cannot exec does.
    """
    global _spawning
    cwd = cwd or default_cwd()
    env = dict(os.environ) if env is None else env
    preexec: Callable[[], None] | None = None
    procs: int | None = None
    _spawning += 1
    try:
        if cgroup is not None:
            joining = await trio.to_thread.run_sync(
                joining_argv, argv, env, cwd, cgroup / "cgroup.procs"
            )
            if joining is not None:
                argv, env = joining, {}
            else:
                # A fork, for its exact exec errors: the child only writes to an fd opened
                # here, taking no lock. clone3(CLONE_INTO_CGROUP) is out of subprocess's reach.
                procs = os.open(cgroup / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
                fd = procs

                def preexec() -> None:
                    os.write(fd, b"0")

        try:
            proc = await trio.lowlevel.open_process(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                env=env,
                cwd=cwd,
                preexec_fn=preexec,
            )
        except subprocess.SubprocessError as exc:  # only our preexec_fn raises this
            raise OSError(f"could not move into its cgroup: {exc}") from None
        finally:
            if procs is not None:
                os.close(procs)
        _forget_reaped()
        _children[proc.pid] = proc
    finally:
        _spawning -= 1
    return proc


def _forget_reaped() -> None:
    for pid in [pid for pid, proc in _children.items() if proc.returncode is not None]:
        del _children[pid]


def _spawned_and_unreaped(pid: int) -> bool:
    proc = _children.get(pid)
    if proc is None:
        return False
    if proc.returncode is None:  # polls: may reap it, through trio's own Popen
        return True
    del _children[pid]
    return False


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


# --------------------------------------------------------------------------- /proc


def _pids(proc_root: Path) -> list[int]:
    try:
        return [int(name) for name in os.listdir(proc_root) if name.isdigit()]
    except OSError:
        return []


def _stat(pid: int, proc_root: Path = Path("/proc")) -> tuple[bytes, int, int] | None:
    """(state, ppid, pgrp) of `pid`, or None once it is gone. The command name, which may
    hold anything, is skipped by its last ")"."""
    try:
        stat = (proc_root / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[2])


def _scan(read: Callable[[int], T | None], proc_root: Path = Path("/proc")) -> dict[int, T]:
    """Blocking: `read(pid)` for every process (None: leave it out).

    Reading /proc takes milliseconds, and a process that forks and exits meanwhile leaves a
    successor the listing did not have: /proc is listed again, and the newcomers read, until
    a listing brings none (at most SCAN_CATCH_UP more times).
    """
    seen: set[int] = set()
    found: dict[int, T] = {}
    for _ in range(1 + SCAN_CATCH_UP):
        new = [pid for pid in _pids(proc_root) if pid not in seen]
        if not new:
            break
        seen.update(new)
        for pid in new:
            if (value := read(pid)) is not None:
                found[pid] = value
    return found


def signal_if(pid: int, sig: int, still_ours: Callable[[int], bool]) -> bool:
    """Send `sig` to `pid` if `still_ours(pid)` holds once a pidfd pins the process: a pid
    read from /proc or cgroup.procs may have been reused since, by a process not ours.
    False if it was not signalled."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:  # no pidfd (a kernel before 5.3): check, then signal by pid
        if not still_ours(pid):
            return False
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    try:
        # The pidfd names one process. If `pid` was reused before it was opened, the check
        # below sees the newcomer; if the process it names has died since, sending fails.
        if not still_ours(pid):
            return False
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        os.close(pidfd)


def in_group(pid: int, pgid: int | None) -> bool:
    """Is `pid` a member of process group `pgid`?"""
    stat = _stat(pid)
    return pgid is not None and stat is not None and stat[2] == pgid


def exited(pid: int) -> bool:
    """True once `pid` is gone or a zombie (it may still be waiting for its reaper)."""
    stat = _stat(pid)
    return stat is None or stat[0] in (b"Z", b"X")


def wait_exited(pids: Iterable[int], deadline: float) -> bool:
    """Blocking: until every one of `pids` has exited, or time.monotonic() passes
    `deadline`; True if they all did."""
    left = list(pids)
    while left:
        left = [pid for pid in left if not exited(pid)]
        if left:
            if time.monotonic() > deadline:
                return False
            time.sleep(SCAN_PAUSE / 5)
    return True


# --------------------------------------------------------------------------- by tag


def tag_of(env_name: str, value: str) -> bytes:
    """How a tag appears in /proc/<pid>/environ."""
    return f"{env_name}={value}".encode()


def _has_tag(pid: int, tag: bytes, proc_root: Path = Path("/proc")) -> bool:
    try:
        return tag in (proc_root / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return False  # gone already, exiting, or not ours to read


def tagged_processes(tag: bytes, proc_root: Path = Path("/proc")) -> list[int]:
    """Pids of live processes whose environment carries `tag` (b"NAME=value").

    Every workflow process inherits WFM_EXECUTION_ID, so this finds an execution's
    processes that left its group, or those of a dead daemon, without trusting a recorded pid
    that may since have been reused. It cannot find one that changed or dropped the tag.
    """
    me = os.getpid()  # never ourselves, even if wfmd was started from inside a workflow

    def carries_tag(pid: int) -> bool | None:
        return True if pid != me and _has_tag(pid, tag, proc_root) else None

    return sorted(_scan(carries_tag, proc_root))


def signal_tagged(tag: bytes, sig: int, *, except_group: int | None = None) -> int:
    """Blocking: send `sig` to every process carrying `tag`, except the members of process
    group `except_group` (signalled already: a second SIGTERM may find a process that is
    exiting, its handler gone, and kill it); returns how many."""

    def still_ours(pid: int) -> bool:
        return _has_tag(pid, tag) and not in_group(pid, except_group)

    return sum(signal_if(pid, sig, still_ours) for pid in tagged_processes(tag))


def kill_tagged(tag: bytes, within: float) -> int:
    """Blocking: SIGKILL every process carrying `tag`, scanning again until a scan finds
    none (a process may fork between a scan and its kill), for at most `within` seconds;
    then wait for them to exit. Returns how many were killed.

    Each scan also reads the processes born while it read /proc (see `_scan`), so one that
    forks a successor and exits meanwhile is not missed; one that hops to a new pid faster
    than a scan reads a few files can escape any scan: only a cgroup holds that.
    """
    deadline = time.monotonic() + within
    killed: set[int] = set()
    while found := tagged_processes(tag):
        for pid in found:
            if signal_if(pid, signal.SIGKILL, lambda p: _has_tag(p, tag)):
                killed.add(pid)
        if time.monotonic() > deadline:
            log.warning("processes tagged %s still appear after %g s", tag.decode(), within)
            break
        time.sleep(SCAN_PAUSE)
    if not wait_exited(killed, deadline):
        log.warning("processes tagged %s did not exit within %g s", tag.decode(), within)
    return len(killed)


# --------------------------------------------------------------------------- adopted orphans


def become_subreaper() -> bool:
    """Make orphaned descendants our children (PR_SET_CHILD_SUBREAPER) rather than init's.

    Then they are ours to reap (`reap_adopted`) and to find (`kill_adopted`). False where
    prctl is not available.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        log.warning("cannot become a child subreaper: %s", exc)
        return False
    return True


def _descendants(table: dict[int, tuple[bytes, int, int]], root: int) -> list[int]:
    """The descendants of `root` in a table of (state, ppid, pgrp) by pid."""
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _descends_from_us(pid: int) -> bool:
    me = os.getpid()
    for _ in range(MAX_DEPTH):
        stat = _stat(pid)
        if stat is None or stat[1] <= 1:
            return False
        if stat[1] == me:
            return True
        pid = stat[1]
    return False


def _reap(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return False


async def reap_adopted() -> int:
    """Reap the zombies among our children that we did not spawn: orphans adopted as a
    subreaper. Returns how many.

    The processes are listed in a thread; what to reap is decided back in trio's thread,
    where no spawn can be under way unseen: a child spawned since the listing is in
    `_children`, and while a spawn is in flight nothing is reaped.
    """
    table = await trio.to_thread.run_sync(_scan, _stat)
    if _spawning:
        return 0
    me = os.getpid()
    return sum(
        _reap(pid)
        for pid, (state, ppid, _) in table.items()
        if ppid == me and state in (b"Z", b"X") and not _spawned_and_unreaped(pid)
    )


async def kill_adopted(within: float, *, while_: Callable[[], bool]) -> int:
    """SIGKILL every descendant of ours but the children we spawned (so every adopted
    orphan and what it started), scanning again until a scan finds none, reaping the
    adopted; at most `within` seconds, and only while `while_()` holds (the caller's reason
    to believe they are all leftovers). Returns how many were killed."""
    killed: set[int] = set()
    me = os.getpid()
    with trio.move_on_after(within):
        while True:
            table = await trio.to_thread.run_sync(_scan, _stat)
            if _spawning or not while_():
                break
            alive = False
            for pid in _descendants(table, me):
                state, ppid, _ = table[pid]
                if ppid == me and _spawned_and_unreaped(pid):
                    continue
                if state in (b"Z", b"X"):
                    if ppid == me:
                        _reap(pid)
                elif signal_if(pid, signal.SIGKILL, _descends_from_us):
                    killed.add(pid)
                    alive = True
            if not alive:
                break
            await trio.sleep(SCAN_PAUSE)
    return len(killed)
