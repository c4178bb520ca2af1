"""Containment: every execution and every metadata probe runs in a box, and when the box is
ended, nothing that was started in it is left alive.

- **cgroup**, where the daemon may create cgroups (cgroup v2 as root, or in a systemd service
  with `Delegate=yes`): a box is a cgroup of its own,
  `<the daemon's cgroup>/wfmd-<pid>-<start time>/wfm-<handle>` (`probe-<id>` for a probe).
  The child joins it before it execs, so everything it ever starts is inside, whatever it
  does with its session, process group or environment. Ending a box writes `cgroup.kill`
  (the kernel kills every member, forks in flight included), waits for `cgroup.events` to
  say `populated 0`, and removes the directory.
- **process-scan**, where no cgroup can be created (no cgroup2, no delegation) or
  `WFM_CONTAINMENT=process-scan` says so: a box is a tag in the environment
  (`WFM_EXECUTION_ID`, `WFM_PROBE_ID`). Ending it kills the process group, then every process
  carrying the tag, scanning /proc again until a scan finds none. The daemon is a child
  subreaper, so orphans come back to it and are reaped; and when the last open box is ended,
  every process below the daemon but the children it spawned itself is a leftover (whatever
  its environment) and is killed too. A process that hops to a new pid faster than a scan
  reads /proc, or that drops its tag while other boxes are open, may still escape: only a
  cgroup holds everything.

`setup` chooses, tests the choice for real (a child joins a cgroup, is killed, the cgroup
empties) and logs it; `ping` reports it (`Pong.containment`). After a crash, recovery kills
and removes the cgroups of daemons that are no longer alive (`kill_leftovers`,
`sweep_dead_daemons`), and scans for the tag as well.

The daemon's own cgroup must not get controllers enabled for its children: none are needed
here (only cgroup.procs, cgroup.kill, cgroup.events), so it never has to move itself into a
leaf of its own, as cgroup v2's "no internal processes" rule would otherwise require.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final, Literal

import trio

from wfmd.runs import process

log = logging.getLogger(__name__)

CONTAINMENT_ENV = "WFM_CONTAINMENT"
PROBE_ENV = "WFM_PROBE_ID"

Mode = Literal["cgroup", "process-scan"]
CGROUP: Final = "cgroup"
PROCESS_SCAN: Final = "process-scan"

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

# How often, in process-scan mode, the zombies of adopted orphans are reaped: a zombie holds
# only a pid meanwhile.
REAP_INTERVAL = 1.0

# The self-test's child: the smallest program that waits to be killed.
SELF_TEST_ARGV = ("/bin/sh", "-c", "read line")

BASE_NAME = re.compile(r"wfmd-(\d+)-(\d+)")


# --------------------------------------------------------------------------- cgroup files


def _read(path: Path) -> str:
    return path.read_text()


def _populated(events_fd: int) -> bool:
    return b"populated 1" in os.pread(events_fd, 4096, 0)


def _members(cgroup: Path) -> list[int]:
    """Pids in `cgroup` and the cgroups below it (a workflow run as root may make some)."""
    pids = []
    for directory, _, _ in os.walk(cgroup):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in _read(Path(directory) / "cgroup.procs").split()]
    return pids


def _remove(cgroup: Path) -> None:
    """rmdir `cgroup` and the cgroups below it, deepest first (their files go with them)."""
    for directory, _, _ in os.walk(cgroup, topdown=False):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(directory)


def _start_time(pid: int) -> int | None:
    """A process's start time (clock ticks since boot): with its pid, names it for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat.rsplit(b")", 1)[1].split()[19])


def _unescape(field: str) -> str:
    """A mountinfo path: spaces and the like are written as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def _cgroup2_mount(mountinfo: str) -> tuple[Path, str] | None:
    """The first cgroup2 mount: its mount point and the cgroup path at its root."""
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" in fields and fields[fields.index("-") + 1] == "cgroup2":
            return Path(_unescape(fields[4])), _unescape(fields[3])
    return None


def _own_cgroup(proc_cgroup: str) -> str | None:
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
            line = _own_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
        except OSError:
            return False
        return line is not None and (line == inside or line.startswith(inside + "/"))

    def signal(self, cgroup: Path, sig: int, *, except_group: int | None = None) -> int:
        """Blocking: send `sig` to every member of `cgroup` but those of process group
        `except_group` (see `process.signal_tagged`); returns how many."""

        def still_ours(pid: int) -> bool:
            return self.is_member(pid, cgroup) and not process.in_group(pid, except_group)

        return sum(process.signal_if(pid, sig, still_ours) for pid in _members(cgroup))

    def dead_bases(self) -> list[Path]:
        """Bases of daemons that no longer run (beside ours, in our own cgroup)."""
        dead = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.parent):
                match = BASE_NAME.fullmatch(entry.name)
                if match is None or entry.path == str(self.base) or not entry.is_dir():
                    continue
                if _start_time(int(match[1])) != int(match[2]):
                    dead.append(Path(entry.path))
        return dead


def _find_cgroups() -> Cgroups | str:
    """Blocking: where boxes would go, or why there is nowhere."""
    try:
        mount = _cgroup2_mount(_read(Path("/proc/self/mountinfo")))
        own = _own_cgroup(_read(Path("/proc/self/cgroup")))
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
    name = f"wfmd-{pid}-{_start_time(pid)}"
    return Cgroups(
        parent=parent,
        base=parent / name,
        parent_in_proc=own,
        has_kill=False,  # known once the self-test has made a cgroup
        has_freeze=False,
    )


def _self_test(cgroups: Cgroups) -> Cgroups:
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
                if _members(test) != [child.pid]:
                    raise OSError(errno.EPERM, "the child did not join its cgroup")
                _kill_members(cgroups, test)
                if not _wait_empty_blocking(test, KILL_TIMEOUT):
                    raise OSError(errno.ETIMEDOUT, "the killed child's cgroup did not empty")
            finally:
                child.kill()  # not reaped yet, so the pid is still its own
    finally:
        _remove(test)
        with contextlib.suppress(OSError):
            os.rmdir(cgroups.base)
    return cgroups


def _kill_members(cgroups: Cgroups, cgroup: Path) -> None:
    """Blocking: start killing everything in `cgroup` (the kernel finishes it)."""
    if cgroups.has_kill:
        (cgroup / "cgroup.kill").write_text("1")
        return
    if cgroups.has_freeze:  # a frozen process cannot fork; SIGKILL still ends it
        with contextlib.suppress(OSError):
            (cgroup / "cgroup.freeze").write_text("1")
    cgroups.signal(cgroup, signal.SIGKILL)


def _wait_empty_blocking(cgroup: Path, timeout: float) -> bool:
    """Blocking: until `cgroup` has no live process; False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    fd = os.open(cgroup / "cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI)  # cgroup.events signals a change with POLLPRI
        recheck = FIRST_RECHECK
        while _populated(fd):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            poller.poll(min(left, recheck) * 1000)
            recheck = min(recheck * 2, EMPTY_RECHECK)
        return True
    finally:
        os.close(fd)


async def _kill_cgroup(cgroups: Cgroups, cgroup: Path, within: float) -> tuple[int, bool]:
    """Kill everything in `cgroup` and wait until it is empty (at most `within` seconds):
    how many processes it held, and whether it emptied.

    Waiting sleeps on cgroup.events (an epoll of our own for its POLLPRI, itself watched by
    trio), so it wakes as soon as the last member is gone. Without cgroup.kill the members
    are killed one by one, again at each wake-up, until none is left.
    """
    events = os.open(cgroup / "cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
    epoll = select.epoll(1)
    try:
        if not _populated(events):
            return 0, True
        count = len(_members(cgroup))
        _kill_members(cgroups, cgroup)
        epoll.register(events, select.EPOLLPRI)
        recheck = FIRST_RECHECK
        with trio.move_on_after(within):
            while _populated(events):
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


# --------------------------------------------------------------------------- boxes


class Box:
    """The processes of one execution or probe: spawn into it, signal it, end it.

    Open one with `open_box`, and always `close` it (which ends it first).
    """

    def __init__(
        self, containment: Containment, name: str, tag: bytes, cgroup: Path | None
    ) -> None:
        self._containment = containment
        self.name = name
        self.tag = tag
        self.cgroup = cgroup  # None: this box is found by its tag
        self._pgid: int | None = None
        self._ended = False  # killed and confirmed empty: nothing can appear in it again
        self._closed = False

    async def spawn(
        self, argv: Sequence[str], *, env: dict[str, str], stdout: int, stderr: int
    ) -> trio.Process:
        """Start the box's child (see `process.open_in_session`) inside the box.

        `env` must carry the box's tag (it is how process-scan finds the child's processes).
        """
        assert self._pgid is None, "one child per box"
        procs = None
        if self.cgroup is not None:
            procs = os.open(self.cgroup / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        try:
            proc = await process.open_in_session(
                argv, env=env, stdout=stdout, stderr=stderr, cgroup_procs=procs
            )
        finally:
            if procs is not None:
                os.close(procs)
        self._pgid = proc.pid
        return proc

    async def signal(self, sig: int) -> None:
        """Send `sig` to every process in the box, once: its child's group, then every
        process that left the group."""
        pgid = self._pgid
        if pgid is not None:
            process.kill_group(pgid, sig)
        cgroups = self._containment.cgroups
        if self.cgroup is not None and cgroups is not None:
            signal_all = partial(cgroups.signal, self.cgroup, sig, except_group=pgid)
        else:
            signal_all = partial(process.signal_tagged, self.tag, sig, except_group=pgid)
        await trio.to_thread.run_sync(signal_all)

    async def kill(self, *, within: float = KILL_TIMEOUT) -> int:
        """SIGKILL every process in the box and wait until none is left (at most `within`
        seconds, then log it); returns how many were killed.

        Cancellation: shielded; whatever the box held is dead when this returns.
        """
        if self._ended:
            return 0
        with trio.CancelScope(shield=True):
            if self._pgid is not None:
                process.kill_group(self._pgid, signal.SIGKILL)
            cgroups = self._containment.cgroups
            killed, emptied = 0, False
            if self.cgroup is not None and cgroups is not None:
                try:
                    killed, emptied = await _kill_cgroup(cgroups, self.cgroup, within)
                except OSError as exc:  # someone else's doing: still find them by their tag
                    log.error("%s: cannot kill the cgroup %s: %s", self.name, self.cgroup, exc)
                    self.cgroup = None
            if self.cgroup is None:
                killed = await trio.to_thread.run_sync(process.kill_tagged, self.tag, within)
                emptied = True  # as far as a scan can tell; kill_tagged logs otherwise
                if self._containment.adopting and self._containment.open_boxes == 1:
                    # No other box is open: any orphan we adopted is a leftover of this one
                    # or of one ended before it, whatever its environment says.
                    killed += await process.kill_adopted(within, while_=self._alone)
            if emptied:
                self._ended = True
            else:
                log.error("%s: processes still alive %g s after SIGKILL", self.name, within)
        return killed

    def _alone(self) -> bool:
        return self._containment.open_boxes == 1 and not self._closed

    async def close(self) -> None:
        """End the box (see `kill`) and remove its cgroup. Idempotent.

        Cancellation: shielded, like `kill`.
        """
        if self._closed:
            return
        await self.kill()
        self._closed = True
        self._containment.box_closed(self)


class Containment:
    """The mechanism in force, and the boxes open."""

    def __init__(self, mode: Mode, detail: str, cgroups: Cgroups | None) -> None:
        self.mode: Mode = mode
        self.detail = detail  # for the log: where the cgroups go, or why there are none
        self.cgroups = cgroups
        self.adopting = False  # the daemon is a child subreaper (process-scan only)
        self.open_boxes = 0

    def open_box(self, name: str, tag_env: str, tag_value: str) -> Box:
        """A box named `name` (unique among this daemon's); its processes carry
        `tag_env=tag_value` in their environment."""
        cgroup = None
        if self.cgroups is not None:
            try:
                cgroup = self.cgroups.create(name)
            except OSError as exc:
                log.error(
                    "cannot create a cgroup for %s, finding its processes by %s: %s",
                    name,
                    tag_env,
                    exc,
                )
        self.open_boxes += 1
        return Box(self, name, process.tag_of(tag_env, tag_value), cgroup)

    def box_closed(self, box: Box) -> None:
        self.open_boxes -= 1
        if box.cgroup is None or self.cgroups is None:
            return
        try:
            _remove(box.cgroup)
        except OSError as exc:
            log.error("cannot remove the cgroup %s: %s", box.cgroup, exc)
        if self.open_boxes == 0:  # a daemon that stops now leaves nothing behind
            with contextlib.suppress(OSError):
                os.rmdir(self.cgroups.base)


# --------------------------------------------------------------------------- the one in force

_current: Containment | None = None
_choosing = trio.Lock()


def mode() -> Mode | None:
    """The containment in force, or None before anything needed one."""
    return None if _current is None else _current.mode


async def current() -> Containment:
    """The containment in force, chosen (and logged) by the first call: see `setup`."""
    return _current if _current is not None else await setup()


async def setup(*, adopt_orphans: bool = False) -> Containment:
    """Choose the containment (once), log it, and return it.

    `adopt_orphans` (the daemon, not a library user): in process-scan mode, become a child
    subreaper; the caller must then run `reap_adopted_forever`.
    """
    global _current
    async with _choosing:
        if _current is None:
            _current = await trio.to_thread.run_sync(_choose)
            level = logging.INFO if _current.cgroups or _forced() else logging.WARNING
            log.log(level, "containment: %s (%s)", _current.mode, _current.detail)
    if adopt_orphans and _current.mode == PROCESS_SCAN and not _current.adopting:
        _current.adopting = process.become_subreaper()
    return _current


def _forced() -> bool:
    return os.environ.get(CONTAINMENT_ENV, "").strip().lower() == PROCESS_SCAN


def _choose() -> Containment:
    """Blocking: cgroups if they work here, else the process scan."""
    wanted = os.environ.get(CONTAINMENT_ENV, "").strip().lower()
    if wanted == PROCESS_SCAN:
        return Containment(PROCESS_SCAN, f"{CONTAINMENT_ENV}={PROCESS_SCAN}", None)
    if wanted not in ("", "auto", CGROUP):
        log.warning(
            "%s=%s is neither %s nor %s: ignored", CONTAINMENT_ENV, wanted, CGROUP, PROCESS_SCAN
        )
    found = _find_cgroups()
    if isinstance(found, str):
        return Containment(PROCESS_SCAN, found, None)
    try:
        started = time.perf_counter()
        cgroups = _self_test(found)
        took = time.perf_counter() - started
    except (OSError, subprocess.SubprocessError) as exc:
        why = getattr(exc, "strerror", None) or exc
        return Containment(PROCESS_SCAN, f"cannot use a cgroup in {found.parent}: {why}", None)
    how = "cgroup.kill" if cgroups.has_kill else "no cgroup.kill: members killed one by one"
    detail = f"{cgroups.base}, {how}; self-test {took * 1000:.1f} ms"
    return Containment(CGROUP, detail, cgroups)


def execution_box(handle: str) -> str:
    """The name of an execution's box (its cgroup's directory name)."""
    return f"wfm-{handle}"


async def open_box(name: str, tag_env: str, tag_value: str) -> Box:
    """`Containment.open_box` on the containment in force."""
    return (await current()).open_box(name, tag_env, tag_value)


async def reap_adopted_forever() -> None:
    """Reap adopted orphans' zombies every REAP_INTERVAL (process-scan mode, as subreaper)."""
    while True:
        await trio.sleep(REAP_INTERVAL)
        await process.reap_adopted()


# --------------------------------------------------------------------------- after a crash


async def kill_leftovers(tag_env: str, tag_value: str, name: str) -> int:
    """Kill what is left of a box of a daemon that died: its cgroup (named `name`) in the
    base of any daemon no longer alive, and every process carrying its tag. Returns how many
    processes were killed."""
    containment = await current()
    killed = 0
    cgroups = containment.cgroups
    if cgroups is not None:
        for base in await trio.to_thread.run_sync(cgroups.dead_bases):
            cgroup = base / name
            if cgroup.is_dir():
                killed += await _end_leftover(cgroups, cgroup)
    # Also in cgroup mode: the dead daemon may have run with process-scan.
    tag = process.tag_of(tag_env, tag_value)
    return killed + await trio.to_thread.run_sync(process.kill_tagged, tag, KILL_TIMEOUT)


async def sweep_dead_daemons() -> int:
    """Kill and remove every cgroup left by daemons no longer alive (their probes, and
    executions of other databases: nobody supervises them now). Returns how many processes
    were killed."""
    containment = await current()
    cgroups = containment.cgroups
    if cgroups is None:
        return 0
    killed = 0
    for base in await trio.to_thread.run_sync(cgroups.dead_bases):
        with contextlib.suppress(OSError):
            for entry in os.scandir(base):
                if entry.is_dir():
                    killed += await _end_leftover(cgroups, Path(entry.path))
        with contextlib.suppress(OSError):
            _remove(base)
    return killed


async def _end_leftover(cgroups: Cgroups, cgroup: Path) -> int:
    try:
        killed, emptied = await _kill_cgroup(cgroups, cgroup, KILL_TIMEOUT)
        if not emptied:
            log.error("leftover cgroup %s still not empty after SIGKILL", cgroup)
        _remove(cgroup)
    except OSError as exc:
        log.error("cannot end the leftover cgroup %s: %s", cgroup, exc)
        return 0
    if killed:
        log.warning("killed %d process(es) left in %s", killed, cgroup)
    return killed
