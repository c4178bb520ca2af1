"""The export formats: one execution (metadata, parameters, every log entry) as JSON lines,
one JSON document, or text. Written row by row, in constant memory.

Shared by `wfmctl export` and wfmd's archive, which writes the JSON-lines form. Every entry
has the shape of a `LogEntry` (`seq`, `ts`, `stream`, `type`, `line`, `event`), as
`wfmctl logs --json` prints it:

- `jsonl`: `{"type": "execution", "execution": {...}}`, then one entry per line;
- `json`: `{"execution": {...}, "entries": [...]}`;
- `text`: `# key: value` lines, then one `SEQ<TAB>TIME<TAB>STREAM<TAB>TYPE<TAB>LINE` per
  entry, the line as printed (bytes, not decoded).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from itertools import chain, repeat
from typing import Literal, Protocol

import msgspec

from wfmctl.protocol import Execution, ExportRow, to_builtins

Format = Literal["jsonl", "json", "text"]
FORMATS: tuple[Format, ...] = ("jsonl", "json", "text")

_encode = msgspec.json.Encoder().encode


class Sink(Protocol):
    """Where an export goes: a binary file, or a gzip stream over one."""

    def write(self, data: bytes, /) -> object: ...


class ExportWriter:
    """Writes one execution to `out` (binary) in `fmt`: `start`, `rows` as often as needed,
    `end`."""

    def __init__(self, out: Sink, fmt: Format) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r} (one of: {', '.join(FORMATS)})")
        self.out = out
        self.fmt = fmt
        self.entries = 0

    def start(self, execution: Execution) -> None:
        doc = to_builtins(execution)
        if self.fmt == "jsonl":
            self.out.write(_encode({"type": "execution", "execution": doc}) + b"\n")
        elif self.fmt == "json":
            self.out.write(b'{"execution":' + _encode(doc) + b',"entries":[')
        else:
            self.out.write(_text_header(execution))

    def rows(self, rows: Iterable[ExportRow]) -> None:
        parts: list[bytes] = []
        for row in rows:
            if self.fmt == "text":
                lines = split_lines(row.data)
                parts.append(_text_entries(row, lines))
                self.entries += len(lines)
                continue
            joined, count = _json_entries(row, b"\n" if self.fmt == "jsonl" else b",")
            if not count:
                continue
            if self.fmt == "jsonl":
                parts.append(joined + b"\n")
            else:
                parts.append((b"," if self.entries else b"") + joined)
            self.entries += count
        self.out.write(b"".join(parts))

    def end(self) -> None:
        if self.fmt == "json":
            self.out.write(b"]}\n")


def split_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def _json_entries(row: ExportRow, sep: bytes) -> tuple[bytes, int]:
    """A row's entries as JSON objects joined by `sep`, and how many there are."""
    if row.type != "raw_output" or row.event is not None:
        doc = {
            "seq": row.seq,
            "ts": row.ts,
            "stream": row.stream,
            "type": row.type,
            "line": row.data.rstrip(b"\n").decode("utf-8", "replace"),
            "event": row.event,
        }
        return _encode(doc), 1
    # The hot path, in C loops only: every line of a row shares its time, stream and type;
    # the lines are encoded as one JSON array, whose elements are separated by `","`
    # (a quote inside an element is always escaped, so that never occurs in one).
    lines = row.data.decode("utf-8", "replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines:
        return b"", 0
    pieces = _encode(lines)[2:-2].split(b'","')
    middle = b',"ts":' + _encode(row.ts) + b',"stream":"' + row.stream.encode()
    middle += b'","type":"raw_output","line":"'
    seqs = map(b'{"seq":%d'.__mod__, range(row.seq, row.seq + len(pieces)))
    end = b'","event":null}' + sep
    joined = b"".join(chain.from_iterable(zip(seqs, repeat(middle), pieces, repeat(end))))
    return joined[: -len(sep)], len(pieces)


def _text_entries(row: ExportRow, lines: list[bytes]) -> bytes:
    middle = b"\t%s\t%s\t%s\t" % (_iso(row.ts).encode(), row.stream.encode(), row.type.encode())
    seqs = map(b"%d".__mod__, range(row.seq, row.seq + len(lines)))
    return b"".join(chain.from_iterable(zip(seqs, repeat(middle), lines, repeat(b"\n"))))


def _iso(ts: float) -> str:
    seconds, millis = divmod(round(ts * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _text_header(execution: Execution) -> bytes:
    lines = [f"# wfm export of {execution.handle}"]
    for key, value in to_builtins(execution).items():
        if key == "params":
            continue
        if key.endswith("_at") and isinstance(value, float):
            value = _iso(value)
        lines.append(f"# {key}: {value}")
    for name, value in execution.params.items():
        lines.append(f"# param {name}: {value}")
    lines.append("# seq\ttime\tstream\ttype\tline")
    return ("\n".join(lines) + "\n").encode()
