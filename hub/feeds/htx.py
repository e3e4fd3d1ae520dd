"""HTX liquidation feed: `public.*.liquidation_orders` on the USDT-margined notification
WebSocket (not the market-data one), one subscription for every contract (filtered here
to the tracked symbols); with a `market_sink`, open interest polled over REST.

Every frame is GZIP-compressed (the connection inflates it). Keep-alive is HTX's own:
it sends `{"op":"ping","ts":...}` about every 5 s and closes the connection after five
unanswered; the connection answers each `{"op":"pong","ts":...}`, and those pings are
life for the watchdog, not messages. The notification channel carries no open interest:
`GET {HTX_REST_URL}/linear-swap-api/v1/swap_open_interest` answers for every contract in
one request, polled every OPEN_INTEREST_EVERY_S (a replay of a recording holds those
answers, but does not hand them to the predicted levels: only frames are replayed as
market data).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from hub.errors import UpstreamError
from hub.feeds.base import count_decoded, deliver_market
from hub.feeds.connection import KeepAlive, Timing
from hub.feeds.exchange import ExchangeFeed
from hub.feeds.htx_wire import (
    OPEN_INTEREST_PATH,
    HtxDecoder,
    parse_open_interest,
    pong,
    subscribe_request,
)

log = logging.getLogger("hub.feeds")
OPEN_INTEREST_EVERY_S = 10.0


def _never(frame: bytes) -> bool:
    return False  # HTX sends the pings; the protocol pong of ours is not a frame


class HtxFeed(ExchangeFeed):
    name = "htx"
    note = "HTX pushes liquidation_orders of every USDT-margined contract; completeness not stated"
    timing = Timing(ping_interval=20.0)
    keep_alive = KeepAlive(None, _never, pong)
    gzip = True
    open_interest_every_s = OPEN_INTEREST_EVERY_S

    def new_decoder(self) -> HtxDecoder:
        return HtxDecoder()

    def subscriptions(self) -> list[str]:
        return [subscribe_request()]

    def background(self) -> list[Coroutine[Any, Any, None]]:
        polls = [self._poll_open_interest()] if self.market_sink is not None else []
        return [*super().background(), *polls]

    async def _poll_open_interest(self) -> None:
        while True:
            try:
                decoded = parse_open_interest(await self.get(OPEN_INTEREST_PATH))
            except UpstreamError as error:
                self.status.count_anomaly("open_interest_failed", str(error))
            else:
                count_decoded(self.status, decoded)
                deliver_market(self.status, decoded, self.symbols, self.market_sink)
            await asyncio.sleep(self.open_interest_every_s)
