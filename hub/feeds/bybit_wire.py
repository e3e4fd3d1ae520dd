"""Bybit V5 public linear frames (`allLiquidation.{SYMBOL}`, `tickers.{SYMBOL}`), decoded
from bytes (no I/O).

A push is `{"topic", "type", "ts", "data": [{"T", "s", "S", "v", "p"}, ...]}`: `data` is an
array, since Bybit batches every liquidation of 500 ms into one push. `S` is the side of
the liquidated **position** (`Buy`: a long was liquidated; the opposite of Binance's order
side), `p` the bankruptcy price, `v` the size in base coin (linear contracts), `T` the
time. Control replies are `{"success", "ret_msg", "op", ...}`; the answer to our JSON ping
is one with `op: "ping"` (`ret_msg: "pong"`). Unknown fields are ignored.

A ticker push is `{"topic", "type", "cs", "ts", "data": {"symbol", "markPrice",
"openInterest", ...}}`: `data` is one object, `openInterest` in base coin. The first push
is a `snapshot`; each `delta` after it carries only the fields that changed, so the
decoder keeps the last mark price per symbol, and open interest is delivered only when
a push carries it.
"""

from __future__ import annotations

import math

import msgspec

from hub.feeds.base import Decoded, MarketUpdate, decode_common, excerpt
from hub.models import LiquidationEvent, MarkPriceUpdate, OpenInterestUpdate, round_notional

TOPIC_PREFIX = "allLiquidation."
TICKERS_PREFIX = "tickers."
PING = '{"op":"ping"}'
_SIDES = {"Buy": "long", "Sell": "short"}


class Liquidation(msgspec.Struct, frozen=True):
    T: int  # time, ms
    s: str  # symbol
    S: str  # position side
    v: str  # size, base coin
    p: str  # bankruptcy price


class Ticker(msgspec.Struct, frozen=True):
    symbol: str
    markPrice: str | None = None
    openInterest: str | None = None  # base coin


class Frame(msgspec.Struct, frozen=True):
    topic: str | None = None
    type: str | None = None
    ts: int | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent
    op: str | None = None
    success: bool | None = None
    ret_msg: str | None = None
    req_id: str | None = None


class _LiquidationPush(msgspec.Struct, frozen=True):
    """The frame almost every one is: a liquidation batch, decoded in one pass."""

    topic: str
    data: list[Liquidation]


_frame_decoder = msgspec.json.Decoder(Frame)
_push_decoder = msgspec.json.Decoder(_LiquidationPush)
_batch_decoder = msgspec.json.Decoder(list[Liquidation])
_ticker_decoder = msgspec.json.Decoder(Ticker)


def topic(symbol: str) -> str:
    return f"{TOPIC_PREFIX}{symbol.upper()}"


def ticker_topic(symbol: str) -> str:
    return f"{TICKERS_PREFIX}{symbol.upper()}"


def topic_symbol(name: str) -> str:
    """The symbol a liquidation or ticker topic names."""
    return name.removeprefix(TOPIC_PREFIX).removeprefix(TICKERS_PREFIX)


def failed_request(frame: bytes) -> Frame | None:
    """The reply, when `frame` says a request failed (its `req_id` names the request)."""
    if b'"success":false' not in frame and b'"success": false' not in frame:
        return None
    try:
        reply = _frame_decoder.decode(frame)
    except msgspec.DecodeError:
        return None
    return reply if reply.success is False else None


def reply_id(frame: bytes) -> str:
    """The `req_id` of a control reply ("" when it has none or is not one)."""
    try:
        return _frame_decoder.decode(frame).req_id or ""
    except msgspec.DecodeError:
        return ""


def is_pong(frame: bytes) -> bool:
    """The linear answer to `{"op":"ping"}`: keep-alive, not data."""
    if b'"pong"' not in frame:
        return False
    try:
        parsed = _frame_decoder.decode(frame)
    except msgspec.DecodeError:
        return False
    return parsed.op == "ping" or parsed.op == "pong"


class BybitDecoder:
    def __init__(self) -> None:
        self.mark_prices: dict[str, float] = {}  # the last one of each symbol's tickers

    def decode(self, frame: bytes) -> Decoded:
        push = decode_common(_push_decoder, frame)
        if push is not None and push.topic.startswith(TOPIC_PREFIX):
            return _liquidations(push.data)
        try:
            outer = _frame_decoder.decode(frame)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", str(error))])
        if outer.topic is None:
            if outer.success is False:
                return Decoded([], [(f"{outer.op or 'request'}_failed", outer.ret_msg or "")])
            if outer.op is not None:
                return Decoded([])  # a subscribe reply or a pong
            return Decoded([], [("unexpected_frame", excerpt(frame))])
        if outer.topic.startswith(TICKERS_PREFIX):
            return self._ticker(outer)
        if not outer.topic.startswith(TOPIC_PREFIX):
            return Decoded([], [(f"unknown_topic:{outer.topic[:40]}", outer.topic[:60])])
        try:
            batch = _batch_decoder.decode(outer.data)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", f"data: {error}")])
        return _liquidations(batch)

    def _ticker(self, outer: Frame) -> Decoded:
        try:
            ticker = _ticker_decoder.decode(outer.data)
            mark = _positive(ticker.markPrice)
            oi = _non_negative(ticker.openInterest)
        except (msgspec.DecodeError, ValueError) as error:
            return Decoded([], [("malformed", f"ticker: {error}")])
        symbol = ticker.symbol.upper()
        if not symbol.isalnum() or outer.ts is None:
            return Decoded([], [("malformed", f"ticker: symbol {symbol[:40]!r}, ts {outer.ts}")])
        if outer.type == "snapshot":
            self.mark_prices.pop(symbol, None)  # a fresh subscription starts over
        market: list[MarketUpdate] = []
        if mark is not None:
            self.mark_prices[symbol] = mark
            market.append(MarkPriceUpdate("bybit", symbol, outer.ts, mark))
        if oi is not None:
            price = self.mark_prices.get(symbol)
            market.append(OpenInterestUpdate("bybit", symbol, outer.ts, oi, price))
        return Decoded([], market=market)

    def take_rest(self, path: str, body: bytes) -> bool:
        # The instruments list only tells a live feed what `*` subscribes to.
        return path.startswith("/v5/market/instruments-info")


def _liquidations(batch: list[Liquidation]) -> Decoded:
    events: list[LiquidationEvent] = []
    anomalies: list[tuple[str, str]] = []
    for item in batch:
        try:
            events.append(normalize(item))
        except ValueError as error:
            anomalies.append(("malformed", f"liquidation: {error}"))
    return Decoded(events, anomalies)


def normalize(item: Liquidation) -> LiquidationEvent:
    side = _SIDES.get(item.S)
    if side is None:
        raise ValueError(f"side {item.S!r} is neither Buy nor Sell")
    price = float(item.p)
    quantity = float(item.v)
    if not (math.isfinite(price) and math.isfinite(quantity)) or price <= 0 or quantity <= 0:
        raise ValueError(f"price {price} and size {quantity} must be positive")
    if not item.s.isalnum():
        raise ValueError(f"symbol {item.s!r} is not a symbol")
    return LiquidationEvent(
        exchange="bybit",
        symbol=item.s.upper(),
        side=side,  # type: ignore[arg-type]
        price=price,
        quantity=quantity,
        notional=round_notional(price * quantity),
        time=item.T,
    )


def _positive(value: str | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{value!r} is not a positive number")
    return number


def _non_negative(value: str | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{value!r} is not a number >= 0")
    return number
