"""Give memory back after bursts of huge output.

glibc's malloc serves a block above its mmap threshold (128 KiB at first) with a mapping of
its own, returned to the system on free. But each time such a block is freed the threshold
rises to its size, up to 32 MiB: after one multi-MiB line or page, every later one comes from
the heap arenas instead, which keep what is freed wherever a small live block sits above it.
A daemon that handles multi-MiB lines now and then (a workflow's output, their pages) then
grows by the arenas' fragments for as long as it runs. Setting the threshold pins it.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's <malloc.h>

# Blocks from this size up get mappings of their own: big enough that the many small and
# middle-sized objects stay in the arenas, small enough for every log line and page of size.
MMAP_THRESHOLD = 256 * 1024


def pin_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD. False where the C library is not glibc
    (nothing to do there)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    pinned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    log.debug("malloc mmap threshold pinned at %d bytes: %s", MMAP_THRESHOLD, pinned)
    return pinned
