"""Rescans are coalesced: a run of an unknown workflow id joins the scan in
flight or reuses one that just finished, an explicit `workflows --rescan` gets a scan that
started after it asked, and nothing else ever waits for a scan.

The workflow directory holds one workflow whose probe takes PROBE_SECONDS and counts its
calls in a file, so each test knows how many scans really ran.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Daemon, MakeDaemon, metadata, write_workflow

from wfmctl import WfmError
from wfmd.workflows.catalog import RESCAN_REUSE

PROBE_SECONDS = 2.0
TYPOS = 10

# Slack on top of the probe time for interpreter start-ups and a loaded 2-core machine.
# Serialised scans (the bug) take TYPOS probe times: far beyond any bound below.
SLACK = 2.5

# Typos sent one after another right after a scan: they share at most one more scan, even on
# a machine loaded enough to delay one of them past RESCAN_REUSE.
SEQUENTIAL_TYPOS = 5

# A request that must not wait for a scan answers within this long (it takes milliseconds).
QUICK = 1.0

SLOW_PROBE = """#!{python}
import json, sys, time
if sys.argv[1:] == ["--workflow-metadata"]:
    with open({counter!r}, "a") as f:
        f.write(f"{{time.time()}}\\n")
    time.sleep({seconds})
    print(json.dumps({{"id": "slow", "name": "slow", "description": "", "fields": []}}))
    sys.exit(0)
print("slow ran")
"""


def probe_starts(counter: Path) -> list[float]:
    """When each probe started (wall clock), in order."""
    return [float(t) for t in counter.read_text().split()] if counter.exists() else []


def probes(counter: Path) -> int:
    return len(probe_starts(counter))


@pytest.fixture
def slow_daemon(make_daemon: MakeDaemon, workflow_dir: Path, tmp_path: Path) -> Daemon:
    counter = tmp_path / "probes"
    path = workflow_dir / "slow"
    path.write_text(
        SLOW_PROBE.format(python=sys.executable, counter=str(counter), seconds=PROBE_SECONDS)
    )
    path.chmod(0o755)
    write_workflow(workflow_dir, "quick", "print('quick ran')\n", metadata("quick"))
    daemon = make_daemon()
    daemon.counter = counter  # type: ignore[attr-defined]
    daemon.start()
    assert probes(counter) == 1
    # Let the start-up scan age past the reuse window, so the first typo must scan.
    time.sleep(RESCAN_REUSE + 0.2)
    return daemon


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.monotonic()
    try:
        result: object = fn()
    except WfmError as exc:
        result = exc
    return time.monotonic() - started, result


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[tuple[float, object]]]:
    out: list[tuple[float, object]] = []
    thread = threading.Thread(target=lambda: out.append(timed(fn)), daemon=True)
    thread.start()
    return thread, out


def typo(daemon: Daemon, n: int) -> Callable[[], object]:
    def run() -> object:
        with daemon.client(timeout=120) as client:
            return client.run(f"no-such-workflow-{n}", {})

    return run


def test_concurrent_typos_share_one_scan_and_an_explicit_rescan_waits_for_a_new_one(
    slow_daemon: Daemon,
) -> None:
    daemon = slow_daemon
    counter: Path = daemon.counter  # type: ignore[attr-defined]
    started = time.monotonic()
    typos = [in_thread(typo(daemon, n)) for n in range(TYPOS)]
    # Asked once the typos' scan is under way: it must not be answered from that scan, which
    # started before it asked, but need not wait for more than the one after it.
    time.sleep(PROBE_SECONDS / 4)

    def rescan() -> object:
        with daemon.client(timeout=120) as client:
            return client.workflows(rescan=True)

    rescan_asked = time.time()
    rescan_thread, rescan_out = in_thread(rescan)
    for thread, _ in typos:
        thread.join(120)
    typos_took = time.monotonic() - started
    rescan_thread.join(120)
    rescan_took, reply = rescan_out[0]

    for _, out in typos:
        took, result = out[0]
        assert isinstance(result, WfmError) and result.code == "not_found", result
    assert not isinstance(reply, WfmError), reply
    print(
        f"\n{TYPOS} concurrent typos with one {PROBE_SECONDS:g} s probe: {typos_took:.2f} s; "
        f"a --rescan issued {PROBE_SECONDS / 4:g} s later waited {rescan_took:.2f} s; "
        f"probes run: {probes(counter) - 1}"
    )
    assert typos_took < 2 * PROBE_SECONDS + SLACK
    assert rescan_took < 3 * PROBE_SECONDS + SLACK
    # One scan for every typo, one more for the rescan that asked while it ran (just one, if
    # a loaded machine delayed the typos' scan until after the rescan asked).
    starts = probe_starts(counter)[1:]
    assert 1 <= len(starts) <= 2, starts
    # The rescan was answered by a scan that started after it asked.
    assert max(starts) >= rescan_asked, (starts, rescan_asked)

    # No scan that nobody asked for follows.
    time.sleep(PROBE_SECONDS / 2)
    assert probes(counter) == 1 + len(starts), probe_starts(counter)

    # A scan finished moments ago serves the next typo: no probe, no wait. (Long ago by now:
    # the first one scans.)
    waits = []
    timed(typo(daemon, 99))
    before = probes(counter)
    for n in range(SEQUENTIAL_TYPOS):
        took, result = timed(typo(daemon, 100 + n))
        assert isinstance(result, WfmError) and result.code == "not_found", result
        waits.append(took)
    print("typos right after: " + ", ".join(f"{w * 1000:.1f} ms" for w in waits))
    assert probes(counter) - before <= 1, waits
    assert sorted(waits)[-2] < QUICK, waits


def test_nothing_else_waits_for_a_scan(slow_daemon: Daemon) -> None:
    """Ping, status, history and runs of known workflows answer at once during a scan."""
    daemon = slow_daemon
    with daemon.client() as client:
        known = client.wait(client.run("quick", {}).handle)
    rescan_thread, _ = in_thread(typo(daemon, 0))
    time.sleep(PROBE_SECONDS / 4)
    waits: dict[str, float] = {}
    with daemon.client() as client:
        waits["ping"], _ = timed(client.ping)
        waits["status"], _ = timed(lambda: client.status(known.handle))
        waits["history"], _ = timed(lambda: client.history(limit=5))
        waits["workflows"], _ = timed(client.workflows)
        waits["run quick"], accepted = timed(lambda: client.run("quick", {}))
        assert not isinstance(accepted, WfmError), accepted
        still_scanning = rescan_thread.is_alive()
        ended = client.wait(accepted.handle)  # type: ignore[attr-defined]
    rescan_thread.join(60)
    print("\nduring a scan: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in waits.items()))
    assert still_scanning, "the scan ended before the requests were made: the test proves nothing"
    assert ended.status == "Completed", ended
    assert all(wait < QUICK for wait in waits.values()), waits


def test_a_workflow_installed_just_after_a_scan_runs_at_once(
    daemon: Daemon, workflow_dir: Path
) -> None:
    """A scan is reused only while no workflow directory has changed since it began."""
    with daemon.client() as client:
        client.workflows(rescan=True)  # a scan that has just finished
        write_workflow(workflow_dir, "fresh", "print('fresh ran')\n", metadata("fresh"))
        execution = client.wait(client.run("fresh").handle)
    assert execution.status == "Completed", execution
