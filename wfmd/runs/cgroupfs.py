"""The cgroup v2 file system: where this daemon's boxes go, a test that the kernel lets us use
them, killing everything in a cgroup and waiting until it is empty, removing it.

Blocking functions say so; `kill_and_wait_empty` waits in trio.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from wfmd.runs import process

# The longest ending a box may take. SIGKILL takes effect at once except on a process stuck
# in the kernel (a hung network mount): such a one must not hold an execution's ending, or
# the daemon's shutdown, forever. It is logged.
KILL_TIMEOUT = 5.0

# While waiting for a cgroup to empty, cgroup.events is read again after FIRST_RECHECK, then
# after twice as long each time, up to EMPTY_RECHECK, even without a notification: the
# kernel sends at most one per file every 10 ms and delays the next (measured: the
# self-test's kill took 11-17 ms to be notified, under 1 ms to happen), and a lost wake-up
# costs at most EMPTY_RECHECK, never a hang.
FIRST_RECHECK = 0.001
EMPTY_RECHECK = 0.1

# The self-test's child: the smallest program that waits to be killed.
SELF_TEST_ARGV = ("/bin/sh", "-c", "read line")

BASE_NAME = re.compile(r"wfmd-(\d+)-(\d+)")


def read(path: Path) -> str:
    return path.read_text()


def populated(events_fd: int) -> bool:
    return b"populated 1" in os.pread(events_fd, 4096, 0)


def members(cgroup: Path) -> list[int]:
    """Pids in `cgroup` and the cgroups below it (a workflow run as root may make some)."""
    pids = []
    for directory, _, _ in os.walk(cgroup):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in read(Path(directory) / "cgroup.procs").split()]
    return pids


def remove(cgroup: Path) -> None:
    """rmdir `cgroup` and the cgroups below it, deepest first (their files go with them)."""
    for directory, _, _ in os.walk(cgroup, topdown=False):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(directory)


def start_time(pid: int) -> int | None:
    """A process's start time (clock ticks since boot): with its pid, names it for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat.rsplit(b")", 1)[1].split()[19])


def _unescape(field: str) -> str:
    """A mountinfo path: spaces and the like are written as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def cgroup2_mount(mountinfo: str) -> tuple[Path, str] | None:
    """The first cgroup2 mount: its mount point and the cgroup path at its root."""
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" in fields and fields[fields.index("-") + 1] == "cgroup2":
            return Path(_unescape(fields[4])), _unescape(fields[3])
    return None


def own_cgroup(proc_cgroup: str) -> str | None:
    """Our cgroup v2 path ("0::/path" in /proc/self/cgroup), or None without cgroup v2."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


@dataclass(frozen=True)
class Cgroups:
    """Where this daemon's boxes go, and what the kernel offers there."""

    parent: Path  # the daemon's own cgroup, where every daemon's base lives
    base: Path  # this daemon's: parent / wfmd-<pid>-<start time>
    parent_in_proc: str  # parent as /proc/<pid>/cgroup names it
    has_kill: bool  # cgroup.kill (Linux 5.14): one write kills every member
    has_freeze: bool  # cgroup.freeze (Linux 5.2): stops forks while members are killed

    def create(self, name: str) -> Path:
        os.makedirs(self.base, exist_ok=True)  # removed whenever no box is open
        path = self.base / name
        os.mkdir(path)
        return path

    def is_member(self, pid: int, cgroup: Path) -> bool:
        """Is `pid` in `cgroup` (below our own cgroup) or below that?"""
        below = cgroup.relative_to(self.parent).as_posix()
        inside = self.parent_in_proc.rstrip("/") + "/" + below
        try:
            line = own_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
        except OSError:
            return False
        return line is not None and (line == inside or line.startswith(inside + "/"))

    def signal(self, cgroup: Path, sig: int, *, except_group: int | None = None) -> int:
        """Blocking: send `sig` to every member of `cgroup` but those of process group
        `except_group` (see `process.signal_tagged`); returns how many."""

        def still_ours(pid: int) -> bool:
            return self.is_member(pid, cgroup) and not process.in_group(pid, except_group)

        return sum(process.signal_if(pid, sig, still_ours) for pid in members(cgroup))

    def dead_bases(self) -> list[Path]:
        """Bases of daemons that no longer run (beside ours, in our own cgroup)."""
        dead = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.parent):
                match = BASE_NAME.fullmatch(entry.name)
                if match is None or entry.path == str(self.base) or not entry.is_dir():
                    continue
                if start_time(int(match[1])) != int(match[2]):
                    dead.append(Path(entry.path))
        return dead


def find() -> Cgroups | str:
    """Blocking: where boxes would go, or why there is nowhere."""
    try:
        mount = cgroup2_mount(read(Path("/proc/self/mountinfo")))
        own = own_cgroup(read(Path("/proc/self/cgroup")))
    except OSError as exc:
        return f"cannot read /proc: {exc.strerror or exc}"
    if mount is None:
        return "no cgroup2 file system is mounted"
    if own is None:
        return "this process is in no cgroup v2"
    mount_point, mount_root = mount
    if mount_root != "/" and not (own == mount_root or own.startswith(mount_root + "/")):
        return f"our cgroup {own} is outside the cgroup2 mount at {mount_point}"
    inside_mount = own[len(mount_root) :] if mount_root != "/" else own
    parent = mount_point / inside_mount.lstrip("/")
    pid = os.getpid()
    name = f"wfmd-{pid}-{start_time(pid)}"
    return Cgroups(
        parent=parent,
        base=parent / name,
        parent_in_proc=own,
        has_kill=False,  # known once the self-test has made a cgroup
        has_freeze=False,
    )


def self_test(cgroups: Cgroups) -> Cgroups:
    """Blocking: a child joins a test cgroup, is killed with it, and the cgroup empties and
    goes; raises OSError (or SubprocessError) if any step fails. Returns `cgroups` with
    what the kernel offers."""
    test = cgroups.create("self-test")
    try:
        cgroups = Cgroups(
            parent=cgroups.parent,
            base=cgroups.base,
            parent_in_proc=cgroups.parent_in_proc,
            has_kill=(test / "cgroup.kill").exists(),
            has_freeze=(test / "cgroup.freeze").exists(),
        )
        procs = os.open(test / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        try:
            child = subprocess.Popen(
                SELF_TEST_ARGV,
                stdin=subprocess.PIPE,  # it waits for a line that never comes
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=lambda: os.write(procs, b"0"),  # as process.open_in_session
            )
        finally:
            os.close(procs)
        with child:  # on the way out: stdin closed (it exits if still alive), reaped
            try:
                if members(test) != [child.pid]:
                    raise OSError(errno.EPERM, "the child did not join its cgroup")
                kill_members(cgroups, test)
                if not wait_empty_blocking(test, KILL_TIMEOUT):
                    raise OSError(errno.ETIMEDOUT, "the killed child's cgroup did not empty")
            finally:
                child.kill()  # not reaped yet, so the pid is still its own
    finally:
        remove(test)
        with contextlib.suppress(OSError):
            os.rmdir(cgroups.base)
    return cgroups


def kill_members(cgroups: Cgroups, cgroup: Path) -> None:
    """Blocking: start killing everything in `cgroup` (the kernel finishes it)."""
    if cgroups.has_kill:
        (cgroup / "cgroup.kill").write_text("1")
        return
    if cgroups.has_freeze:  # a frozen process cannot fork; SIGKILL still ends it
        with contextlib.suppress(OSError):
            (cgroup / "cgroup.freeze").write_text("1")
    cgroups.signal(cgroup, signal.SIGKILL)


def wait_empty_blocking(cgroup: Path, timeout: float) -> bool:
    """Blocking: until `cgroup` has no live process; False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    fd = os.open(cgroup / "cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI)  # cgroup.events signals a change with POLLPRI
        recheck = FIRST_RECHECK
        while populated(fd):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            poller.poll(min(left, recheck) * 1000)
            recheck = min(recheck * 2, EMPTY_RECHECK)
        return True
    finally:
        os.close(fd)


async def kill_and_wait_empty(cgroups: Cgroups, cgroup: Path, within: float) -> tuple[int, bool]:
    """Kill everything in `cgroup` and wait until it is empty (at most `within` seconds):
    how many processes it held, and whether it emptied.

    Waiting sleeps on cgroup.events (an epoll of our own for its POLLPRI, itself watched by
    trio), so it wakes as soon as the last member is gone. Without cgroup.kill the members
    are killed one by one, again at each wake-up, until none is left.
    """
    events = os.open(cgroup / "cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
    epoll = select.epoll(1)
    try:
        if not populated(events):
            return 0, True
        count = len(members(cgroup))
        kill_members(cgroups, cgroup)
        epoll.register(events, select.EPOLLPRI)
        recheck = FIRST_RECHECK
        with trio.move_on_after(within):
            while populated(events):
                if not cgroups.has_kill:
                    await trio.to_thread.run_sync(cgroups.signal, cgroup, signal.SIGKILL)
                with trio.move_on_after(recheck):
                    await trio.lowlevel.wait_readable(epoll.fileno())
                epoll.poll(0)
                recheck = min(recheck * 2, EMPTY_RECHECK)
            return count, True
        return count, False
    finally:
        epoll.close()
        os.close(events)
