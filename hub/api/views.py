"""The heatmap a REST request asks for: the live window, or its view of some exchanges
(`exchange=`, hub.analytics.views), shared by the heatmap, unified and timeline paths."""

from __future__ import annotations

from hub.analytics.rows import merge
from hub.analytics.views import exchange_view
from hub.channels import WINDOWS, heatmap_channel
from hub.errors import RequestError
from hub.models import HeatmapSnapshot
from hub.service.hubs import HubView


async def heatmap_of(
    hub: HubView, symbol: str, window: str, exchanges: frozenset[str] | None
) -> HeatmapSnapshot:
    """The window's snapshot (of `exchanges` only, when given); 503 while there is none."""
    live = hub.fanout.snapshot(heatmap_channel(symbol, window))
    if live is None:
        raise starting_up(symbol)
    if exchanges is None or live.bin_width == 0:
        return live
    span = WINDOWS[window]
    held = merge([chunk async for chunk in hub.rows(symbol, live.time - span)])
    settings = hub.settings
    return exchange_view(
        live, held, exchanges, settings.kde_bandwidth_pct, settings.price_range_pct, span
    )


def starting_up(symbol: str) -> RequestError:
    return RequestError(503, f"no heatmap for {symbol} yet; the hub is starting up")
