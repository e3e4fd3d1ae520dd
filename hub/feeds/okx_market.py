"""OKX's per-instrument market pushes, `open-interest` and `mark-price`, to normalized
updates (no I/O).

Both are subscribed per instrument (`{"channel": ..., "instId": "BTC-USDT-SWAP"}`) on the
liquidation connection, and push `data[]` items with `instId` and `ts` (strings):
- `open-interest`, every 3 s when it changed: `oi` (contracts), `oiCcy` (base coin),
  `oiUsd`. The hub takes `oiCcy`, already in base units, so no contract value is needed.
  It carries no price: the predicted levels price it at the last mark price they saw for
  the symbol.
- `mark-price`, every 200 ms while it changes and every 10 s when not: `markPx`. It feeds
  the candles (after Binance's and Bybit's, hub.analytics.candles) and the predicted
  levels, which so price OKX's open interest with no other exchange configured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from hub.feeds.base import Decoded, MarketUpdate
from hub.feeds.okx_wire import swap_inst_id, swap_symbol
from hub.models import MarkPriceUpdate, OpenInterestUpdate

OPEN_INTEREST = "open-interest"
MARK_PRICE = "mark-price"
CHANNELS = (OPEN_INTEREST, MARK_PRICE)


class OpenInterest(msgspec.Struct, frozen=True):
    instId: str
    oiCcy: str  # base coin
    ts: str
    oi: str = ""  # contracts


class MarkPrice(msgspec.Struct, frozen=True):
    instId: str
    markPx: str
    ts: str


Item = TypeVar("Item", OpenInterest, MarkPrice)


def subscriptions(symbol: str) -> list[dict[str, Any]]:
    """The channel arguments for a hub symbol; none when OKX has no perpetual of that form."""
    inst_id = swap_inst_id(symbol)
    return [] if inst_id is None else [{"channel": c, "instId": inst_id} for c in CHANNELS]


def _open_interest(symbol: str, item: OpenInterest) -> OpenInterestUpdate:
    oi = float(item.oiCcy)
    if not (math.isfinite(oi) and oi >= 0):
        raise ValueError(f"oiCcy {oi}")
    return OpenInterestUpdate("okx", symbol, int(item.ts), oi)


def _mark_price(symbol: str, item: MarkPrice) -> MarkPriceUpdate:
    price = float(item.markPx)
    if not (math.isfinite(price) and price > 0):
        raise ValueError(f"markPx {price}")
    return MarkPriceUpdate("okx", symbol, int(item.ts), price)


def _decoding(
    channel: str, items: type[Item], update: Callable[[str, Item], MarketUpdate]
) -> Callable[[msgspec.Raw], Decoded]:
    decoder = msgspec.json.Decoder(list[items])  # type: ignore[valid-type]

    def decode(data: msgspec.Raw) -> Decoded:
        try:
            pushed = decoder.decode(data)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", f"{channel}: {error}")])
        market: list[MarketUpdate] = []
        anomalies: list[tuple[str, str]] = []
        ignored = 0
        for item in pushed:
            symbol = swap_symbol(item.instId)
            if symbol is None:
                ignored += 1  # an inverse swap or another kind of instrument
                continue
            try:
                market.append(update(symbol, item))
            except ValueError as error:
                anomalies.append(("malformed", f"{channel} {item.instId[:40]}: {error}"))
        return Decoded([], anomalies, ignored=ignored, market=market)

    return decode


DECODERS: dict[str, Callable[[msgspec.Raw], Decoded]] = {
    OPEN_INTEREST: _decoding(OPEN_INTEREST, OpenInterest, _open_interest),
    MARK_PRICE: _decoding(MARK_PRICE, MarkPrice, _mark_price),
}
