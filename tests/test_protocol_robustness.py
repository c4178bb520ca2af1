"""Hostile and broken input: raw frames on the socket, and odd bytes from workflows.

The socket tests speak the protocol by hand (stdlib `socket` + msgspec for msgpack), the way
a client in another language would, and check after each abuse that the daemon still serves
a fresh `Client`.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
from conftest import Daemon, frame, metadata, raw_connect, recv_body, write_workflow

from wfmctl import __version__
from wfmctl.protocol import HEADER, MAX_FRAME, Execution, LogEntry


class Raw:
    """A hand-driven connection that reads replies as plain msgpack maps."""

    def __init__(self, path: Path, *, read_hello: bool = True) -> None:
        self.sock = raw_connect(path)
        self.hello: dict[str, Any] | None = self.recv() if read_hello else None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_body(self, body: bytes) -> None:
        self.sock.sendall(frame(body))

    def send(self, message: Any) -> None:
        self.send_body(msgspec.msgpack.encode(message))

    def recv(self) -> dict[str, Any]:
        reply = msgspec.msgpack.decode(recv_body(self.sock))
        assert isinstance(reply, dict), reply
        return reply

    def closed_by_peer(self) -> bool:
        """True if the daemon has closed its end (EOF within the timeout)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def ping_ok(daemon: Daemon) -> None:
    with daemon.client(timeout=5) as client:
        assert client.ping().pid == daemon.pid


# --------------------------------------------------------------------------- frames


def test_hello_then_ping_by_hand(daemon: Daemon) -> None:
    with Raw(daemon.socket) as raw:
        assert raw.hello is not None
        assert raw.hello["type"] == "hello"
        assert raw.hello["protocol"] == 1
        assert raw.hello["daemon_version"] == __version__
        raw.send({"op": "ping"})
        pong = raw.recv()
        assert pong["type"] == "pong"
        assert pong["pid"] == daemon.pid
        # Unknown keys are ignored (an older daemon talking to a newer client).
        raw.send({"op": "ping", "some_future_field": [1, 2, 3]})
        assert raw.recv()["type"] == "pong"


# Each case gets its own connection; one daemon serves them all (starting one per case would
# triple this module's run time).
MALFORMED_BODIES = {
    "invalid-opcode": b"\xc1",
    "truncated-map": b"\x82\xa2op\xa4ping",
    "empty-body": b"",
    "trailing-bytes": b"\x81\xa2op\xa4ping\x00\x00",
    "string-longer-than-frame": b"\xdb\xff\xff\xff\xff",
}

# Malformed bodies whose first bytes already fail the request schema (not a map, or an
# unknown op) before the decoder reaches the malformed part.
MALFORMED_BODIES_WITH_A_WRONG_START = {
    "http-request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "truncated-array": b"\x92\x01",
    "int-then-garbage": b"\x05\x00\x00",
    "unknown-op-then-invalid-opcode": b"\x81\xa2op\xa4pong\xc1",
}


def test_malformed_msgpack_is_bad_frame_and_closes(daemon: Daemon) -> None:
    for case, body in MALFORMED_BODIES.items():
        with Raw(daemon.socket) as raw:
            raw.send_body(body)
            error = raw.recv()
            assert error["type"] == "error", case
            assert error["code"] == "bad_frame", (case, error)
            assert error["message"], case
            assert raw.closed_by_peer(), case
        ping_ok(daemon)


def test_malformed_msgpack_with_a_wrong_start_is_bad_frame_too(daemon: Daemon) -> None:
    for case, body in MALFORMED_BODIES_WITH_A_WRONG_START.items():
        with Raw(daemon.socket) as raw:
            raw.send_body(body)
            error = raw.recv()
            assert error["type"] == "error", case
            assert error["code"] == "bad_frame", (case, error)
            assert raw.closed_by_peer(), case
        ping_ok(daemon)


INVALID_REQUESTS: dict[str, Any] = {
    "unknown-op": {"op": "frobnicate"},
    "no-op": {"handle": "abc"},
    "op-not-a-string": {"op": 7},
    "not-a-map": 5,
    "array": [1, 2],
    "handle-int": {"op": "status", "handle": 123},
    "missing-field": {"op": "status"},
    "limit-str": {"op": "logs", "handle": "x", "limit": "ten"},
    "params-list": {"op": "run", "workflow_id": "echo_params", "params": [1]},
    "timeout-str": {"op": "run", "workflow_id": "echo_params", "timeout": "1"},
    "bad-status": {"op": "history", "status": "Exploded"},
    "after-float": {"op": "follow", "handle": "x", "after": 1.5},
}


def test_invalid_requests_are_bad_request_and_keep_the_connection(daemon: Daemon) -> None:
    with Raw(daemon.socket) as raw:
        for case, message in INVALID_REQUESTS.items():
            raw.send(message)
            error = raw.recv()
            assert error["type"] == "error", case
            assert error["code"] == "bad_request", (case, error)
            assert error["message"], case
            raw.send({"op": "ping"})
            assert raw.recv()["type"] == "pong", case
    ping_ok(daemon)


def test_oversized_length_is_refused_without_reading_the_body(daemon: Daemon) -> None:
    for length in (0xFFFFFFFF, MAX_FRAME + 1):
        with Raw(daemon.socket) as raw:
            # Only the header: a daemon that tried to read the body would wait forever and
            # we would time out instead of getting the error.
            raw.send_raw(HEADER.pack(length))
            started = time.monotonic()
            error = raw.recv()
            assert time.monotonic() - started < 5
            assert error["type"] == "error"
            assert error["code"] == "bad_frame", (length, error)
            assert raw.closed_by_peer()
        ping_ok(daemon)


def test_truncated_frame_then_close(daemon: Daemon) -> None:
    for partial in (b"\x00", b"\x00\x00\x00", HEADER.pack(100) + b"\x81\xa2op", HEADER.pack(100)):
        with Raw(daemon.socket) as raw:
            raw.send_raw(partial)
        ping_ok(daemon)
    # And without even reading the hello.
    with Raw(daemon.socket, read_hello=False) as raw:
        raw.send_raw(HEADER.pack(50) + b"\x81")
    ping_ok(daemon)
    assert "Traceback" not in daemon.log()


def test_idle_connections_do_not_block_others(daemon: Daemon) -> None:
    idle = [Raw(daemon.socket, read_hello=i % 2 == 0) for i in range(40)]
    half = Raw(daemon.socket)
    half.send_raw(HEADER.pack(1000) + b"\x81")  # half a frame, then silence
    try:
        started = time.monotonic()
        for _ in range(5):
            ping_ok(daemon)
        with daemon.client(timeout=10) as client:
            handle = client.run("echo_params", {"message": "busy?"}).handle
            assert client.wait(handle).status == "Completed"
        assert time.monotonic() - started < 10
    finally:
        for raw in [*idle, half]:
            raw.close()
    ping_ok(daemon)


def test_client_vanishing_mid_stream(daemon: Daemon, workflow_dir: Path) -> None:
    body = """
for i in range(100):
    print(f"tick {i}", flush=True)
    time.sleep(0.01)
"""
    write_workflow(workflow_dir, "ticker", body, metadata("ticker"))
    with daemon.client() as client:
        client.workflows(rescan=True)
        handle = client.run("ticker").handle
    # A follower and a waiter that hang up without reading their replies.
    for op in ({"op": "follow", "handle": handle}, {"op": "wait", "handle": handle}):
        with Raw(daemon.socket) as raw:
            raw.send(op)
            raw.sock.shutdown(socket.SHUT_RDWR)
    with Raw(daemon.socket) as raw:
        raw.send({"op": "follow", "handle": handle})
        first = raw.recv()
        assert first["type"] in ("log_batch", "finished")
    with daemon.client(timeout=10) as client:
        ended = client.wait(handle)
        assert ended.status == "Completed"
        lines = [e.line for e in client.iter_logs(handle)]
    assert lines == [f"tick {i}" for i in range(100)]
    ping_ok(daemon)


# --------------------------------------------------------------------------- ingestion


def test_non_utf8_output_is_stored_with_replacement(daemon: Daemon, workflow_dir: Path) -> None:
    body = r"""
sys.stdout.buffer.write(b"\xff\xfe\n")
sys.stdout.buffer.write(b"caf\xc3\xa9 ok\n")
sys.stdout.buffer.write(b"half \xe2\x82 euro\n")
sys.stdout.buffer.flush()
sys.stderr.buffer.write(b"\x00nul and \x1b[31mansi\x1b[0m\n")
sys.stderr.buffer.flush()
"""
    write_workflow(workflow_dir, "binary", body, metadata("binary"))
    ended, entries = daemon.run_to_end("binary", rescan=True)
    assert ended.status == "Completed", ended
    stdout = [e.line for e in entries if e.stream == "stdout"]
    stderr = [e.line for e in entries if e.stream == "stderr"]
    assert stdout == ["\ufffd\ufffd", "café ok", "half \ufffd euro"]
    assert stderr == ["\x00nul and \x1b[31mansi\x1b[0m"]
    ping_ok(daemon)


def test_ten_megabyte_line_is_cut_into_mebibyte_entries(daemon: Daemon, workflow_dir: Path) -> None:
    size = 10_000_000
    body = f"""
pattern = b"0123456789abcdef" * 4096
data = (pattern * ({size} // len(pattern) + 1))[:{size}]
sys.stdout.buffer.write(data)
sys.stdout.buffer.flush()
"""
    write_workflow(workflow_dir, "longline", body, metadata("longline"))
    ended, entries = daemon.run_to_end("longline", rescan=True)
    assert ended.status == "Completed", ended
    mib = 1024 * 1024
    assert len(entries) == -(-size // mib)  # ceil
    assert sum(len(e.line) for e in entries) == size
    assert all(len(e.line) == mib for e in entries[:-1])
    assert [e.seq for e in entries] == list(range(len(entries)))
    pattern = "0123456789abcdef"
    text = "".join(e.line for e in entries)
    assert text == (pattern * (size // len(pattern) + 1))[:size]
    ping_ok(daemon)


def test_invalid_event_lines_stay_raw_stderr(daemon: Daemon, workflow_dir: Path) -> None:
    bad = [
        "__WF_EVENT__:not json at all",
        "__WF_EVENT__:",
        '__WF_EVENT__:{"type": "no_such_event", "phase": 1}',
        '__WF_EVENT__:{"type": "phase_started"}',
        '__WF_EVENT__:{"type": "phase_started", "phase": "one", "name": "x", "total_phases": 2}',
        '__WF_EVENT__:["phase_started", 1]',
        ' __WF_EVENT__:{"type": "task_progress", "task_id": "t", "message": "m"}',
        '__WF_EVENT__:{"type": "task_progress", "task_id": "t", "message": "m"} trailing',
    ]
    body = f"""
for line in {bad!r}:
    print(line, file=sys.stderr, flush=True)
# A valid event on stdout is just output.
print('__WF_EVENT__:{{"type": "task_progress", "task_id": "t", "message": "m"}}', flush=True)
"""
    write_workflow(workflow_dir, "badevents", body, metadata("badevents"))
    ended, entries = daemon.run_to_end("badevents", rescan=True)
    assert ended.status == "Completed", ended
    stderr = [e for e in entries if e.stream == "stderr"]
    assert [e.line for e in stderr] == bad
    assert all(e.type == "raw_output" and e.event is None for e in entries)
    (out,) = [e for e in entries if e.stream == "stdout"]
    assert out.line.startswith("__WF_EVENT__:")
    ping_ok(daemon)


def test_valid_events_are_structured(daemon: Daemon, workflow_dir: Path) -> None:
    big = "x" * 200_000  # longer than one pipe read: the line arrives in pieces
    events: list[dict[str, Any]] = [
        {"type": "phase_started", "phase": 1, "name": "Build", "total_phases": 2},
        {"type": "task_started", "phase": 1, "task_id": "t1", "description": "compile"},
        {"type": "task_progress", "task_id": "t1", "message": big},
        {"type": "task_completed", "task_id": "t1", "result": "ok ✓"},
        {"type": "phase_completed", "phase": 1, "name": "Build"},
    ]
    body = f"""
print("plain before", file=sys.stderr, flush=True)
for event in {events!r}:
    sys.stderr.write("__WF_EVENT__:" + json.dumps(event) + "\\n")
sys.stderr.write("__WF_EVENT__:" + json.dumps({events[4]!r}) + "\\r\\n")
sys.stderr.flush()
print("plain after", file=sys.stderr, flush=True)
"""
    write_workflow(workflow_dir, "events", body, metadata("events"))
    ended, entries = daemon.run_to_end("events", rescan=True)
    assert ended.status == "Completed", ended
    assert [e.seq for e in entries] == list(range(len(entries)))
    assert entries[0].line == "plain before" and entries[0].type == "raw_output"
    assert entries[-1].line == "plain after" and entries[-1].type == "raw_output"
    structured = entries[1:-1]
    assert [e.type for e in structured] == [ev["type"] for ev in events] + ["phase_completed"]
    for entry, event in zip(structured, [*events, events[4]], strict=True):
        assert entry.stream == "stderr"
        assert entry.event == {k: v for k, v in event.items() if k != "type"}
        assert entry.line.startswith("__WF_EVENT__:")
    ping_ok(daemon)


def test_stdout_and_stderr_share_one_sequence(daemon: Daemon, workflow_dir: Path) -> None:
    body = """
for i in range(300):
    stream = sys.stdout if i % 3 else sys.stderr
    print(f"{'out' if i % 3 else 'err'} {i}", file=stream, flush=True)
    if i % 50 == 0:
        time.sleep(0.01)
"""
    write_workflow(workflow_dir, "interleave", body, metadata("interleave"))
    ended, entries = daemon.run_to_end("interleave", rescan=True)
    assert ended.status == "Completed", ended
    assert [e.seq for e in entries] == list(range(300))
    for entry in entries:
        kind, number = entry.line.split()
        assert entry.stream == ("stdout" if kind == "out" else "stderr")
        assert (int(number) % 3 != 0) == (kind == "out")
    out = [int(e.line.split()[1]) for e in entries if e.stream == "stdout"]
    err = [int(e.line.split()[1]) for e in entries if e.stream == "stderr"]
    assert out == [i for i in range(300) if i % 3]
    assert err == [i for i in range(300) if i % 3 == 0]


def test_large_non_utf8_output_can_be_read_back(daemon: Daemon, workflow_dir: Path) -> None:
    size = 10_000_000
    body = f"""
sys.stdout.buffer.write(b"\\xff" * {size})
sys.stdout.buffer.flush()
"""
    write_workflow(workflow_dir, "ffff", body, metadata("ffff"))
    ended, entries = daemon.run_to_end("ffff", rescan=True)
    assert ended.status == "Completed", ended
    handle = ended.handle
    assert len(entries) == -(-size // (1024 * 1024))
    assert sum(len(e.line) for e in entries) == size
    assert all(set(e.line) == {"\ufffd"} for e in entries)
    with daemon.client(timeout=30) as client:
        assert client.logs(handle, tail=3).entries == entries[-3:]
        assert [e for e in client.follow(handle) if isinstance(e, LogEntry)] == entries


def test_long_multibyte_line_keeps_its_characters(daemon: Daemon, workflow_dir: Path) -> None:
    count = 1_000_000  # "€" is 3 bytes: 3 MB, and 1 MiB is not a multiple of 3
    body = f"""
sys.stdout.buffer.write(("€" * {count}).encode())
sys.stdout.buffer.flush()
"""
    write_workflow(workflow_dir, "euros", body, metadata("euros"))
    ended, entries = daemon.run_to_end("euros", rescan=True)
    assert ended.status == "Completed", ended
    assert len(entries) == 3
    text = "".join(e.line for e in entries)
    assert text.count("\ufffd") == 0
    assert text == "€" * count


def test_concurrent_followers_see_every_entry_exactly_once(
    daemon: Daemon, workflow_dir: Path
) -> None:
    """Followers joining a fast run at different moments and positions each get exactly the
    committed entries after their position: history and live output join seamlessly."""
    body = """
for i in range(30000):
    stream = sys.stdout if i % 2 else sys.stderr
    stream.write(f"line {i}\\n")
    if i % 500 == 0:
        stream.flush()
        time.sleep(0.002)
"""
    write_workflow(workflow_dir, "hose", body, metadata("hose"))
    with daemon.client() as client:
        client.workflows(rescan=True)
        handle = client.run("hose").handle
    starts = [-1, -1, 10, 500, 5000, 29998]
    results: dict[int, list[LogEntry | Execution]] = {}

    def follow(index: int, after: int) -> None:
        time.sleep(index * 0.05)
        with daemon.client(timeout=30) as client:
            results[index] = list(client.follow(handle, after))

    threads = [threading.Thread(target=follow, args=(i, a)) for i, a in enumerate(starts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    with daemon.client() as client:
        ended = client.status(handle)
        full = list(client.iter_logs(handle))
    assert ended.status == "Completed"
    assert [e.seq for e in full] == list(range(30000)) and ended.log_count == 30000
    assert sorted(int(e.line.split()[1]) for e in full) == list(range(30000))
    for index, after in enumerate(starts):
        items = results[index]
        final = items.pop()
        assert isinstance(final, Execution) and final.status == "Completed"
        assert items == full[after + 1 :], (index, after)


# --------------------------------------------------------------------------- hostile numbers

# Requests that are well-formed msgpack of the right types, with values no sane client sends.
# Each is outside its field's bounds (wfmctl/protocol.py: Seconds, Seq), so it is refused when
# the frame is decoded: a `bad_request` on an open connection, never an `internal` error with
# a traceback in the daemon's log and a closed connection.
HOSTILE_NUMBERS: dict[str, dict[str, Any]] = {
    "timeout-nan": {"timeout": float("nan")},
    "timeout-inf": {"timeout": float("inf")},
    "timeout-1e300": {"timeout": 1e300},
    "history-since-nan": {"op": "history", "since": float("nan")},
    "history-until-1e300": {"op": "history", "until": 1e300},
    "logs-after-2**63": {"op": "logs", "after": 2**63},
    "follow-after-2**63": {"op": "follow", "after": 2**63},
}


def test_hostile_numbers_are_bad_requests_not_internal_errors(daemon: Daemon) -> None:
    handle = daemon.run_and_wait("echo_params", message="x")
    replies = {}
    for case, fields in HOSTILE_NUMBERS.items():
        message: dict[str, Any] = {
            "op": "run",
            "workflow_id": "echo_params",
            "params": {"message": "x"},
        }
        if fields.get("op", "run") != "run":
            message = {"handle": handle}
        message.update(fields)
        with Raw(daemon.socket) as raw:
            raw.send(message)
            reply = raw.recv()
            reply["message"] = bool(reply.get("message"))  # some text, whatever it says
            raw.send({"op": "ping"})
            replies[case] = (reply, raw.recv()["type"])
    refused = ({"type": "error", "code": "bad_request", "message": True}, "pong")
    assert replies == dict.fromkeys(HOSTILE_NUMBERS, refused)
    assert "Traceback" not in daemon.log()


def test_negative_tail_is_refused(daemon: Daemon) -> None:
    """`tail` is a Count (ge=0 in wfmctl/protocol.py): -3 is refused when the frame is
    decoded, and the connection stays open."""
    handle = daemon.run_and_wait("echo_params", message="x")
    with Raw(daemon.socket) as raw:
        raw.send({"op": "logs", "handle": handle, "tail": -3})
        reply = raw.recv()
        assert reply["type"] == "error" and reply["code"] == "bad_request", reply
        raw.send({"op": "logs", "handle": handle, "tail": 3})
        assert raw.recv()["type"] == "log_page"
