"""REST: `GET /api/heatmap/liquidations/{symbol}/timeline`, the realized-liquidations matrix
and the mark price's candles on the same buckets.

The grid is read from the window's heatmap snapshot in the fan-out's replica (bin width,
reference price, epoch), which `serve` and `web` both hold, and the events from
`HubView.rows` (the processor in `serve`, the durable log in `web`), so both processes
answer the same matrix. The window ends at the hub's clock (a replay's own clock in
`serve`), or at the snapshot's time when that is later (a `web` process fed by an ingest
whose clock runs ahead). Not at the snapshot's time alone: a quiet symbol's heatmap is not
re-flushed, and a chart must not end where the market last moved.

The candles come from `HubView.candle_ring`: the mark prices `ingest` holds (`serve`), or
the copy it keeps in Redis (`web`), so both answer the same candles too.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hub.analytics.candles import bucket_candles, tier_for
from hub.analytics.grid import PriceGrid
from hub.analytics.rows import merge
from hub.analytics.timeline import timeline
from hub.api.filters import exchange_param, filtered
from hub.api.responses import endpoint, int_param, ok, tracked_symbol, window_param
from hub.channels import WINDOWS, heatmap_channel
from hub.service.hubs import HubView

DEFAULT_BUCKETS = 60
MAX_BUCKETS = 1000


class TimelineApi:
    def __init__(self, hub: HubView) -> None:
        self.hub = hub

    @endpoint
    async def timeline(self, request: Request) -> Response:
        symbol = tracked_symbol(request, self.hub.tracked())
        window = window_param(request)
        buckets = buckets_param(request)
        snapshot = self.hub.fanout.snapshot(heatmap_channel(symbol, window))
        grid = None
        if snapshot is not None and snapshot.bin_width > 0:
            range_pct = self.hub.settings.price_range_pct
            grid = PriceGrid(
                snapshot.bin_width, snapshot.reference_price, range_pct, snapshot.epoch
            )
        now = window_end(self.hub, symbol, window)
        span = WINDOWS[window]
        chunks = filtered(self.hub.rows(symbol, now - span), None, exchange_param(request))
        held = merge([chunk async for chunk in chunks])
        matrix = timeline(held.rows, grid, now, span, buckets)
        ring = await self.hub.candle_ring(symbol, tier_for(span, buckets))
        candles = bucket_candles(ring, now, span, buckets) if ring is not None else [None] * buckets
        body = {"symbol": symbol, "window": window, **msgspec.structs.asdict(matrix)}
        return ok({**body, "candles": candles})


def buckets_param(request: Request) -> int:
    return int_param(request, "buckets", DEFAULT_BUCKETS, 1, MAX_BUCKETS)


def window_end(hub: HubView, symbol: str, window: str) -> int:
    """The present a timeline ends at: the hub's clock, or the window's latest heatmap
    update when that is later (see the module doc)."""
    snapshot = hub.fanout.snapshot(heatmap_channel(symbol, window))
    return max(hub.clock(), snapshot.time if snapshot is not None else 0)
