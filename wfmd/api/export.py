"""Export: one execution whole, streamed row by row in constant memory."""

from __future__ import annotations

from wfmctl.protocol import Export, ExportEnd, ExportRows, ExportStart
from wfmd.api.context import Services
from wfmd.api.server import Send
from wfmd.store import logs

# Log data per frame: a few MiB keeps each frame well below protocol.MAX_FRAME while the
# per-frame costs (a read transaction, a wake-up) stay negligible.
EXPORT_FRAME_BYTES = 4 * 1024 * 1024


async def export(s: Services, request: Export, send: Send) -> None:
    """ExportStart, ExportRows until the last row committed, ExportEnd. Each frame is read in
    one read transaction; an execution still running is exported as far as it has got."""
    stored = await s.resolve(request.handle)
    await send(ExportStart(execution=s.live(stored)))
    after = -1
    entries = 0
    while True:
        rows = await s.store.read(logs.read_rows, stored.id, after, EXPORT_FRAME_BYTES)
        if not rows:
            break
        out = logs.export_rows(rows)
        entries += sum(row[3] for row in rows)
        after = rows[-1][0]
        await send(ExportRows(rows=out))
    await send(ExportEnd(entries=entries))
