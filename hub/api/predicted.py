"""`GET /api/heatmap/predicted/{symbol}?timeWindow=&k=`: predicted liquidation levels;
`GET /api/heatmap/predicted/{symbol}/timeline?timeWindow=&buckets=`: the same levels over
time (hub.analytics.predicted_timeline), on the realized timeline's buckets.

The levels come from the fan-out's replica of `predicted:{SYMBOL}`, the very state
WebSocket clients reach, in `serve` and `web` alike. `consumed` is what the price crossed
within the window (of the last `max_consumed` crossed levels the channel holds).
`validation` scores the window's levels against the window's realized liquidations (the
method is in docs/predicted.md); levels that decayed away are not held, so they are not
counted.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hub.analytics.predicted_timeline import predicted_timeline
from hub.analytics.predicted_validation import LevelSpan, Realized, validate
from hub.api.responses import endpoint, int_param, ok, tracked_symbol, window_param
from hub.api.timeline import buckets_param, window_end
from hub.channels import WINDOWS, heatmap_channel, predicted_channel
from hub.errors import RequestError
from hub.models import PredictedSnapshot
from hub.service.hubs import HubView

METHOD = (
    "rises in open interest are new positions, long or short by price direction (or taker "
    "flow), at the interval's mean price, spread over leverage tiers; each is liquidated at "
    "entry x (1 -/+ 1/leverage +/- maintenance margin); consumed when price reaches it; "
    "decayed by half every half-life"
)
VALIDATION_DRAWS = 200
VALIDATION_SEED = 0


class PredictedApi:
    def __init__(self, hub: HubView) -> None:
        self.hub = hub

    @endpoint
    async def levels(self, request: Request) -> Response:
        symbol = tracked_symbol(request, self.hub.tracked())
        window = window_param(request)
        k = int_param(request, "k", 1, 0, 50)
        snapshot = self._snapshot(symbol)
        # The window ends at the processor's present: a replay's clock is not the wall clock.
        heatmap = self.hub.fanout.snapshot(heatmap_channel(symbol, window))
        now = max(snapshot.time, heatmap.time if heatmap is not None else 0) or self.hub.clock()
        since = now - WINDOWS[window]
        consumed = [level for level in snapshot.consumed if level.consumed >= since]
        validation = None
        if snapshot.bin_width > 0:
            spans = [LevelSpan(lv.price, lv.opened, None) for lv in snapshot.levels]
            spans += [LevelSpan(lv.price, lv.opened, lv.consumed) for lv in consumed]
            events = await self.hub.events(symbol, since, None)
            realized = [Realized(e.time, e.price, e.notional) for e in events]
            validation = validate(
                spans, realized, snapshot.bin_width, k, VALIDATION_DRAWS, VALIDATION_SEED
            )
        return ok(
            {
                "symbol": symbol,
                "window": window,
                "time": now,
                "epoch": snapshot.epoch,
                "seq": snapshot.seq,
                "reference_price": snapshot.reference_price,
                "bin_width": snapshot.bin_width,
                "levels": snapshot.levels,
                "consumed": consumed,
                "model": {
                    "estimated": True,
                    "method": METHOD,
                    "parameters": self.hub.settings.predicted.parameters(),
                },
                "validation": validation,
            }
        )

    @endpoint
    async def timeline(self, request: Request) -> Response:
        symbol = tracked_symbol(request, self.hub.tracked())
        window = window_param(request)
        buckets = buckets_param(request)
        snapshot = self._snapshot(symbol)
        # The realized timeline's present and buckets: the two matrices line up.
        now = max(window_end(self.hub, symbol, window), snapshot.time)
        matrix = predicted_timeline(
            snapshot.levels, snapshot.consumed, snapshot.bin_width, now, WINDOWS[window], buckets
        )
        return ok(
            {
                "symbol": symbol,
                "window": window,
                "epoch": snapshot.epoch,
                "seq": snapshot.seq,
                **msgspec.structs.asdict(matrix),
            }
        )

    def _snapshot(self, symbol: str) -> PredictedSnapshot:
        snapshot = self.hub.fanout.predicted(predicted_channel(symbol))
        if snapshot is None:
            raise RequestError(503, f"no predicted levels for {symbol} yet; the hub is starting up")
        return snapshot
