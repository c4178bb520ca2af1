"""Event-shaped lines a hostile or buggy workflow may print on stderr, each with what the
daemon must make of it: deep nesting, numbers out of range, huge strings, the marker in odd
places. Shared by test_ingest_hostile.py (through LineBuffer, and through the daemon) and the
fuzz suite (test_fuzz_protocol.py).

The contract (WORKFLOWS.md): a line is an event only if it is a whole line of at
most MAX_LINE bytes, starts with the marker, and its JSON is a valid event whose fields every
reader can be sent (nesting at most MAX_DEPTH, integers within int64, finite numbers). Every
other line is raw output, kept byte for byte; a line over MAX_LINE is kept as pieces.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from hypothesis import strategies as st

from wfmctl.protocol import LogEntry
from wfmd.events import EVENT_MARKER, EVENT_TYPES, MAX_DEPTH, MAX_INT, MIN_INT, event_fields
from wfmd.ingest.lines import MAX_LINE

Expect = Literal["event", "raw", "any"]
Line = tuple[bytes, Expect]  # one line without its newline, and what it must become

MARKER = EVENT_MARKER.decode()

# One valid event of each type (WORKFLOWS.md's table).
SAMPLES: dict[str, dict[str, Any]] = {
    "phase_started": {"phase": 1, "name": "fetch", "total_phases": 3},
    "phase_completed": {"phase": 1, "name": "fetch"},
    "phase_failed": {"phase": 2, "name": "parse", "error": "bad input"},
    "task_started": {"phase": 1, "task_id": "t1", "description": "d", "total_tasks": 4},
    "task_progress": {"task_id": "t1", "message": "3 of 10"},
    "task_completed": {"task_id": "t1", "result": None},
    "task_failed": {"task_id": "t1", "error": "boom"},
    "agent_started": {"task_id": "t1", "agent_name": "a", "description": "d"},
    "agent_message": {"task_id": "t1", "agent_name": "a", "message": "hi"},
    "agent_completed": {"task_id": "t1", "agent_name": "a", "result": "ok"},
    "agent_failed": {"task_id": "t1", "agent_name": "a", "error": "e"},
    "state_file_created": {"phase": 1, "file_path": "/tmp/s.json", "description": "d"},
}

# Numbers a JSON event may carry in a field, as printed: out of range, an event is raw output.
OUT_OF_RANGE = (
    "1e400",
    "-1e400",
    "1E309",
    "123456789012345678901234567890",
    str(MAX_INT + 1),
    str(MIN_INT - 1),
    str(2**64 - 1),  # msgpack could carry it; a signed 64-bit client could not
    str(2**64),
    "9" * 400,
    "1" * 5_000,  # past Python's int-to-str digit limit
)
IN_RANGE = (str(MAX_INT), str(MIN_INT), "0", "-0", "1e308", "-1.5e308", "1e-400", "0.5")


def event(type_: str, fields: dict[str, Any]) -> bytes:
    return (MARKER + json.dumps({"type": type_, **fields})).encode()


def with_extra(value: str) -> bytes:
    """A task_progress event whose extra field `x` is `value`, JSON text as printed."""
    return (MARKER + '{"type": "task_progress", "task_id": "t", "message": "m", "x": ').encode() + (
        value + "}"
    ).encode()


def nested(depth: int, kind: str = "[") -> str:
    """JSON value nested `depth` deep (0: a number): arrays, or objects."""
    if kind == "[":
        return "[" * depth + "]" * depth if depth else "0"
    return '{"k": ' * depth + "0" + "}" * depth


# The line that once killed the daemon: 2,000 arrays deep in an extra field.
DEEP_LINE = with_extra(nested(2_000))

# --------------------------------------------------------------------------- strategies

json_scalars = st.none() | st.booleans() | st.integers(MIN_INT, MAX_INT) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def valid_events(draw: st.DrawFn) -> Line:
    """A valid event, sometimes with extra fields of any servable JSON."""
    type_ = draw(st.sampled_from(sorted(SAMPLES)))
    extra = draw(st.dictionaries(st.sampled_from(["x", "y", "meta"]), json_values, max_size=2))
    return event(type_, {**SAMPLES[type_], **extra}), "event"


@st.composite
def deep_events(draw: st.DrawFn) -> Line:
    """Nesting around the bound (the fields object is level 1) and far past it."""
    depth = draw(
        st.sampled_from([MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 999, 2_000])
        | st.integers(0, 6_000)
    )
    kind = draw(st.sampled_from(["[", "{"]))
    return with_extra(nested(depth, kind)), "event" if depth + 1 <= MAX_DEPTH else "raw"


@st.composite
def number_events(draw: st.DrawFn) -> Line:
    """An out-of-range or in-range number, in an extra field or an integer field."""
    bad = draw(st.booleans())
    number = draw(st.sampled_from(OUT_OF_RANGE if bad else IN_RANGE))
    if draw(st.booleans()):
        return with_extra(number), "raw" if bad else "event"
    if "." in number or "e" in number.lower():  # `phase` must be a JSON integer
        return with_extra(number), "raw" if bad else "event"
    line = (MARKER + '{"type": "phase_completed", "name": "n", "phase": ' + number + "}").encode()
    return line, "raw" if bad else "event"


@st.composite
def huge_events(draw: st.DrawFn) -> Line:
    """A valid event whose message makes the line a few bytes either side of MAX_LINE, or
    several MiB: a whole line of at most MAX_LINE is an event, a longer one raw pieces."""
    head = (MARKER + '{"type": "task_progress", "task_id": "t", "message": "').encode()
    tail = b'"}'
    room = MAX_LINE - len(head) - len(tail)
    size = draw(st.sampled_from([room - 1, room, room + 1]) | st.integers(0, 3 * MAX_LINE))
    line = head + b"m" * size + tail
    return line, "event" if len(line) <= MAX_LINE else "raw"


@st.composite
def odd_markers(draw: st.DrawFn) -> Line:
    """The marker where it does not make an event, or makes one in an unusual way."""
    valid = event("task_progress", SAMPLES["task_progress"])
    pad = draw(st.integers(1, 2 * MAX_LINE))
    text = draw(st.text(max_size=20).map(str.encode).filter(lambda b: b"\n" not in b))
    choices: list[Line] = [
        (b" " + valid, "raw"),  # not at the start
        (text + valid, "event" if not text else "raw"),
        (EVENT_MARKER + valid, "raw"),  # the marker twice
        (EVENT_MARKER, "raw"),
        (EVENT_MARKER + text, "any"),
        (valid + b"\r", "event"),  # CRLF
        (valid + b" " * 3, "event"),  # JSON whitespace
        (valid + b" junk", "raw"),
        # Past MAX_LINE, wherever the marker sits, the pieces are raw: a valid event padded
        # with JSON whitespace into its first piece, or starting the last piece.
        (valid + b" " * pad, "event" if len(valid) + pad <= MAX_LINE else "raw"),
        (b"x" * pad + valid, "raw"),
        (b"x" * pad + EVENT_MARKER + b"x" * pad, "raw"),
    ]
    return draw(st.sampled_from(choices))


any_bytes: st.SearchStrategy[Line] = st.binary(max_size=80).map(
    lambda b: (b.replace(b"\n", b""), "any")
)
marked_bytes: st.SearchStrategy[Line] = st.binary(max_size=80).map(
    lambda b: (EVENT_MARKER + b.replace(b"\n", b""), "any")
)

hostile_lines: st.SearchStrategy[Line] = st.one_of(
    valid_events(),
    deep_events(),
    number_events(),
    huge_events(),
    odd_markers(),
    any_bytes,
    marked_bytes,
)


@st.composite
def scripts(draw: st.DrawFn, max_lines: int = 6) -> tuple[bytes, list[Line]]:
    """What a child prints on stderr: a few hostile lines, the last maybe unterminated. Lines
    over MAX_LINE are ASCII, so that `expected_entries` knows where they are cut."""
    lines = draw(st.lists(hostile_lines, min_size=1, max_size=max_lines))
    data = b"".join(line + b"\n" for line, _ in lines)
    last, expect = lines[-1]
    if last and draw(st.booleans()):
        # Unterminated: kept as the last entry, never an event (a line ends at a newline).
        data = data[:-1]
        lines[-1] = (last, "any" if expect == "any" else "raw")
    return data, lines


def expected_entries(lines: list[Line]) -> list[tuple[bytes, Expect]]:
    """The entries `lines` must become: one per line, or MAX_LINE pieces of a longer (ASCII)
    line, each raw."""
    out: list[tuple[bytes, Expect]] = []
    for line, expect in lines:
        if len(line) <= MAX_LINE:
            out.append((line, expect))
            continue
        assert line.isascii(), "a long line's pieces are predictable only for ASCII"
        out += [(line[i : i + MAX_LINE], "raw") for i in range(0, len(line), MAX_LINE)]
    return out


def check_entries(got: list[tuple[bytes, str | None]], lines: list[Line]) -> None:
    """Entries (text, event type or None) are what `lines` must become: every byte, in
    order, and an event exactly where one is expected ("any": either), each one servable."""
    want = expected_entries(lines)
    assert [line for line, _ in got] == [line for line, _ in want]
    for (line, kind), (_, expect) in zip(got, want, strict=True):
        if expect == "raw":
            assert kind is None, line[:200]
        elif expect == "event":
            assert kind is not None and kind == json.loads(line.split(b":", 1)[1])["type"]
        if kind is not None:  # whatever is an event can be sent to every reader
            fields = event_fields(line.rstrip(b"\r")[len(EVENT_MARKER) :])
            assert fields is not None and kind in EVENT_TYPES
            msgspec.msgpack.encode(fields)


def check_served(entries: Sequence[LogEntry], lines: list[Line]) -> None:
    """A log as a client got it: its stderr entries are `lines` as expected (invalid UTF-8
    replaced), and each event's fields are its JSON without `type`."""
    got = [
        (e.line.encode(), None if e.type == "raw_output" else e.type)
        for e in entries
        if e.stream == "stderr"
    ]
    check_entries(got, [(line.decode("utf-8", "replace").encode(), x) for line, x in lines])
    for e in entries:
        if e.type != "raw_output":
            assert e.stream == "stderr", e
            payload = json.loads(e.line.rstrip("\r")[len(EVENT_MARKER) :])
            assert e.event == {k: v for k, v in payload.items() if k != "type"}
