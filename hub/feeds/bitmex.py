"""BitMEX liquidation feed: the `liquidation` table (every symbol, filtered here to the
tracked ones); with a `market_sink`, the `instrument` table of each tracked symbol's
linear perpetual (open interest, mark price) on the same connection.

The instruments list (`GET {BITMEX_REST_URL}/api/v1/instrument/active`) gives each
perpetual's contract size; it is fetched before the first subscription and daily (the
`ExchangeFeed` base), and names the tracked symbols BitMEX does not list. Liquidation
rows carry no time: each is timed on arrival (bitmex_wire). Keep-alive follows BitMEX's
advice: the text `ping` every 5 s, answered `pong`.
"""

from __future__ import annotations

from typing import ClassVar

from hub.feeds.base import Decoded
from hub.feeds.bitmex_wire import (
    INSTRUMENTS,
    INSTRUMENTS_PATH,
    LIQUIDATIONS,
    PING,
    BitmexDecoder,
    is_pong,
    subscribe_request,
)
from hub.feeds.connection import KeepAlive, Timing
from hub.feeds.exchange import ExchangeFeed


class BitmexFeed(ExchangeFeed):
    name = "bitmex"
    note = "BitMEX shows every liquidation order, counted once at its insert and timed on arrival"
    timing = Timing(ping_interval=5.0)
    keep_alive = KeepAlive(PING, is_pong)
    instruments_path: ClassVar[str | None] = INSTRUMENTS_PATH
    decoder: BitmexDecoder

    def new_decoder(self) -> BitmexDecoder:
        return BitmexDecoder()

    def decode(self, frame: bytes, received_ms: int) -> Decoded:
        return self.decoder.decode(frame, received_ms)

    def is_listed(self, symbol: str) -> bool:
        return any(c.symbol == symbol for c in self.decoder.contracts.values())

    def subscriptions(self) -> list[str]:
        everything = subscribe_request("subscribe", [LIQUIDATIONS])
        return [everything, *self.open_interest_requests("subscribe", self.symbols or set())]

    def market_requests(self, op: str, symbols: set[str]) -> list[str]:
        """The `instrument` table of the linear perpetuals of `symbols`."""
        names = sorted(
            f"{INSTRUMENTS}:{name}"
            for name, c in self.decoder.contracts.items()
            if c.symbol in symbols and not c.inverse
        )
        return [subscribe_request(op, names)] if names else []
