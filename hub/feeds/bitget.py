"""Bitget liquidation feed: the UTA (v3) public `liquidation` topic of `usdt-futures`,
one subscription for every symbol (filtered here to the tracked ones); with a
`market_sink`, each tracked symbol's `ticker` (open interest, mark price) on the same
connection. No REST call is needed: `amount` is already quote notional.

Keep-alive is Bitget's text `ping`, answered `pong`, every 20 s: the shared intro page
says a connection without a ping for 2 minutes is dropped, older copies of it say 30 s.
Under `*` no ticker is subscribed (one per symbol, and the liquidation topic names no
list of symbols to take them from).
"""

from __future__ import annotations

from hub.feeds.bitget_wire import (
    INST_TYPE,
    LIQUIDATIONS,
    PING,
    BitgetDecoder,
    is_pong,
    subscribe_request,
    ticker_arg,
)
from hub.feeds.connection import KeepAlive, Timing
from hub.feeds.exchange import ExchangeFeed, in_batches

MAX_ARGS_PER_REQUEST = 50


class BitgetFeed(ExchangeFeed):
    name = "bitget"
    note = (
        "Bitget pushes a sample: at most the largest long and short liquidation per symbol "
        "each second (documented since 2026-06-23)"
    )
    timing = Timing(ping_interval=20.0)
    keep_alive = KeepAlive(PING, is_pong)

    def new_decoder(self) -> BitgetDecoder:
        return BitgetDecoder()

    def subscriptions(self) -> list[str]:
        liquidations = {"instType": INST_TYPE, "topic": LIQUIDATIONS}
        return [
            subscribe_request("subscribe", [liquidations]),
            *self._tickers("subscribe", self.symbols),
        ]

    def follow(self, added: set[str], removed: set[str]) -> list[str]:
        return self._tickers("subscribe", added) + self._tickers("unsubscribe", removed)

    def _tickers(self, op: str, symbols: set[str] | None) -> list[str]:
        if self.market_sink is None or not symbols:
            return []
        args = [ticker_arg(s) for s in sorted(symbols)]
        return [subscribe_request(op, list(b)) for b in in_batches(args, MAX_ARGS_PER_REQUEST)]
