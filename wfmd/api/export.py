"""Export: one execution whole, streamed row by row in constant memory."""

from __future__ import annotations

from wfmctl.protocol import Export, ExportEnd, ExportRow, ExportRows, ExportStart
from wfmd.api.context import Services
from wfmd.api.server import Send
from wfmd.store import logs

# Log data per frame: a few MiB keeps each frame well below protocol.MAX_FRAME while the
# per-frame costs (a read transaction, a wake-up) stay negligible.
EXPORT_FRAME_BYTES = 4 * 1024 * 1024

_STREAMS = {logs.STDOUT: "stdout", logs.STDERR: "stderr"}


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
        out = []
        for row in rows:
            key, stream, ts, lines, event, data = row
            if event is None:
                out.append(
                    ExportRow(
                        seq=key & logs.SEQ_MASK,
                        ts=ts / 1000.0,
                        stream=_STREAMS.get(stream, "stderr"),  # type: ignore[arg-type]
                        data=data,
                    )
                )
            else:  # an event: decoded (or not) exactly as every log reader serves it
                for entry in logs.row_entries(row, stored.id):
                    out.append(
                        ExportRow(
                            seq=entry.seq,
                            ts=entry.ts,
                            stream=entry.stream,
                            data=entry.line.encode() + b"\n",
                            type=entry.type,
                            event=entry.event,
                        )
                    )
            entries += lines
        after = rows[-1][0]
        await send(ExportRows(rows=out))
    await send(ExportEnd(entries=entries))
