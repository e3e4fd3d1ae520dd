"""REST handlers for order-book liquidity and the unified view.

Both read what every serving process holds, in `serve` and in `web` alike: the latest
`liquidity:{SYMBOL}` message and the heatmap replica from the fan-out, CoinGlass from
status. So a `web` process answers exactly as the `serve` process would.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hub.analytics.insights import insights
from hub.analytics.liquidity import Liquidity
from hub.api.filters import exchange_param
from hub.api.responses import endpoint, ok, window_param
from hub.api.rest import RestApi
from hub.api.views import heatmap_of
from hub.channels import predicted_channel
from hub.errors import RequestError
from hub.models import HeatmapSnapshot

_liquidity_decoder = msgspec.json.Decoder(Liquidity)
NEAREST_LEVELS = 10  # predicted levels closest to the reference price, in unified


class LiquidityApi(RestApi):
    def _latest(self, symbol: str) -> tuple[bytes | None, str]:
        """The latest analysis as sent on the channel, or None and why there is none."""
        if self.hub.settings.liquidity == "off":
            return None, "liquidity is off on this hub (HEATMAP_LIQUIDITY=off)"
        state = self.hub.fanout.channels.get(f"liquidity:{symbol}")
        if state is None or not state.history:
            return None, f"no OKX order book synced for {symbol} yet; try again shortly"
        data = bytes(state.history[-1][1].header.data)
        notice = _liquidity_decoder.decode(data)
        if not notice.synced:
            return None, f"{symbol}: {notice.error or 'order book not synced'}"
        return data, ""

    @endpoint
    async def liquidity(self, request: Request) -> Response:
        symbol = self._symbol(request)
        data, why = self._latest(symbol)
        if data is None:
            raise RequestError(503, why)
        return ok(msgspec.Raw(data))

    @endpoint
    async def unified(self, request: Request) -> Response:
        symbol = self._symbol(request)
        window = window_param(request)
        exchanges = exchange_param(request)
        try:
            snapshot: HeatmapSnapshot | None = await heatmap_of(self.hub, symbol, window, exchanges)
        except RequestError:  # no heatmap yet: the rest of the view stands on its own
            snapshot = None
        data, why = self._latest(symbol)
        liquidity = _liquidity_decoder.decode(data) if data is not None else None
        clusters = snapshot.clusters if snapshot is not None else []
        predicted = self.hub.fanout.predicted(predicted_channel(symbol))
        levels = predicted.levels if predicted is not None else []
        nearest = sorted(levels, key=lambda level: abs(level.price - predicted.reference_price))
        status = await self.hub.status()
        coinglass = _coinglass_of(symbol, status.get("sources", {}).get("coinglass"))
        return ok(
            {
                "symbol": symbol,
                "window": window,
                "heatmap": None
                if snapshot is None
                else {
                    "reference_price": snapshot.reference_price,
                    "statistics": snapshot.statistics,
                    "clusters": snapshot.clusters,
                },
                "liquidity": liquidity,
                "liquidity_error": why or None,
                "predicted": nearest[:NEAREST_LEVELS],
                "coinglass": coinglass,
                "insights": insights(clusters, liquidity, levels),
            }
        )


def _coinglass_of(symbol: str, entry: Any) -> dict[str, Any]:
    """The symbol's CoinGlass comparison out of the status entry (Structs in `serve`,
    plain JSON in `web`), or `{"enabled": false}`."""
    entry = msgspec.to_builtins(entry) if entry is not None else None
    if not entry or not entry.get("enabled"):
        return {"enabled": False}
    checked = entry.get("symbols", {}).get(symbol) or {}
    return {
        "enabled": True,
        "window": entry.get("window"),
        "coinglass": checked.get("coinglass"),  # CoinGlass's own, none before its answer
        "comparison": checked.get("comparison"),  # only over hours both cover
        "updated": entry.get("updated"),
        "last_error": entry.get("last_error"),
    }
