"""REST: `GET /api/heatmap/export/{symbol}`, every event of a window as a download.

The body is streamed a chunk of rows at a time (`HubView.rows`), so a 30-day export of a
busy symbol, a million events or more, never sits whole in memory: CSV and JSON are
written a chunk at a time, Parquet a row group per chunk (pyarrow, zstd). Each format
carries the same fields, those of a liquidation event (docs/rest.md), oldest first.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from hub.analytics.leverage import TIERS, tier_index
from hub.analytics.rows import Named, Rows, events_of
from hub.api.filters import exchange_param, filtered
from hub.api.responses import choice_param, endpoint, tracked_symbol, window_param
from hub.channels import WINDOWS, heatmap_channel
from hub.models import LiquidationEvent
from hub.rounding import rounded_column
from hub.service.hubs import HubView

FORMATS = ("csv", "json", "parquet")
FIELDS = tuple(LiquidationEvent.__struct_fields__)
MEDIA = {"csv": "text/csv", "json": "application/json", "parquet": "application/vnd.apache.parquet"}
SCHEMA = pa.schema(
    [
        ("exchange", pa.string()),
        ("symbol", pa.string()),
        ("side", pa.string()),
        ("price", pa.float64()),
        ("quantity", pa.float64()),
        ("notional", pa.float64()),
        ("time", pa.int64()),
        ("est_leverage", pa.float64()),
        ("tier", pa.string()),
    ]
)
_encoder = msgspec.json.Encoder()


class ExportApi:
    def __init__(self, hub: HubView) -> None:
        self.hub = hub

    @endpoint
    async def export(self, request: Request) -> Response:
        fmt = choice_param(request, "format", FORMATS) or "csv"
        symbol = tracked_symbol(request, self.hub.tracked())
        window = window_param(request)
        side = choice_param(request, "side", ("long", "short"))
        exchanges = exchange_param(request)
        # The window ends at the processor's present, which a `web` process only knows from
        # the stream (a replay's clock is not the wall clock).
        snapshot = self.hub.fanout.snapshot(heatmap_channel(symbol, window))
        now = snapshot.time if snapshot is not None and snapshot.time else self.hub.clock()
        chunks = _rounded(filtered(self.hub.rows(symbol, now - WINDOWS[window]), side, exchanges))
        body = {"csv": _csv, "json": _json, "parquet": _parquet}[fmt](chunks, symbol)
        filename = f"{symbol}_{window}_liquidations.{fmt}"
        headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
        return StreamingResponse(body, media_type=MEDIA[fmt], headers=headers)


async def _rounded(chunks: AsyncIterator[Named]) -> AsyncIterator[Named]:
    """Chunks with the numbers every output carries (hub.rounding), the same in each format."""
    async for rows, names in chunks:
        price, quantity, notional, leverage = (
            rounded_column(column)
            for column in (rows.price, rows.quantity, rows.notional, rows.leverage)
        )
        rounded = Rows(
            rows.time, price, quantity, notional, leverage, rows.short, rows.exchange, rows.arrival
        )
        yield Named(rounded, names)


async def _csv(chunks: AsyncIterator[Named], symbol: str) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FIELDS)
    yield buffer.getvalue().encode()
    async for rows, names in chunks:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(msgspec.structs.astuple(e) for e in events_of(rows, names, symbol))
        yield buffer.getvalue().encode()


async def _json(chunks: AsyncIterator[Named], symbol: str) -> AsyncIterator[bytes]:
    """The REST envelope, `{"success": true, "data": [event, ...]}`, a chunk at a time."""
    yield b'{"success":true,"data":['
    first = True
    async for rows, names in chunks:
        encoded = _encoder.encode(events_of(rows, names, symbol))[1:-1]  # the list's items
        yield encoded if first else b"," + encoded
        first = False
    yield b"]}"


async def _parquet(chunks: AsyncIterator[Named], symbol: str) -> AsyncIterator[bytes]:
    sink = _Collected()
    writer = pq.ParquetWriter(sink, SCHEMA, compression="zstd")
    async for rows, names in chunks:
        writer.write_table(_table(rows, names, symbol))
        yield sink.take()
    writer.close()
    yield sink.take()


class _Collected(io.RawIOBase):
    """A write-only file whose bytes are taken as they come (ParquetWriter's sink)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        part = bytes(data)
        self._parts.append(part)
        self._written += len(part)
        return len(part)

    def tell(self) -> int:
        return self._written

    def take(self) -> bytes:
        taken, self._parts = b"".join(self._parts), []
        return taken


def _table(rows: Any, names: list[str], symbol: str) -> pa.Table:
    estimated = ~np.isnan(rows.leverage)
    tiers = np.array([None, *TIERS], dtype=object)[
        np.where(estimated, tier_index(rows.leverage) + 1, 0)
    ]
    return pa.table(
        {
            "exchange": pa.array(np.array(names or [""], dtype=object)[rows.exchange], pa.string()),
            "symbol": pa.array([symbol] * len(rows), pa.string()),
            "side": pa.array(np.where(rows.short, "short", "long"), pa.string()),
            "price": rows.price,
            "quantity": rows.quantity,
            "notional": rows.notional,
            "time": rows.time,
            "est_leverage": pa.array(rows.leverage, pa.float64(), mask=~estimated),
            "tier": pa.array(tiers, pa.string()),
        },
        schema=SCHEMA,
    )
