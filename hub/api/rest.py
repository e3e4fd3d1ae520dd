"""REST handlers (docs/rest.md). They read the hub; they never change what it holds.

Heatmap snapshots come from the fan-out's replica, the very state WebSocket clients
reach by applying diffs, so REST and the socket never disagree at the same seq; each is
encoded once per seq and served as bytes (`SnapshotBodies`). Event lists, leverage tiers
and exports are computed from the held events of the window, in `serve` from the
processor and in `web` from the durable log (only as far back as the request needs).

An event's `est_leverage` and `tier` are empty (JSON null, an empty CSV cell) when no
estimate exists: the estimate is the adverse move from the recent price extreme before
the event, so it needs at least two prices of the symbol within the previous 4 hours.
A symbol's first two events (and the first after 4 hours without one) have no such path;
an estimate made up after the fact, from later prices, would not be the method's. The
leverage endpoint counts them as `unknown`.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from hub.analytics.leverage import TierDistribution
from hub.api.bodies import SnapshotBodies
from hub.api.filters import exchange_param, filtered, of_exchanges
from hub.api.responses import choice_param, endpoint, int_param, ok, tracked_symbol, window_param
from hub.api.views import heatmap_of, starting_up
from hub.channels import WINDOWS, heatmap_channel
from hub.models import HeatmapSnapshot, LiquidationEvent
from hub.service.hubs import HubView

OUTLIER_Z = 3.0
LEVERAGE_METHOD = "1 / (adverse move from the recent price extreme + maintenance margin)"


class RestApi:
    def __init__(self, hub: HubView) -> None:
        self.hub = hub
        self.bodies = SnapshotBodies(hub.fanout)

    def _symbol(self, request: Request) -> str:
        return tracked_symbol(request, self.hub.tracked())

    def _snapshot(self, symbol: str, window: str) -> HeatmapSnapshot:
        snapshot = self.hub.fanout.snapshot(heatmap_channel(symbol, window))
        if snapshot is None:
            raise starting_up(symbol)
        return snapshot

    def _present(self, symbol: str, window: str) -> int:
        """Where the window ends: the processor's present, which a `web` process only knows
        from the stream (a replay's clock is not the wall clock)."""
        snapshot = self.hub.fanout.snapshot(heatmap_channel(symbol, window))
        return snapshot.time if snapshot is not None and snapshot.time else self.hub.clock()

    async def _window_events(
        self, request: Request, limit: int | None = None
    ) -> tuple[str, str, list[LiquidationEvent]]:
        symbol = self._symbol(request)
        window = window_param(request)
        side = choice_param(request, "side", ("long", "short"))
        exchanges = exchange_param(request)
        now = self._present(symbol, window)
        if exchanges is None:
            return symbol, window, await self.hub.events(symbol, now - WINDOWS[window], side, limit)
        # The filter runs here, so the limit must follow it.
        events = of_exchanges(await self.hub.events(symbol, now - WINDOWS[window], side), exchanges)
        return symbol, window, events if limit is None else events[:limit]

    @endpoint
    async def heatmap(self, request: Request) -> Response:
        symbol = self._symbol(request)
        window = window_param(request)
        exchanges = exchange_param(request)
        if exchanges is not None:  # a view of some exchanges, made for this request
            return ok(await heatmap_of(self.hub, symbol, window, exchanges))
        body = self.bodies.body(heatmap_channel(symbol, window))
        if body is None:
            raise starting_up(symbol)
        return Response(body, media_type="application/json")

    @endpoint
    async def liquidations(self, request: Request) -> Response:
        limit = int_param(request, "limit", 100, 1, 10_000)
        symbol, window, events = await self._window_events(request, limit)
        statistics = self._snapshot(symbol, window).statistics
        rows: list[dict[str, Any]] = []
        for event in events:
            row = msgspec.structs.asdict(event)
            z_score = (event.notional - statistics.mean) / statistics.std if statistics.std else 0.0
            row["z_score"] = round(z_score, 4)
            row["outlier"] = z_score >= OUTLIER_Z
            rows.append(row)
        return ok(rows)

    @endpoint
    async def leverage(self, request: Request) -> Response:
        symbol = self._symbol(request)
        window = window_param(request)
        side = choice_param(request, "side", ("long", "short"))
        exchanges = exchange_param(request)
        now = self._present(symbol, window)
        tiers = TierDistribution()
        unknown = 0
        chunks = filtered(self.hub.rows(symbol, now - WINDOWS[window]), side, exchanges)
        async for rows, _ in chunks:
            tiers.merge(TierDistribution.of(rows.leverage, rows.notional))
            unknown += int(np.isnan(rows.leverage).sum())
        return ok(
            {
                "symbol": symbol,
                "window": window,
                "estimated": True,
                "method": LEVERAGE_METHOD,
                "unknown": unknown,
                "tiers": tiers.rows(),
            }
        )

    @endpoint
    async def status(self, request: Request) -> Response:
        return ok(await self.hub.status())

    @endpoint
    async def health(self, request: Request) -> Response:
        """200 while the process serves; `degraded` names what is wrong upstream."""
        return ok(await self.hub.health())
