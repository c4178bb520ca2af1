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
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Final, Literal

import trio

from wfmd.runs import cgroupfs, process

log = logging.getLogger(__name__)

CONTAINMENT_ENV = "WFM_CONTAINMENT"
PROBE_ENV = "WFM_PROBE_ID"

Mode = Literal["cgroup", "process-scan"]
CGROUP: Final = "cgroup"
PROCESS_SCAN: Final = "process-scan"

# How often, in process-scan mode, the zombies of adopted orphans are reaped: a zombie holds
# only a pid meanwhile.
REAP_INTERVAL = 1.0

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
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        stdout: int,
        stderr: int,
        cwd: str | None = None,
    ) -> trio.Process:
        """Start the box's child (see `process.open_in_session`) inside the box.

        `env` must carry the box's tag (it is how process-scan finds the child's processes).
        """
        assert self._pgid is None, "one child per box"
        proc = await process.open_in_session(
            argv, env=env, stdout=stdout, stderr=stderr, cgroup=self.cgroup, cwd=cwd
        )
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

    async def kill(self, *, within: float = cgroupfs.KILL_TIMEOUT) -> int:
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
                    killed, emptied = await cgroupfs.kill_and_wait_empty(
                        cgroups, self.cgroup, within
                    )
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

    def __init__(self, mode: Mode, detail: str, cgroups: cgroupfs.Cgroups | None) -> None:
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
            cgroupfs.remove(box.cgroup)
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
    found = cgroupfs.find()
    if isinstance(found, str):
        return Containment(PROCESS_SCAN, found, None)
    try:
        started = time.perf_counter()
        cgroups = cgroupfs.self_test(found)
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
    return killed + await trio.to_thread.run_sync(process.kill_tagged, tag, cgroupfs.KILL_TIMEOUT)


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
            cgroupfs.remove(base)
    return killed


async def _end_leftover(cgroups: cgroupfs.Cgroups, cgroup: Path) -> int:
    try:
        killed, emptied = await cgroupfs.kill_and_wait_empty(cgroups, cgroup, cgroupfs.KILL_TIMEOUT)
        if not emptied:
            log.error("leftover cgroup %s still not empty after SIGKILL", cgroup)
        cgroupfs.remove(cgroup)
    except OSError as exc:
        log.error("cannot end the leftover cgroup %s: %s", cgroup, exc)
        return 0
    if killed:
        log.warning("killed %d process(es) left in %s", killed, cgroup)
    return killed
