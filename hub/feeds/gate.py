"""Gate liquidation feed: `futures.public_liquidates` with `["!all"]` on the USDT-settled
futures WebSocket, one subscription for every contract (filtered here to the tracked
symbols); with a `market_sink`, each tracked contract's `futures.contract_stats` (open
interest, mark price) on the same connection.

The contracts list (`GET {GATE_REST_URL}/api/v4/futures/usdt/contracts`) gives each
contract's `quanto_multiplier`; it is fetched before the first subscription and daily
(the `ExchangeFeed` base). The handshake asks for decimal sizes (`X-Gate-Size-Decimal:
1`). Keep-alive: Gate pings at the protocol level (answered by the WebSocket library),
and the feed sends Gate's application `futures.ping` every 20 s, whose `futures.pong` is
life for the watchdog. Under `*` no contract_stats is subscribed (one per contract).
"""

from __future__ import annotations

from typing import ClassVar

from hub.feeds.connection import KeepAlive, Timing
from hub.feeds.exchange import ExchangeFeed
from hub.feeds.gate_wire import (
    ALL_CONTRACTS,
    CONTRACT_STATS,
    CONTRACTS_PATH,
    LIQUIDATIONS,
    GateDecoder,
    contract_of,
    is_pong,
    ping,
    request,
)

STATS_INTERVAL = "1m"


class GateFeed(ExchangeFeed):
    name = "gate"
    note = (
        "Gate pushes every liquidation in one-second batches since 2026-08-20 "
        "(before: at most one per contract per second)"
    )
    timing = Timing(ping_interval=20.0)
    keep_alive = KeepAlive(ping, is_pong)
    headers: ClassVar[dict[str, str]] = {"X-Gate-Size-Decimal": "1"}
    instruments_path: ClassVar[str | None] = CONTRACTS_PATH
    decoder: GateDecoder

    def new_decoder(self) -> GateDecoder:
        return GateDecoder()

    def is_listed(self, symbol: str) -> bool:
        return contract_of(symbol) in self.decoder.multipliers

    def subscriptions(self) -> list[str]:
        everything = request(LIQUIDATIONS, "subscribe", [ALL_CONTRACTS])
        return [everything, *self.open_interest_requests("subscribe", self.symbols or set())]

    def market_requests(self, op: str, symbols: set[str]) -> list[str]:
        """`futures.contract_stats` of each listed contract."""
        contracts = [c for s in sorted(symbols) if self.is_listed(s) and (c := contract_of(s))]
        return [request(CONTRACT_STATS, op, [c, STATS_INTERVAL]) for c in contracts]
