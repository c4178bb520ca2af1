"""SQLite's sqlar format for one row's data: zlib-compressed only when that makes it
smaller, with its size as printed beside it (see schema/0009_compression.sql)."""

from __future__ import annotations

import zlib
from typing import Any

# zlib's level: 6 (its default, and sqlar's) is within a few percent of 9 on logs, at half
# the CPU time (bench_export --compress).
LEVEL = 6


def pack(data: bytes) -> tuple[bytes, int]:
    """What to store for `data`: (data or its compressed form, raw_size)."""
    packed = zlib.compress(data, LEVEL)
    return (packed if len(packed) < len(data) else data), len(data)


def unpack(data: bytes, raw_size: int | None) -> bytes:
    """A stored row's data as printed (sqlar_uncompress). A row that cannot be inflated
    (written by hand) is served as stored, as every reader serves odd rows."""
    if raw_size is None or raw_size <= 0 or raw_size == len(data):
        return data
    try:
        return zlib.decompress(data)
    except zlib.error:
        return data


def sqlar_uncompress(*args: Any) -> Any:
    """SQL's `sqlar_uncompress(data, sz)`, for wfmd's own connections (the views use it)."""
    data, raw_size = args
    if not isinstance(data, bytes) or not isinstance(raw_size, int):
        return data
    return unpack(data, raw_size)
