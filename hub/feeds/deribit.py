"""Deribit liquidation feed: the public trades channel (`trades.{instrument}.100ms`, the
interval open to unauthenticated connections) of each tracked symbol's perpetual, whose
trades carry the `liquidation` flag; with a `market_sink`, the perpetual's
`incremental_ticker` (open interest, mark price) too. Under `*`, every future's trades
(`trades.future.any.100ms`), filtered to perpetuals, and no ticker.

`BTCUSDT` is read on the inverse `BTC-PERPETUAL` (USD sizes converted at the trade
price), `BTCUSDC` on the linear `BTC_USDC-PERPETUAL` (deribit_wire). No REST call is
needed. Deribit answers a subscription with the channels it took: a tracked symbol whose
channel is missing has no perpetual there, and status names it in `unlisted`.

Keep-alive: `public/set_heartbeat` (every HEARTBEAT_S) on each connection; Deribit then
sends heartbeats and `test_request`s, each answered with `public/test` by the connection
(unanswered, Deribit closes it at once); protocol pings besides.
"""

from __future__ import annotations

import itertools
from typing import Any

from hub.feeds.connection import KeepAlive, Timing
from hub.feeds.deribit_wire import (
    ALL_FUTURES_TRADES,
    TRADES_INTERVAL,
    DeribitDecoder,
    instrument_of,
    is_keep_alive,
    keep_alive_answer,
    rpc,
    subscribed,
)
from hub.feeds.exchange import ExchangeFeed

HEARTBEAT_S = 30  # Deribit's least is 10


class DeribitFeed(ExchangeFeed):
    name = "deribit"
    note = (
        "Deribit flags every liquidation trade; inverse perpetuals count as USDT symbols, "
        "USD sizes converted at the trade price"
    )
    timing = Timing(ping_interval=20.0)
    keep_alive = KeepAlive(None, is_keep_alive, keep_alive_answer)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ids = itertools.count(1)
        self._asked: dict[int, dict[str, str]] = {}  # request id -> {trades channel: symbol}
        self._refused: set[str] = set()

    def new_decoder(self) -> DeribitDecoder:
        return DeribitDecoder()

    def is_listed(self, symbol: str) -> bool:
        return symbol not in self._refused and instrument_of(symbol) is not None

    def subscriptions(self) -> list[str]:
        self._asked.clear()
        self._refused.clear()
        heartbeat = rpc("public/set_heartbeat", {"interval": HEARTBEAT_S}, next(self._ids))
        if self.symbols is None:
            everything = {"channels": [ALL_FUTURES_TRADES]}
            return [heartbeat, rpc("public/subscribe", everything, next(self._ids))]
        return [heartbeat, *self._requests("public/subscribe", self.symbols)]

    def follow(self, added: set[str], removed: set[str]) -> list[str]:
        return self._requests("public/subscribe", added) + self._requests(
            "public/unsubscribe", removed
        )

    def _requests(self, method: str, symbols: set[str]) -> list[str]:
        trades = {
            f"trades.{i}.{TRADES_INTERVAL}": s for s in sorted(symbols) if (i := instrument_of(s))
        }
        if not trades:
            return []
        tickers = [f"incremental_ticker.{c.split('.')[1]}" for c in trades]
        channels = [*trades, *(tickers if self.market_sink is not None else [])]
        request_id = next(self._ids)
        if method == "public/subscribe":
            self._asked[request_id] = trades
        return [rpc(method, {"channels": channels}, request_id)]

    def _on_frame(self, frame: bytes, received_ms: int) -> None:
        reply = subscribed(frame)
        if reply is not None and reply[0] in self._asked:
            asked = self._asked.pop(reply[0])
            self._refused |= {
                symbol for channel, symbol in asked.items() if channel not in reply[1]
            }
            self._note_unlisted()
        super()._on_frame(frame, received_ms)
