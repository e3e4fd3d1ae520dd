"""OKX liquidation feed: the `liquidation-orders` channel, one subscription for every swap;
with a `market_sink`, also `open-interest` and `mark-price` per tracked swap on the same
connection.

Contract values come from the instruments list, fetched before the first subscription
(no subscription without them: every size would be unconvertible) and refreshed daily;
a failed refresh keeps the values held (the `ExchangeFeed` base). Keep-alive is OKX's
text `ping` every 20 s (OKX drops a connection idle for 30 s). Tracked symbols are
filtered here, since the channel cannot be narrowed; status lists tracked symbols OKX
does not list. Open interest and mark prices are subscribed per listed swap (every linear
swap under `*`), in requests of at most MAX_ARGS_PER_REQUEST arguments, and follow symbols
added and removed at run time.
"""

from __future__ import annotations

from typing import ClassVar

from hub.feeds.connection import KeepAlive, Timing
from hub.feeds.exchange import ExchangeFeed, in_batches
from hub.feeds.okx_instruments import instruments_path
from hub.feeds.okx_liquidations import SUBSCRIPTION, OkxLiquidationDecoder
from hub.feeds.okx_market import subscriptions as market_subscriptions
from hub.feeds.okx_wire import PING, is_pong, request, swap_inst_id, swap_symbol

MAX_ARGS_PER_REQUEST = 50  # ~3 KB of arguments, well under what OKX takes in one request


class OkxLiquidationFeed(ExchangeFeed):
    name = "okx"
    note = "OKX pushes liquidation-orders for every swap; not every liquidation"
    timing = Timing(ping_interval=20.0)
    keep_alive = KeepAlive(PING, is_pong)
    instruments_path: ClassVar[str | None] = instruments_path()
    decoder: OkxLiquidationDecoder

    def new_decoder(self) -> OkxLiquidationDecoder:
        return OkxLiquidationDecoder()

    def is_listed(self, symbol: str) -> bool:
        return swap_inst_id(symbol) in self.decoder.contract_values

    def subscriptions(self) -> list[str]:
        if self.symbols is not None:
            wanted = self.symbols
        else:
            wanted = {s for i in self.decoder.contract_values if (s := swap_symbol(i)) is not None}
        return [
            request("subscribe", [SUBSCRIPTION]),
            *self.open_interest_requests("subscribe", wanted),
        ]

    def market_requests(self, op: str, symbols: set[str]) -> list[str]:
        """`open-interest` and `mark-price` of the listed swaps among `symbols`."""
        args = [
            arg for s in sorted(symbols) if self.is_listed(s) for arg in market_subscriptions(s)
        ]
        return [request(op, list(batch)) for batch in in_batches(args, MAX_ARGS_PER_REQUEST)]
