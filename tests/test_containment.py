"""Containment: no process of an execution or of a metadata probe outlives it,
whatever it does to its session, process group or environment.

The escapes: `setsid env -i sleep`, `setsid env -u WFM_EXECUTION_ID sleep`, a changed
WFM_EXECUTION_ID, and a hopper that keeps double-forking into new sessions (with an empty
environment) until it is killed or 30 s have passed. Each escapee carries a unique marker in
its argv (`sleep 1000.<n>`, found in /proc/*/cmdline, since its environment may be wiped).
Every test first checks that its escapees really run, and the `escapees` fixture kills any
that survive, so a failing test leaves nothing behind.

Where the daemon reports process-scan containment (no usable cgroup2), only what that
mechanism promises is asserted: tagged escapees always die, untagged ones once the daemon
is idle (they come back to it as a subreaper).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from conftest import Daemon, MakeDaemon, alive, all_pids, metadata, wait_for_file, write_workflow

from wfmd.runs import cgroupfs, containment, process

# Generous for a loaded 2-core machine; a contained escapee is gone long before.
STATUS_TIMEOUT = 20.0

# Keeps double-forking into new sessions (argv: marker, stop file) every 20 ms, for at most
# 30 s: whatever happens to the test, it does not run on for long.
HOPPER = """
import os, sys, time
end = time.monotonic() + 30
while time.monotonic() < end and not os.path.exists(sys.argv[2]):
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    time.sleep(0.02)
"""

# Forks a child into a new session (`sleep <marker>`) every 2 ms, up to 1,000 of them or 30 s
# (argv: marker, stop file). Unlike the hopper, its children stay where they are, so scans
# of /proc repeated until they find nothing catch them all; one scan misses those born
# after it listed /proc.
BREEDER = """
import os, sys, time
end = time.monotonic() + 30
for _ in range(1000):
    if time.monotonic() > end or os.path.exists(sys.argv[2]):
        break
    if os.fork() == 0:
        os.setsid()
        os.execvp("sleep", ["sleep", sys.argv[1]])
    time.sleep(0.002)
time.sleep(30)
"""

_numbers = itertools.count(1)


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


# A hopper is a new process every 20 ms, and reading /proc takes milliseconds: a scan that
# lists the pids and then reads each one misses a hopper that hops meanwhile (measured: a
# third of such scans, up to 190 ms in a row). Listing /proc again for newcomers, until none
# come, did not miss once in 867 scans; a few such scans over a hop make sure.
SCANS = 3
SCAN_SPAN = 0.05


def scan_once(markers: tuple[str, ...]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {marker: set() for marker in markers}
    seen: set[int] = {os.getpid()}
    for _ in range(5):
        new = [pid for pid in all_pids() if pid not in seen]
        if not new:
            break
        seen.update(new)
        for pid in new:
            args = cmdline(pid)
            for marker in markers:
                if marker in args and alive(pid):  # zombies are dead already
                    found[marker].add(pid)
    return found


def marked(*markers: str) -> dict[str, list[int]]:
    """For each marker, the processes with it as an argument that were alive at some point
    of SCAN_SPAN seconds."""
    found: dict[str, set[int]] = {marker: set() for marker in markers}
    for _ in range(SCANS):
        for marker, pids in scan_once(markers).items():
            found[marker] |= pids
        time.sleep(SCAN_SPAN / SCANS)
    return {marker: sorted(pids) for marker, pids in found.items()}


class Escapees:
    """Unique markers for escapees, and the cleanup that kills any that survive."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.markers: list[str] = []
        self.stop = root / "stop-hopping"  # every hopper gives up once this exists

    def marker(self) -> str:
        marker = f"1000.{os.getpid()}{next(_numbers):04d}"
        self.markers.append(marker)
        return marker

    def alive(self, markers: dict[str, str]) -> dict[str, list[int]]:
        """The escapees among `markers` (by name) still alive, with their pids."""
        found = marked(*markers.values())
        return {name: found[marker] for name, marker in markers.items() if found[marker]}

    def kill_all(self) -> None:
        self.stop.touch()
        time.sleep(0.1)  # a hopper gives up within a hop
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = [pid for pids in marked(*self.markers).values() for pid in pids]
            if not found:
                return
            for pid in found:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def escapees(tmp_path: Path) -> Iterator[Escapees]:
    escapees = Escapees(tmp_path)
    yield escapees
    escapees.kill_all()


def escape_argvs(escapees: Escapees) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The four escapes (argv each) and their markers, by name."""
    markers = {name: escapees.marker() for name in ("env -i", "env -u", "changed id", "hopper")}
    argvs = {
        "env -i": ["setsid", "env", "-i", "sleep", markers["env -i"]],
        "env -u": ["setsid", "env", "-u", "WFM_EXECUTION_ID", "sleep", markers["env -u"]],
        "changed id": [
            "setsid",
            "env",
            "WFM_EXECUTION_ID=00000000-0000-0000-0000-000000000000",
            "sleep",
            markers["changed id"],
        ],
        "hopper": [
            "setsid",
            "env",
            "-i",
            sys.executable,
            "-c",
            HOPPER,
            markers["hopper"],
            str(escapees.stop),
        ],
    }
    return argvs, markers


def tagged_argvs(escapees: Escapees) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Escapes that leave the session but keep the environment (so WFM_EXECUTION_ID).

    No hopper: one that hops faster than a scan of /proc is beyond any scan (only a cgroup
    holds it), so process-scan containment does not promise to catch it.
    """
    markers = {name: escapees.marker() for name in ("tagged setsid", "tagged breeder")}
    argvs = {
        "tagged setsid": ["setsid", "sleep", markers["tagged setsid"]],
        "tagged breeder": [
            "setsid",
            sys.executable,
            "-c",
            BREEDER,
            markers["tagged breeder"],
            str(escapees.stop),
        ],
    }
    return argvs, markers


def escaper_body(argvs: dict[str, list[str]], ready: Path, *, then: str) -> str:
    """Start every escapee (they inherit stdout and stderr, as `cmd &` in a shell would),
    wait until each runs with its marker, write `ready`, then `then` ("exit" or "sleep")."""
    return textwrap.dedent(
        f"""
        import subprocess
        argvs = {argvs!r}

        def running(marker):
            for entry in os.listdir("/proc"):
                try:
                    with open(f"/proc/{{entry}}/cmdline", "rb") as f:
                        if marker.encode() in f.read().split(b"\\0"):
                            return True
                except OSError:
                    pass
            return False

        for argv in argvs.values():
            subprocess.Popen(argv)
        deadline = time.monotonic() + 15
        for argv in argvs.values():
            marker = next(a for a in argv if a.startswith("1000."))
            while not running(marker) and time.monotonic() < deadline:
                time.sleep(0.005)
        print("ready", flush=True)
        with open({str(ready)!r}, "w") as f:
            f.write("ready\\n")
        if {then!r} == "sleep":
            time.sleep(60)
        """
    )


def wait_status(daemon: Daemon, handle: str, status: str) -> None:
    deadline = time.monotonic() + STATUS_TIMEOUT
    with daemon.client() as client:
        while client.status(handle).status != status:
            assert time.monotonic() < deadline, f"{handle} not {status}"
            time.sleep(0.01)


def end_execution(daemon: Daemon, workflow_id: str, ready: Path, ending: str) -> str:
    """Run `workflow_id` and end it by `ending`; returns the ended execution's ended_by,
    checked against its status. Every escapee was seen running before the end."""
    with daemon.client() as client:
        timeout = 2.0 if ending == "timeout" else None
        handle = client.run(workflow_id, timeout=timeout).handle
        wait_for_file(ready)
        if ending == "cancel":
            wait_status(daemon, handle, "Running")
            client.cancel(handle)
        ended = client.wait(handle)
    expected = {"exit": "Completed", "cancel": "Cancelled", "timeout": "Failed"}[ending]
    assert ended.status == expected, ended
    assert ended.ended_by == {"exit": "exit", "cancel": "cancelled", "timeout": "timeout"}[ending]
    return handle


def cgroup_dirs(name: str) -> list[Path]:
    """Directories called `name` in the cgroup2 hierarchy."""
    found = cgroupfs.cgroup2_mount(Path("/proc/self/mountinfo").read_text())
    if found is None:
        return []
    return [Path(d) / name for d, names, _ in os.walk(found[0]) if name in names]


def leftover_bases(daemon: Daemon) -> list[Path]:
    assert daemon.proc is not None
    prefix = f"wfmd-{daemon.proc.pid}-"
    found = cgroupfs.cgroup2_mount(Path("/proc/self/mountinfo").read_text())
    if found is None:
        return []
    return [Path(d) / n for d, names, _ in os.walk(found[0]) for n in names if n.startswith(prefix)]


# --------------------------------------------------------------------------- executions


@pytest.mark.parametrize("ending", ["exit", "cancel", "timeout"])
def test_escapees_die_with_their_execution(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path, escapees: Escapees, ending: str
) -> None:
    argvs, markers = escape_argvs(escapees)
    ready = tmp_path / "ready"
    then = "exit" if ending == "exit" else "sleep"
    write_workflow(
        workflow_dir, "escaper", escaper_body(argvs, ready, then=then), metadata("escaper")
    )
    daemon = make_daemon(extra_args=["--cancel-grace", "1"]).start()
    with daemon.client() as client:
        mode = client.ping().containment
    assert mode in ("cgroup", "process-scan")
    assert f"containment: {mode}" in daemon.log()
    handle = end_execution(daemon, "escaper", ready, ending)
    # At once: the execution is recorded ended only once its box is empty.
    assert escapees.alive(markers) == {}
    if mode == "cgroup":
        assert cgroup_dirs(containment.execution_box(handle)) == []
    daemon.stop()
    assert leftover_bases(daemon) == []


def test_tag_scan_kills_tagged_escapees_while_other_executions_run(
    make_daemon: MakeDaemon,
    workflow_dir: Path,
    tmp_path: Path,
    escapees: Escapees,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """process-scan containment, forced: escapees that kept WFM_EXECUTION_ID die with their
    execution even while another one runs; those that dropped it die once the daemon is
    idle (they were adopted by it), and their zombies are reaped."""
    monkeypatch.setenv(containment.CONTAINMENT_ENV, containment.PROCESS_SCAN)
    tagged, tagged_markers = tagged_argvs(escapees)
    untagged, untagged_markers = escape_argvs(escapees)
    ready = tmp_path / "ready"
    body = escaper_body({**tagged, **untagged}, ready, then="exit")
    write_workflow(workflow_dir, "escaper", body, metadata("escaper"))
    write_workflow(workflow_dir, "sleeper", "time.sleep(60)\n", metadata("sleeper"))
    daemon = make_daemon(extra_args=["--cancel-grace", "1"]).start()
    assert daemon.proc is not None
    with daemon.client() as client:
        assert client.ping().containment == "process-scan"
        assert "containment: process-scan (WFM_CONTAINMENT=process-scan)" in daemon.log()
        sleeper = client.run("sleeper").handle
        wait_status(daemon, sleeper, "Running")
        end_execution(daemon, "escaper", ready, "exit")
        assert escapees.alive(tagged_markers) == {}
        client.cancel(sleeper)
        assert client.wait(sleeper).status == "Cancelled"
    assert escapees.alive(untagged_markers) == {}
    deadline = time.monotonic() + containment.REAP_INTERVAL + 5
    while zombies := zombie_children(daemon.proc.pid):
        assert time.monotonic() < deadline, f"unreaped zombies of the daemon: {zombies}"
        time.sleep(0.05)


@pytest.mark.parametrize("ending", ["exit", "cancel", "timeout"])
def test_tag_scan_alone_kills_tagged_escapees(
    make_daemon: MakeDaemon,
    workflow_dir: Path,
    tmp_path: Path,
    escapees: Escapees,
    monkeypatch: pytest.MonkeyPatch,
    ending: str,
) -> None:
    monkeypatch.setenv(containment.CONTAINMENT_ENV, containment.PROCESS_SCAN)
    argvs, markers = tagged_argvs(escapees)
    ready = tmp_path / "ready"
    then = "exit" if ending == "exit" else "sleep"
    write_workflow(
        workflow_dir, "escaper", escaper_body(argvs, ready, then=then), metadata("escaper")
    )
    daemon = make_daemon(extra_args=["--cancel-grace", "1"]).start()
    end_execution(daemon, "escaper", ready, ending)
    assert escapees.alive(markers) == {}


def zombie_children(pid: int) -> list[int]:
    zombies = []
    for child in all_pids():
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            zombies.append(child)
    return zombies


# --------------------------------------------------------------------------- recovery


def test_escapees_of_a_killed_daemon_die_at_its_restart(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path, escapees: Escapees
) -> None:
    argvs, markers = escape_argvs(escapees)
    tagged, tagged_markers = tagged_argvs(escapees)
    ready = tmp_path / "ready"
    body = escaper_body({**argvs, **tagged}, ready, then="sleep")
    write_workflow(workflow_dir, "escaper", body, metadata("escaper"))
    daemon = make_daemon().start()
    with daemon.client() as client:
        mode = client.ping().containment
        handle = client.run("escaper").handle
    wait_for_file(ready)
    everyone = {**markers, **tagged_markers}
    assert escapees.alive(everyone).keys() == everyone.keys()
    # (Any daemon started from now on in the same cgroup may end them: no check in between.)
    daemon.kill9()
    daemon.start()
    with daemon.client() as client:
        ended = client.status(handle)
    assert ended.status == "Failed" and ended.ended_by == "daemon_died", ended
    assert escapees.alive(tagged_markers) == {}
    if mode == "cgroup":  # process-scan cannot find untagged orphans of a dead daemon
        assert escapees.alive(markers) == {}
        assert cgroup_dirs(containment.execution_box(handle)) == []


def test_another_daemon_ends_what_a_dead_daemon_left(
    make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path, escapees: Escapees
) -> None:
    """The cgroups of a daemon that died are ended by the next daemon to start in the same
    cgroup, whatever its database: nobody supervises them any more."""
    argvs, markers = escape_argvs(escapees)
    ready = tmp_path / "ready"
    write_workflow(
        workflow_dir, "escaper", escaper_body(argvs, ready, then="sleep"), metadata("escaper")
    )
    first = make_daemon().start()
    with first.client() as client:
        if client.ping().containment != "cgroup":
            pytest.skip("process-scan cannot find untagged orphans of a dead daemon")
        client.run("escaper")
    wait_for_file(ready)
    assert escapees.alive(markers).keys() == markers.keys()
    first.kill9()
    (tmp_path / "second").mkdir()
    make_daemon(root=tmp_path / "second").start()
    # (Another daemon started meanwhile on this machine may have been quicker to do it.)
    assert escapees.alive(markers) == {}
    assert leftover_bases(first) == []


# --------------------------------------------------------------------------- probes


@pytest.mark.parametrize("forced", [None, containment.PROCESS_SCAN])
def test_probe_escapees_die_with_the_probe(
    make_daemon: MakeDaemon,
    workflow_dir: Path,
    escapees: Escapees,
    monkeypatch: pytest.MonkeyPatch,
    forced: str | None,
) -> None:
    """A probe's escapees die with it, at start-up, on rescan and on SIGHUP; one left holding
    the probe's stdout does not make it time out."""
    if forced:
        monkeypatch.setenv(containment.CONTAINMENT_ENV, forced)
    markers = {"holds stdout": escapees.marker(), "env -i": escapees.marker()}
    path = workflow_dir / "probe_escaper"
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, subprocess, sys\n"
        "if sys.argv[1:] == ['--workflow-metadata']:\n"
        f"    subprocess.Popen(['setsid', 'sleep', {markers['holds stdout']!r}])\n"
        f"    subprocess.Popen(['setsid', 'env', '-i', 'sleep', {markers['env -i']!r}],\n"
        "                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        f"    print(json.dumps({metadata('probe_escaper')!r}), flush=True)\n"
    )
    path.chmod(0o755)
    daemon = make_daemon().start()
    assert daemon.proc is not None
    with daemon.client() as client:
        listed = client.workflows()
        assert "probe_escaper" in {w.id for w in listed.workflows}, listed.skipped
        assert escapees.alive(markers) == {}
        listed = client.workflows(rescan=True)
        assert "probe_escaper" in {w.id for w in listed.workflows}, listed.skipped
        assert escapees.alive(markers) == {}
    scans = daemon.log().count(" workflow(s) in ")
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + STATUS_TIMEOUT
    while daemon.log().count(" workflow(s) in ") == scans:
        assert time.monotonic() < deadline, "no rescan after SIGHUP"
        time.sleep(0.02)
    assert escapees.alive(markers) == {}


# --------------------------------------------------------------------------- in process


async def test_a_cgroup_without_cgroup_kill_is_emptied_member_by_member(
    escapees: Escapees,
) -> None:
    """The fallback for kernels before 5.14 (freeze, then SIGKILL each member until none is
    left), against a hopper, with and without cgroup.freeze."""
    found = await containment.current()
    if found.cgroups is None:
        pytest.skip(f"no cgroup containment here: {found.detail}")
    for freeze in (True, False):
        cgroups = cgroupfs.Cgroups(
            parent=found.cgroups.parent,
            base=found.cgroups.base,
            parent_in_proc=found.cgroups.parent_in_proc,
            has_kill=False,
            has_freeze=freeze,
        )
        cgroup = cgroups.create(f"test-no-kill-{freeze}")
        marker = escapees.marker()
        argv = [sys.executable, "-c", HOPPER, marker, str(escapees.stop)]
        proc = await process.open_in_session(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cgroup=cgroup
        )
        with trio.fail_after(STATUS_TIMEOUT):
            await proc.wait()  # its first fork has left: the hopper hops on
            await trio.sleep(0.2)
        assert marked(marker)[marker]
        with trio.fail_after(STATUS_TIMEOUT):
            killed, emptied = await cgroupfs.kill_and_wait_empty(cgroups, cgroup, 10.0)
        assert emptied and killed >= 1
        assert marked(marker)[marker] == []
        cgroupfs.remove(cgroup)
    cgroupfs.remove(found.cgroups.base)


REAPER_RACE = """
import os, subprocess, sys, trio
from wfmd.runs import process

async def main():
    assert process.become_subreaper()
    async with trio.open_nursery() as nursery:
        async def reaper():
            while True:
                await process.reap_adopted()
                await trio.sleep(0)
        nursery.start_soon(reaper)
        for i in range(300):
            # Exits at once with 7, leaving an orphan that exits a moment later: adopted.
            proc = await process.open_in_session(
                ["/bin/sh", "-c", "sleep 0.01 & exit 7"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert await proc.wait() == 7, (i, proc.returncode)
        await trio.sleep(0.5)
        await process.reap_adopted()
        nursery.cancel_scope.cancel()
    zombies = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            zombies.append(entry)
    assert not zombies, zombies
    print("ok")

trio.run(main)
"""


def test_reaping_adopted_orphans_never_steals_a_spawned_childs_status() -> None:
    """As a subreaper, the daemon reaps orphans it adopts, while trio waits for its own
    children by pid: a blanket waitpid(-1) would take their exit status (trio would then
    report 0). Run where the reaper loops as fast as it can."""
    done = subprocess.run(
        [sys.executable, "-c", REAPER_RACE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
