"""An odd lap of the demo played mirrored (see hub.feeds.replay): a price p becomes
product / p, per symbol, so the OKX order-book and trade frames handed whole to their
consumer must be mirrored like the liquidations, or the book sits at the recorded prices
while the fills around it are mirrored.

Mirroring turns the book over: bids become asks (a high bid is a low ask), a taker buy
a taker sell, and sizes scale so notionals stay as recorded. Book prices keep more digits
than a liquidation's: two recorded ticks must never round onto one level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from hub.feeds.okx_book_wire import BOOKS, TRADES, BookFrame, TradesFrame, parse_frame, symbol_of
from hub.market.book import Level
from hub.models import round_significant

LAP_DIGITS = 6  # a lap's scaled prices and sizes, at about an exchange's own precision
BOOK_PRICE_DIGITS = 10  # distinct for every recorded tick
TAKER_FLIPPED = {"buy": "sell", "sell": "buy"}

Product = Callable[[str], float | None]  # a symbol's mirror product; None: played as recorded


def _number(value: float) -> str:
    return format(value, "g") if value.is_integer() else repr(value)


def _level(level: Level, product: float) -> Level:
    price = float(level[0])
    mirrored = round_significant(product / price, BOOK_PRICE_DIGITS)
    size = float(level[1])
    size = size and round_significant(size * price / mirrored, LAP_DIGITS)
    return [_number(mirrored), _number(size), *level[2:]]


def mirror_okx_frame(raw: bytes, product_of: Product) -> bytes:
    """An OKX `books` or `trades` frame mirrored; any other frame as it is."""
    frame = parse_frame(raw)
    if isinstance(frame, BookFrame):
        product = product_of(symbol_of(frame.inst_id))
        if product is None:
            return raw
        data = msgspec.structs.replace(
            frame.data,
            asks=[_level(level, product) for level in frame.data.bids],
            bids=[_level(level, product) for level in frame.data.asks],
        )
        return _encode(BOOKS, frame.inst_id, [data], frame.action)
    if isinstance(frame, TradesFrame):
        trades = []
        for trade in frame.trades:
            product = product_of(symbol_of(trade.instId))
            if product is None:
                trades.append(trade)
                continue
            price = float(trade.px)
            mirrored = round_significant(product / price, LAP_DIGITS)
            size = round_significant(float(trade.sz) * price / mirrored, LAP_DIGITS)
            trades.append(
                msgspec.structs.replace(
                    trade,
                    px=_number(mirrored),
                    sz=_number(size),
                    side=TAKER_FLIPPED.get(trade.side, trade.side),
                )
            )
        return _encode(TRADES, frame.inst_id, trades)
    return raw


def _encode(channel: str, inst_id: str, data: list[Any], action: str | None = None) -> bytes:
    frame: dict[str, object] = {"arg": {"channel": channel, "instId": inst_id}, "data": data}
    if action is not None:
        frame["action"] = action
    return msgspec.json.encode(frame)
