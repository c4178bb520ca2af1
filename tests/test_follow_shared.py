"""Followers of one execution share its reads: each still gets every entry once, in order,
and one that hangs up mid-stream (perhaps while the shared read is its own) costs only itself.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from conftest import Daemon, metadata, write_workflow

from wfmctl import protocol
from wfmctl.protocol import LogEntry

LINES = 20_000
FOLLOWERS = 8

PRINTER = f"""
for i in range({LINES}):
    print(f"line {{i}}", flush=(i % 100 == 0))
"""


def follow_to_end(daemon: Daemon, handle: str, into: list[list[LogEntry]]) -> None:
    entries: list[LogEntry] = []
    with daemon.client() as client:
        for item in client.follow(handle):
            if isinstance(item, LogEntry):
                entries.append(item)
    into.append(entries)


def hang_up_after_first_batch(path: Path, handle: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(protocol.encode_frame(protocol.Follow(handle=handle)))
        sock.recv(1)  # the hello has arrived; the stream has started or is about to


def test_every_follower_gets_every_entry_once_in_order(daemon: Daemon, workflow_dir: Path) -> None:
    write_workflow(workflow_dir, "printer", PRINTER, metadata("printer"))
    with daemon.client() as client:
        handle = client.run("printer").handle
    results: list[list[LogEntry]] = []
    threads = [
        threading.Thread(target=follow_to_end, args=(daemon, handle, results))
        for _ in range(FOLLOWERS)
    ]
    quitters = [
        threading.Thread(target=hang_up_after_first_batch, args=(daemon.socket, handle))
        for _ in range(FOLLOWERS)
    ]
    for thread in [*threads, *quitters]:
        thread.start()
    for thread in [*threads, *quitters]:
        thread.join(timeout=120)
        assert not thread.is_alive()
    assert len(results) == FOLLOWERS
    for entries in results:
        assert [e.seq for e in entries] == list(range(LINES))
        assert [e.line for e in entries] == [f"line {i}" for i in range(LINES)]
    with daemon.client() as client:
        assert client.ping().storage_ok  # the daemon served on
