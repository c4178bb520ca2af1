"""Protocol fuzzing against one real daemon: hostile frames never kill it or bloat it.

One `wfmd` serves the whole module (Hypothesis and function-scoped fixtures do not mix). Each
case opens its own raw stdlib socket, reads the hello, sends something hostile, and reads
what comes back; every frame the daemon sends must be a valid response. After every case a
fresh connection must get a `pong`, and the daemon's VmRSS must stay under RSS_LIMIT.

Cases: random bytes (raw and framed), truncated frames, length prefixes up to 0xFFFFFFFF (a
`bad_frame` error before any body is sent, and no multi-GiB allocation), well-framed msgpack
maps with every real `op` and random or plausible values for its fields, deep nesting, and
strings of several MB. And what a workflow prints: event-shaped stderr lines
(tests/hostile_lines.py: deep nesting, numbers out of range, huge strings, the marker in odd
places), relayed byte for byte by a workflow, then read back every way a client can.

Quick form: a few thousand cases. `WFM_LONG_TESTS=1`: 1,000,000 cases in all.
`WFM_FUZZ_SCALE=N`: N times the quick form.

No reply may be `internal`: that code means a daemon bug. The cases under "regressions"
are bugs this suite found (out-of-range numbers, deep nesting, echoed huge strings, invalid
UTF-8, memory held by huge identifiers), kept so they stay fixed.

Memory note: a request near MAX_FRAME costs the daemon several times its size while it is
handled (the body is buffered, copied, decoded, and an error reply echoes it), and glibc does
not always give that back: measured here, three near-16 MiB `status` requests in a row left
wfmd at ~200 MiB RSS, a dozen mixed ones at ~440 MiB (falling back later). That is why the
near-MAX_FRAME cases run last, and the huge-string cases stay at a few MB (RSS < 200 MB).
"""

from __future__ import annotations

import faulthandler
import os
import socket
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import Closed, Daemon, frame, kill_leftovers, proc_status, raw_connect, recv_frame
from hostile_lines import Line, check_served, scripts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wfmctl import protocol
from wfmctl.protocol import HEADER, MAX_FRAME, ErrorCode

LONG = os.environ.get("WFM_LONG_TESTS") == "1"

# Cases per fuzzer: (quick, long). Quick totals ~3,000 (about 30 s here); long totals
# 1,000,000. An event case runs a workflow (~0.1 s here), a protocol case only exchanges
# frames (~7 ms).
EXAMPLES = {
    "bytes": (700, 250_000),
    "truncated": (400, 100_000),
    "length": (200, 50_000),
    "typed": (1_700, 580_000),
    "events": (60, 20_000),
}

# The bound on the daemon's resident memory, checked after every case.
RSS_LIMIT = 200 * 1024 * 1024

# A 4 GiB length prefix must not make the daemon reserve the body: its peak virtual size may
# grow by a thread arena or two, never by anything near the announced length.
VM_PEAK_GROWTH_LIMIT = 1024 * 1024 * 1024

# Every read from the daemon is bounded: a loaded 2-core machine answers in milliseconds,
# and a hang must fail the case rather than the whole run.
REPLY_TIMEOUT = 30.0
WATCHDOG = 300.0

KNOWN_CODES = frozenset(v for k, v in vars(ErrorCode).items() if k.isupper() and isinstance(v, str))


# Every request but those that would stop the daemon under test (Shutdown: test_systemd.py
# has it) or empty the history the other cases name by handle (Prune and Delete: a random
# `keep` or handle prefix removes the target's executions; test_retention.py has them).
DESTRUCTIVE: tuple[type[protocol.Request], ...] = (
    protocol.Shutdown,
    protocol.Prune,
    protocol.Delete,
)
REQUEST_TYPES: tuple[type[protocol.Request], ...] = tuple(
    cls for cls in typing.get_args(protocol.RequestType) if cls not in DESTRUCTIVE
)
OPS: tuple[str, ...] = tuple(str(cls.__struct_config__.tag) for cls in REQUEST_TYPES)

_encoder = msgspec.msgpack.Encoder()

NOOP_WORKFLOW = """#!/bin/sh
if [ "$1" = "--workflow-metadata" ]; then
  echo '{"id": "noop", "name": "noop", "description": "", "fields": [{"name": "msg", \
"field_type": {"type": "text"}, "label": "m", "description": "", "cli_arg": "--msg", \
"required": false, "default": null, "required_for_phases": null}]}'
  exit 0
fi
echo hi
"""

# Prints the file it is given on stderr, byte for byte.
RELAY_WORKFLOW = """#!/bin/sh
if [ "$1" = "--workflow-metadata" ]; then
  echo '{"id": "relay", "name": "relay", "description": "", "fields": [{"name": "file", \
"field_type": {"type": "text"}, "label": "f", "description": "", "cli_arg": "--file", \
"required": true, "default": null, "required_for_phases": null}]}'
  exit 0
fi
exec cat "$2" >&2
"""


# WFM_FUZZ_SCALE multiplies the quick counts: a run between the quick and the long form.
SCALE = float(os.environ.get("WFM_FUZZ_SCALE", "1"))


def fuzz_settings(kind: str) -> settings:
    quick, long = EXAMPLES[kind]
    return settings(
        max_examples=long if LONG else max(1, round(quick * SCALE)),
        deadline=None,
        derandomize=False,
        database=None,  # no .hypothesis/ in the checkout; failures print their example
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


# --------------------------------------------------------------------------- the target


def send_all(sock: socket.socket, data: bytes, *, half_close: bool = False) -> None:
    """Send what the daemon will take: it may hang up midway (after a bad frame)."""
    try:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass


def read_until_eof(sock: socket.socket) -> list[protocol.ResponseType]:
    frames = []
    while True:
        try:
            frames.append(recv_frame(sock))
        except Closed:
            return frames


def read_reply(sock: socket.socket) -> list[protocol.ResponseType]:
    """Frames up to and including the final one (log_batch frames are not final)."""
    frames = []
    while True:
        frame = recv_frame(sock)
        frames.append(frame)
        if not isinstance(frame, protocol.NON_FINAL_RESPONSES):
            return frames


@dataclass
class Target:
    daemon: Daemon
    pid: int
    handles: list[str]
    cases: int = 0
    max_rss: int = 0
    replies: dict[str, int] = field(default_factory=dict)

    def connect(self) -> socket.socket:
        sock = raw_connect(self.daemon.socket, timeout=REPLY_TIMEOUT)
        hello = recv_frame(sock)
        assert isinstance(hello, protocol.Hello), hello
        assert hello.protocol == protocol.PROTOCOL_VERSION
        return sock

    def rss(self) -> int:
        return proc_status(self.pid, "VmRSS")

    def note(self, frames: list[protocol.ResponseType]) -> None:
        for f in frames:
            name = f.code if isinstance(f, protocol.Error) else str(f.__struct_config__.tag)
            self.replies[name] = self.replies.get(name, 0) + 1

    def check_alive(self) -> None:
        """A fresh connection gets a pong, and the daemon's memory is within bounds."""
        assert self.daemon.proc is not None and self.daemon.proc.poll() is None, (
            f"wfmd died:\n{self.daemon.log()[-5000:]}"
        )
        with self.connect() as sock:
            sock.sendall(frame(_encoder.encode(protocol.Ping())))
            pong = recv_frame(sock)
            assert isinstance(pong, protocol.Pong), pong
            assert pong.pid == self.pid
        rss = self.rss()
        self.max_rss = max(self.max_rss, rss)
        if LONG:  # a watchdog per case: a hang shows where it hangs, hours in
            faulthandler.dump_traceback_later(WATCHDOG)
        assert rss < RSS_LIMIT, f"wfmd VmRSS {rss / 2**20:.1f} MiB exceeds {RSS_LIMIT / 2**20} MiB"
        self.cases += 1


def check_error(err: protocol.Error) -> None:
    assert err.code in KNOWN_CODES, err
    assert err.code != ErrorCode.INTERNAL, f"internal error (a daemon bug): {err}"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("fuzz")
    workflows = root / "workflows"
    workflows.mkdir()
    noop = workflows / "noop"
    noop.write_text(NOOP_WORKFLOW)
    noop.chmod(0o755)
    daemon = Daemon(root, [workflows], [])
    daemon.start()
    try:
        assert daemon.proc is not None
        # A few executions, so that fuzzed handle prefixes sometimes resolve.
        handles = [daemon.run_and_wait("noop", msg=str(i)) for i in range(4)]
        t = Target(daemon, daemon.proc.pid, handles)
        started = time.monotonic()
        yield t
        print(
            f"\nfuzz: {t.cases} cases in {time.monotonic() - started:.1f} s, "
            f"wfmd max VmRSS {t.max_rss / 2**20:.1f} MiB, replies {dict(sorted(t.replies.items()))}"
        )
    finally:
        if LONG:
            faulthandler.cancel_dump_traceback_later()
        code = daemon.stop()
        leaked = kill_leftovers(daemon.tag)
    assert code == 0, f"wfmd exited with {code}:\n{daemon.log()[-5000:]}"
    assert not leaked, f"processes left behind: {leaked}"


# --------------------------------------------------------------------------- strategies

ints = st.integers(-(2**63), 2**64 - 1)
small_text = st.text(max_size=40)
exts = st.builds(msgspec.msgpack.Ext, st.integers(-128, 127), st.binary(max_size=16))
scalars = (
    st.none() | st.booleans() | ints | st.floats() | small_text | st.binary(max_size=40) | exts
)
any_value = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10) | st.integers(-5, 5), inner, max_size=4)
    ),
    max_leaves=12,
)
hex_prefixes = st.text(alphabet="0123456789abcdef-", max_size=36)
handles = st.one_of(hex_prefixes, st.uuids().map(str), small_text)
numbers = st.one_of(st.none(), ints, st.floats(), st.integers(-3, 3))

# Values close to what each field expects, so that requests get past decoding into the
# handlers; the fuzzer mixes them with `any_value` for wrong types.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "handle": handles,
    "before": st.none() | handles,
    "workflow_id": st.sampled_from(["noop", "../noop", "/bin/sh", "", "noop\n"]) | small_text,
    "params": st.dictionaries(
        st.sampled_from(["msg"]) | st.text(max_size=8), any_value, max_size=3
    ),
    "timeout": numbers,
    "since": numbers,
    "until": numbers,
    "limit": numbers,
    "offset": numbers,
    "after": numbers,
    "tail": numbers,
    "status": st.none() | st.sampled_from(protocol.ALL_STATUSES) | st.text(max_size=12),
    "rescan": st.booleans(),
    "field_name": st.none() | st.just("msg") | small_text,
}


@st.composite
def request_maps(draw: st.DrawFn) -> dict[Any, Any]:
    """A map with a real `op` (mostly) and each field omitted, plausible or any value."""
    cls = draw(st.sampled_from(REQUEST_TYPES))
    op: Any = str(cls.__struct_config__.tag)
    if draw(st.integers(0, 9)) == 0:
        op = draw(any_value | st.sampled_from(OPS).map(str.upper))
    msg: dict[Any, Any] = {"op": op}
    for name in cls.__struct_fields__:
        choice = draw(st.integers(0, 3))
        if choice == 1:
            msg[name] = draw(any_value)
        elif choice >= 2:
            msg[name] = draw(PLAUSIBLE.get(name, any_value))
    for key, value in draw(st.dictionaries(small_text, any_value, max_size=2)).items():
        msg.setdefault(key, value)
    return msg


def raw_str(data: bytes) -> bytes:
    """`data` as a msgpack str, whether or not it is valid UTF-8."""
    if len(data) < 32:
        return bytes([0xA0 | len(data)]) + data
    return b"\xda" + len(data).to_bytes(2, "big") + data  # str 16 (max_size keeps it small)


@st.composite
def maps_with_raw_strings(draw: st.DrawFn) -> bytes:
    """A request map whose `op` or one field is a msgpack str of arbitrary bytes."""
    cls = draw(st.sampled_from(REQUEST_TYPES))
    junk = raw_str(draw(st.binary(max_size=40)))
    fields = list(cls.__struct_fields__) or ["x"]
    if draw(st.booleans()):
        return bytes([0x81]) + _encoder.encode("op") + junk
    op = _encoder.encode(str(cls.__struct_config__.tag))
    key = _encoder.encode(draw(st.sampled_from(fields)))
    return bytes([0x82]) + _encoder.encode("op") + op + key + junk


framed_bytes = st.binary(max_size=200).map(frame)
random_payloads = st.one_of(
    st.binary(max_size=300),
    framed_bytes,
    st.lists(framed_bytes, min_size=2, max_size=4).map(b"".join),
    st.tuples(st.integers(0, 0xFFFFFFFF), st.binary(max_size=64)).map(
        lambda t: HEADER.pack(t[0]) + t[1]
    ),
    maps_with_raw_strings().map(frame),
)


# --------------------------------------------------------------------------- fuzzers


@fuzz_settings("bytes")
@given(payload=random_payloads)
def test_random_bytes(target: Target, payload: bytes) -> None:
    """Anything at all, then end-of-input: valid frames back, then the daemon hangs up."""
    with target.connect() as sock:
        send_all(sock, payload, half_close=True)
        frames = read_until_eof(sock)
    target.note(frames)
    for i, f in enumerate(frames):
        assert not isinstance(f, protocol.Hello), f
        # A well-formed `follow` whose handle prefix resolves streams log batches (the long
        # form found one: handle "b"); its stream always ends with `finished`.
        if isinstance(f, protocol.LogBatch):
            assert any(isinstance(g, protocol.Finished) for g in frames[i + 1 :]), frames
        if isinstance(f, protocol.Error):
            check_error(f)
            if f.code == ErrorCode.BAD_FRAME:
                assert i == len(frames) - 1, "frames after a bad_frame error"
    if len(payload) >= HEADER.size and HEADER.unpack(payload[: HEADER.size])[0] > MAX_FRAME:
        assert len(frames) == 1 and isinstance(frames[0], protocol.Error), frames
        assert frames[0].code == ErrorCode.BAD_FRAME
    target.check_alive()


@fuzz_settings("truncated")
@given(msg=request_maps(), data=st.data())
def test_truncated_frames(target: Target, msg: dict[Any, Any], data: st.DataObject) -> None:
    """A frame cut short, then end-of-input or a hang-up: no reply, no harm."""
    whole = frame(_encoder.encode(msg))
    cut = data.draw(st.integers(0, len(whole) - 1), label="cut")
    lead_with_ping = data.draw(st.booleans(), label="lead_with_ping")
    half_close = data.draw(st.booleans(), label="half_close")
    ping = frame(_encoder.encode(protocol.Ping()))
    with target.connect() as sock:
        send_all(sock, (ping if lead_with_ping else b"") + whole[:cut], half_close=half_close)
        if half_close:
            frames = read_until_eof(sock)
            target.note(frames)
            assert len(frames) == int(lead_with_ping), frames
            if lead_with_ping:
                assert isinstance(frames[0], protocol.Pong), frames
        elif lead_with_ping:
            assert isinstance(recv_frame(sock), protocol.Pong)
    target.check_alive()


@fuzz_settings("length")
@given(length=st.integers(MAX_FRAME + 1, 0xFFFFFFFF) | st.sampled_from([0xFFFFFFFF, MAX_FRAME + 1]))
def test_oversized_length_prefix(target: Target, length: int) -> None:
    """`bad_frame` at once, with no body sent (so none was awaited), then the close."""
    peak_before = proc_status(target.pid, "VmPeak")
    with target.connect() as sock:
        sock.sendall(HEADER.pack(length))
        reply = recv_frame(sock)
        assert isinstance(reply, protocol.Error), reply
        assert reply.code == ErrorCode.BAD_FRAME, reply
        assert str(length) in reply.message
        assert read_until_eof(sock) == []
    target.note([reply])
    growth = proc_status(target.pid, "VmPeak") - peak_before
    assert growth < VM_PEAK_GROWTH_LIMIT, f"VmPeak grew by {growth} bytes"
    target.check_alive()


@fuzz_settings("typed")
@given(msg=request_maps())
def test_wrong_types_for_every_request(target: Target, msg: dict[Any, Any]) -> None:
    """Every reply is a valid response with a final frame; after a non-fatal error the same
    connection still serves a ping (request and reply stay in step)."""
    with target.connect() as sock:
        sock.sendall(frame(_encoder.encode(msg)))
        frames = read_reply(sock)
        target.note(frames)
        final = frames[-1]
        if isinstance(final, protocol.Error):
            check_error(final)
        if isinstance(final, protocol.Error) and final.code == ErrorCode.BAD_FRAME:
            assert read_until_eof(sock) == []  # the daemon closed the connection
        else:
            sock.sendall(frame(_encoder.encode(protocol.Ping())))
            assert isinstance(recv_frame(sock), protocol.Pong)
    target.check_alive()


@pytest.fixture(scope="module")
def relay(target: Target) -> Path:
    """The relay workflow, installed in the target daemon; the file it is to print."""
    path = target.daemon.workflow_dirs[0] / "relay"
    path.write_text(RELAY_WORKFLOW)
    path.chmod(0o755)
    with target.daemon.client() as client:
        found = client.workflows(rescan=True)
    assert "relay" in {w.id for w in found.workflows}, found
    return target.daemon.root / "relayed"


@fuzz_settings("events")
@given(script=scripts())
def test_event_shaped_lines(target: Target, relay: Path, script: tuple[bytes, list[Line]]) -> None:
    """Whatever a workflow prints on stderr: the daemon lives, keeps every byte (lines over
    1 MiB in pieces), makes events of exactly the valid whole lines whose fields it can send,
    and serves the log every way a client reads it (pages, tail, follow), never `internal`."""
    data, lines = script
    relay.write_bytes(data)
    with target.daemon.client() as client:
        ended = client.wait(client.run("relay", {"file": str(relay)}).handle)
        entries = list(client.iter_logs(ended.handle, limit=1_000))
        tail = client.logs(ended.handle, tail=1).entries
        followed = list(client.follow(ended.handle))
    assert ended.status == "Completed", ended
    assert ended.log_count == len(entries)
    assert tail == entries[-1:]
    assert followed[:-1] == entries
    check_served(entries, lines)
    target.check_alive()


# --------------------------------------------------------------------------- explicit cases


def nested_arrays(depth: int) -> bytes:
    return b"\x91" * depth + b"\x90"  # [[[...[]...]]]


def nested_maps(depth: int) -> bytes:
    return b"\x81\xa1k" * depth + b"\xc0"  # {"k": {"k": ... nil}}


def raw_map(**items: bytes) -> bytes:
    """A msgpack map from already-encoded values (up to 15 items)."""
    body = bytes([0x80 | len(items)])
    for key, value in items.items():
        body += _encoder.encode(key) + value
    return body


def exchange(target: Target, body: bytes) -> list[protocol.ResponseType]:
    with target.connect() as sock:
        sock.sendall(frame(body))
        frames = read_reply(sock)
    target.note(frames)
    return frames


DEEP_SHAPES: dict[str, Callable[[bytes], bytes]] = {
    "top_level": lambda nest: nest,
    "ping_unknown_field": lambda nest: raw_map(op=_encoder.encode("ping"), x=nest),
    "run_param_value": lambda nest: raw_map(
        op=_encoder.encode("run"),
        workflow_id=_encoder.encode("noop"),
        params=raw_map(msg=nest),
    ),
    "status_handle": lambda nest: raw_map(op=_encoder.encode("status"), handle=nest),
}


@pytest.mark.parametrize("shape", list(DEEP_SHAPES))
@pytest.mark.parametrize("depth", [10, 1_000, 10_000, 100_000])
@pytest.mark.parametrize("nesting", [nested_arrays, nested_maps], ids=["arrays", "maps"])
def test_deep_nesting(
    target: Target, shape: str, depth: int, nesting: Callable[[int], bytes]
) -> None:
    """Deep nesting never crashes the daemon: beyond a few levels it is a `bad_request` ("nested
    too deeply") wherever it sits. Shallow, an unknown field is ignored, a list or map as a
    parameter value is refused, and the wrong type for a field or a request is refused."""
    (reply,) = exchange(target, DEEP_SHAPES[shape](nesting(depth)))
    if depth <= 10 and shape == "ping_unknown_field":
        assert isinstance(reply, protocol.Pong), reply
    elif depth <= 10 and shape == "run_param_value":
        assert isinstance(reply, protocol.Error), reply
        assert reply.code == ErrorCode.INVALID_PARAMS, reply
    else:
        assert isinstance(reply, protocol.Error), reply
        assert reply.code == ErrorCode.BAD_REQUEST, reply
    target.check_alive()


HUGE_FIELDS = [
    ("status", "handle"),
    ("logs", "handle"),
    ("follow", "handle"),
    ("run", "workflow_id"),
    ("workflows", "workflow_id"),
    ("history", "before"),
    ("history", "workflow_id"),
    ("param_history", "workflow_id"),
    ("param_history", "field_name"),
    ("ping", "pad"),
]


# "A few MB": each such request leaves the daemon's RSS several MB higher for a while (see
# test_rss_stays_bounded_under_repeated_multi_mb_requests), so one size per field.
HUGE_STRING_MB = 3


@pytest.mark.parametrize(("op", "key"), HUGE_FIELDS, ids=[f"{o}.{k}" for o, k in HUGE_FIELDS])
def test_huge_strings(target: Target, op: str, key: str) -> None:
    """Strings of several MB (well below MAX_FRAME) in every string field."""
    msg: dict[str, Any] = {"op": op, key: "\u00e9" * (HUGE_STRING_MB * 2**19)}  # 2 bytes each
    if op == "param_history" and key != "workflow_id":
        msg["workflow_id"] = "noop"
    started = time.monotonic()
    frames = exchange(target, _encoder.encode(msg))
    assert time.monotonic() - started < REPLY_TIMEOUT
    (final,) = frames
    if op == "ping":  # an unknown field, ignored
        assert isinstance(final, protocol.Pong), final
    else:  # identifiers are bounded (protocol.Handle, protocol.Name)
        assert isinstance(final, protocol.Error) and final.code == ErrorCode.BAD_REQUEST, final
    target.check_alive()


def test_huge_parameter_value_fails_to_start_and_says_why(target: Target) -> None:
    """A 4 MB argv element exceeds the kernel's per-argument limit (128 KiB). Parameter values
    have no length bound of their own, so the run is accepted, fails to start, and the daemon
    stays up and records why."""
    with target.daemon.client() as client:
        execution = client.run("noop", {"msg": "x" * (4 * 2**20)})
        ended = client.wait(execution.handle)
    assert ended.status == "Failed", ended
    assert ended.reason and "Argument list too long" in ended.reason, ended.reason
    target.check_alive()


def test_frame_of_exactly_max_frame_is_served(target: Target) -> None:
    """The boundary: a ping padded to exactly MAX_FRAME bytes is a valid request."""
    overhead = len(_encoder.encode({"op": "ping", "pad": "a" * 2**20})) - 2**20
    body = _encoder.encode({"op": "ping", "pad": "a" * (MAX_FRAME - overhead)})
    assert len(body) == MAX_FRAME
    assert isinstance(exchange(target, body)[0], protocol.Pong)
    target.check_alive()


def test_body_of_max_frame_plus_one_is_refused_unread(target: Target) -> None:
    with target.connect() as sock:
        sock.sendall(HEADER.pack(MAX_FRAME + 1) + b"\x80")
        reply = recv_frame(sock)
        assert isinstance(reply, protocol.Error) and reply.code == ErrorCode.BAD_FRAME
    target.check_alive()


def test_many_bad_frames_do_not_leak(target: Target) -> None:
    """Memory after 2,000 bad frames (each on its own connection) is what it was, give or
    take allocator noise."""
    target.check_alive()
    before = target.rss()
    for i in range(2_000):
        with target.connect() as sock:
            sock.sendall(HEADER.pack(0xFFFFFFFF - i) if i % 2 else frame(b"\xc1"))
            reply = recv_frame(sock)
            assert isinstance(reply, protocol.Error) and reply.code == ErrorCode.BAD_FRAME
    target.check_alive()
    assert target.rss() - before < 16 * 2**20


# --------------------------------------------------------------------------- regressions


def _near_max(op: str, key: str) -> dict[str, Any]:
    """A request 8 bytes under MAX_FRAME, its bulk one string in `key`."""
    overhead = len(_encoder.encode({"op": op, key: "a" * 2**20})) - 2**20
    msg = {"op": op, key: "a" * (MAX_FRAME - 8 - overhead)}
    assert len(_encoder.encode(msg)) == MAX_FRAME - 8
    return msg


def _case(value: dict[str, Any] | bytes, name: str, expected: str = "bad_request") -> Any:
    """A request, and the reply it must get: an error code, or a response's `type` tag."""
    return pytest.param(value, expected, id=name)


_PING, _RUN = _encoder.encode("ping"), _encoder.encode("run")

HOSTILE_VALUES = [
    _case({"op": "history", "since": float("inf")}, "history-since-inf"),
    _case({"op": "history", "since": float("nan")}, "history-since-nan"),
    _case({"op": "history", "until": -1e300}, "history-until-huge"),
    _case({"op": "history", "offset": 2**63}, "history-offset-2**63"),
    _case({"op": "logs", "handle": "$H", "after": 2**63 - 1}, "logs-after-2**63-1"),
    _case({"op": "follow", "handle": "$H", "after": 2**64 - 1}, "follow-after-2**64-1"),
    _case({"op": "run", "workflow_id": "noop", "timeout": float("inf")}, "run-timeout-inf"),
    _case({"op": "run", "workflow_id": "noop", "timeout": float("nan")}, "run-timeout-nan"),
    _case({"op": "run", "workflow_id": "noop", "timeout": 1e300}, "run-timeout-1e300"),
    _case(raw_map(op=_PING, x=nested_arrays(1_000)), "ping-nested-1000"),
    _case(
        raw_map(
            op=_RUN, workflow_id=_encoder.encode("noop"), params=raw_map(msg=nested_maps(10**4))
        ),
        "run-params-nested-10000",
    ),
    # Controls: the same shapes with values at or within their bounds are served normally.
    _case(
        {"op": "history", "since": 1e9, "until": 2e9, "offset": 2**31},
        "history-in-range",
        "history_page",
    ),
    _case({"op": "logs", "handle": "$H", "after": 2**32}, "logs-after-2**32", "log_page"),
    _case({"op": "run", "workflow_id": "noop", "timeout": 30.5}, "run-timeout-ok", "accepted"),
    _case(raw_map(op=_PING, x=nested_arrays(200)), "ping-nested-200", "pong"),
    # Last in the module: after these the daemon's RSS may stay high (see the module's notes).
    _case(_near_max("status", "handle"), "status-handle-near-max"),
    _case(_near_max("param_history", "workflow_id"), "param_history-near-max"),
]


@pytest.mark.parametrize(("request_", "expected"), HOSTILE_VALUES)
def test_hostile_values_get_a_stable_code_and_keep_the_connection(
    target: Target, request_: dict[str, Any] | bytes, expected: str
) -> None:
    """PROTOCOL.md: `internal` means a daemon bug, and only bad_frame/forbidden close the
    connection. A value out of its field's bounds in a valid frame is a `bad_request`, the
    same value within them is served, and either way the connection stays open."""
    if isinstance(request_, dict):
        body = _encoder.encode(
            {k: target.handles[0] if v == "$H" else v for k, v in request_.items()}
        )
    else:
        body = request_
    with target.connect() as sock:
        sock.sendall(frame(body))
        frames = read_reply(sock)
        target.note(frames)
        final = frames[-1]
        got = final.code if isinstance(final, protocol.Error) else final.__struct_config__.tag
        assert got == expected, final
        sock.sendall(frame(_encoder.encode(protocol.Ping())))
        assert isinstance(recv_frame(sock), protocol.Pong)
    target.check_alive()


@pytest.mark.parametrize(
    "body",
    [
        b"\x81\xa2op" + raw_str(b"\x00\x80"),
        b"\x82\xa2op\xa6status\xa6handle" + raw_str(b"\xff\xfe"),
        b"\x82\xa2op\xa3run\xabworkflow_id" + raw_str(b"noop\xc3"),
    ],
    ids=["op", "status-handle", "run-workflow_id"],
)
def test_invalid_utf8_in_a_string_is_a_bad_frame(target: Target, body: bytes) -> None:
    """PROTOCOL.md: an undecodable frame is `bad_frame`, then the close. A msgpack str that is
    not UTF-8 cannot be decoded, wherever it sits; never `internal`."""
    with target.connect() as sock:
        sock.sendall(frame(body))
        reply = recv_frame(sock)
        target.note([reply])
        assert isinstance(reply, protocol.Error), reply
        assert reply.code == ErrorCode.BAD_FRAME, reply
        assert read_until_eof(sock) == []
    target.check_alive()


def test_rss_stays_bounded_under_repeated_multi_mb_requests(target: Target) -> None:
    """Last in the module: afterwards the daemon's RSS stays high."""
    peak = 0
    for _ in range(60):
        frames = exchange(target, _encoder.encode({"op": "status", "handle": "x" * 4 * 2**20}))
        # Refused as too long for a handle (protocol.Handle), never looked up.
        assert isinstance(frames[-1], protocol.Error), frames
        assert frames[-1].code == ErrorCode.BAD_REQUEST, frames
        peak = max(peak, target.rss())
    target.max_rss = max(target.max_rss, peak)
    assert peak < RSS_LIMIT, f"wfmd VmRSS peaked at {peak / 2**20:.0f} MiB"
