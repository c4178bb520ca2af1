"""Clients that misbehave must cost only themselves: one that connects and never speaks, one
that follows a chatty execution and never reads, and a thousand connections at once. Other
clients stay fast, the daemon's memory stays bounded, and no output is lost.

The raw connections speak the protocol by hand (stdlib `socket` + the shared framing).
"""

from __future__ import annotations

import contextlib
import fcntl
import resource
import socket
import statistics
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    Daemon,
    MakeDaemon,
    metadata,
    proc_status,
    raw_connect,
    recv_frame,
    write_workflow,
)

from wfmctl import protocol
from wfmctl.protocol import Finished, Follow, Hello, LogBatch

# Bounds for other clients while someone misbehaves.
IDLE_PING_MAX = 1.0  # seconds, any single ping while silent clients hang around
BUSY_P99 = 0.200  # seconds, p99 of ping/status while a follower is stuck
MAX_RSS_BYTES = 150 * 1024 * 1024

# The chatty workflow: 500,000 lines of 100 bytes (50 MB), as fast as Python prints them.
CHATTY_LINES = 500_000
CHATTY_BODY = f"""
pad = "y" * 89
out = sys.stdout
for n in range(0, {CHATTY_LINES}, 1000):
    out.write("".join(f"{{i:09d}} {{pad}}\\n" for i in range(n, n + 1000)))
out.flush()
"""

CONNECTIONS = 1_000


def open_files_limit(pid: int) -> tuple[int, int]:
    """(soft, hard) "Max open files" of process `pid`."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open files limit for pid {pid}")


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


@contextlib.contextmanager
def open_files_soft_limit(wanted: int) -> Iterator[None]:
    """Set this process's soft limit on open files (children inherit it) for a while."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --------------------------------------------------------------------------- silent clients


def test_clients_that_never_send_do_not_hold_up_others(daemon: Daemon) -> None:
    stalled = []
    try:
        # Connected, never reads its hello nor sends.
        stalled.append(raw_connect(daemon.socket))
        # Reads the hello, then sends half a header.
        sock = raw_connect(daemon.socket)
        assert isinstance(recv_frame(sock), Hello)
        sock.sendall(b"\0\0")
        stalled.append(sock)
        # Announces a 1000-byte body and sends 10 bytes of it.
        sock = raw_connect(daemon.socket)
        assert isinstance(recv_frame(sock), Hello)
        sock.sendall(protocol.HEADER.pack(1000) + b"\x81" * 10)
        stalled.append(sock)

        latencies = []
        with daemon.client(timeout=5) as client:
            for _ in range(100):
                started = time.monotonic()
                client.ping()
                latencies.append(time.monotonic() - started)
        for _ in range(20):  # fresh connections too: accepting is not blocked
            started = time.monotonic()
            with daemon.client(timeout=5) as client:
                client.ping()
            latencies.append(time.monotonic() - started)
        with daemon.client(timeout=5) as client:
            accepted = client.run("echo_params", {"message": "still here"})
            assert client.wait(accepted.handle).status == "Completed"
        assert max(latencies) < IDLE_PING_MAX, max(latencies)
        # The stalled connections are merely waiting: still open, nothing sent to them
        # beyond the hello.
        for sock in stalled[1:]:
            sock.setblocking(False)
            # Nothing to read: a closed connection would read b"", a reply would read a byte.
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        for sock in stalled:
            sock.close()
    with daemon.client(timeout=5) as client:
        assert client.ping().running == 0
    print(
        f"\nsilent clients: ping median {statistics.median(latencies) * 1e3:.2f} ms, "
        f"max {max(latencies) * 1e3:.2f} ms over {len(latencies)}"
    )


# --------------------------------------------------------------------------- stuck follower


def test_follower_that_never_reads_costs_only_itself(
    make_daemon: MakeDaemon, workflow_dir: Path
) -> None:
    write_workflow(workflow_dir, "chatty", CHATTY_BODY, metadata("chatty"))
    daemon = make_daemon().start()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    latencies: list[float] = []
    peak_rss = 0
    with daemon.client(timeout=5) as client:
        accepted = client.run("chatty")
        handle = accepted.handle
        # The stuck follower: asks for everything, then never reads a byte.
        stuck = raw_connect(daemon.socket, rcvbuf=4096)
        try:
            assert isinstance(recv_frame(stuck), Hello)
            stuck.sendall(protocol.encode_frame(Follow(handle=handle)))
            started = time.monotonic()
            ended_at: float | None = None
            # Measure through the whole run and a while after it, while the follower is stuck.
            while ended_at is None or time.monotonic() - ended_at < 1.0:
                assert time.monotonic() - started < 60, "the chatty workflow did not end"
                t0 = time.monotonic()
                client.ping()
                t1 = time.monotonic()
                status = client.status(handle)
                t2 = time.monotonic()
                latencies += [t1 - t0, t2 - t1]
                peak_rss = max(peak_rss, proc_status(pid, "VmRSS"))
                if ended_at is None and status.status != "Running" and status.ended_at:
                    ended_at = time.monotonic()
                time.sleep(0.005)
            run_time = ended_at - started
            final = client.status(handle)
            assert final.status == "Completed", final
            assert final.log_count == CHATTY_LINES
            (last,) = client.logs(handle, tail=1).entries
            assert (last.seq, last.line[:9]) == (CHATTY_LINES - 1, f"{CHATTY_LINES - 1:09d}")
            assert daemon.proc.poll() is None
            # Nothing piled up for the follower beyond a socket buffer's worth.
            queued = int.from_bytes(
                fcntl.ioctl(stuck.fileno(), termios.FIONREAD, b"\0\0\0\0"), sys.byteorder
            )
            assert queued < 4 * 1024 * 1024, queued

            # The follower, once it finally reads, still gets everything, in order, once.
            stuck.settimeout(30)
            next_seq = 0
            while True:
                frame = recv_frame(stuck)
                if isinstance(frame, Finished):
                    assert frame.execution.status == "Completed"
                    break
                assert isinstance(frame, LogBatch), frame
                assert [e.seq for e in frame.entries] == list(
                    range(next_seq, next_seq + len(frame.entries))
                )
                next_seq += len(frame.entries)
            assert next_seq == CHATTY_LINES
        finally:
            stuck.close()
        assert client.ping().running == 0
    percentile = p99(latencies)
    assert percentile < BUSY_P99, (percentile, max(latencies))
    assert peak_rss < MAX_RSS_BYTES, peak_rss
    print(
        f"\nstuck follower: {CHATTY_LINES} lines in {run_time:.2f}s; {len(latencies)} "
        f"ping/status round-trips, median {statistics.median(latencies) * 1e3:.2f} ms, "
        f"p99 {percentile * 1e3:.2f} ms, max {max(latencies) * 1e3:.2f} ms; "
        f"daemon peak RSS {peak_rss / 1e6:.1f} MB"
    )


# --------------------------------------------------------------------------- many clients


def test_a_thousand_connections_at_once(make_daemon: MakeDaemon) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    daemon = make_daemon()
    # Start the daemon with the common soft limit of 1024, below what 1,000 clients need: it
    # must raise its own limit at start-up.
    with open_files_soft_limit(1024):
        daemon.start()
    assert daemon.proc is not None
    soft_after, hard_after = open_files_limit(daemon.proc.pid)
    expected = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    assert (soft_after, hard_after) == (expected, hard), (soft_after, hard_after)
    assert soft_after > CONNECTIONS + 64

    held: list[socket.socket] = []
    started = time.monotonic()
    # This process needs a descriptor per connection too.
    with open_files_soft_limit(
        max(CONNECTIONS + 256, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    ):
        try:
            for _ in range(CONNECTIONS):
                sock = raw_connect(daemon.socket)
                held.append(sock)
                hello = recv_frame(sock)
                assert isinstance(hello, Hello), hello
            opened = time.monotonic() - started
            daemon_fds = len(list(Path(f"/proc/{daemon.proc.pid}/fd").iterdir()))
            assert daemon_fds > CONNECTIONS
            t0 = time.monotonic()
            with daemon.client(timeout=5) as client:
                pong = client.ping()
                ping_time = time.monotonic() - t0
                accepted = client.run("echo_params", {"message": "among a thousand"})
                assert client.wait(accepted.handle).status == "Completed"
            assert pong.running == 0
            assert ping_time < IDLE_PING_MAX, ping_time
            # A handful of the held connections still work.
            for sock in held[:: CONNECTIONS // 5]:
                sock.sendall(protocol.encode_frame(protocol.Ping()))
                assert isinstance(recv_frame(sock), protocol.Pong)
        finally:
            for sock in held:
                sock.close()
    with daemon.client(timeout=5) as client:
        client.ping()
    assert daemon.proc.poll() is None
    print(
        f"\n{CONNECTIONS} connections: opened with hellos in {opened:.2f}s, daemon soft fd "
        f"limit {soft_after} (started at 1024), {daemon_fds} daemon fds, fresh ping "
        f"{ping_time * 1e3:.1f} ms"
    )
