"""Bitget UTA (v3) public frames (`liquidation`, `ticker`), decoded from bytes (no I/O).

A liquidation push is `{"data": [{"symbol", "side", "price", "amount", "ts"}], "arg":
{"instType", "topic": "liquidation"}, "action", "ts"}`: one subscription per product line
carries every symbol of it, and one push may hold several symbols, rows out of time order
and 10-20 s older than the push. Row values are strings. Normalization:
- `side` is the liquidated **position**'s (`buy`: a long), as on Bybit and unlike Binance;
- `amount` is the **quote** (USDT) notional (Bitget's field table: "Unit: quote coin"), so
  the base quantity is `amount / price`; `price` is Bitget's liquidation price;
- time is the row's `ts`; only `usdt-futures` is read, whose `BTCUSDT` is the hub's
  `BTCUSDT` (coin-margined and USDC lines are left out: their units are not documented).
The feed is a sample: since 2026-06-23 (third-party notes of the changelog) Bitget pushes
once a second at most the largest long and the largest short liquidation per symbol; an
older doc says every 20 s with every liquidation. Nothing here depends on the rate. A
row seen recently (a reconnect's replay) is dropped and counted as a duplicate.

A ticker push (`arg.topic: "ticker"`, `arg.symbol`) carries `markPrice` and
`openInterest`; the unit of the latter is not stated, and its magnitude in published
frames (29,539 for BTCUSDT) is base coin. `action: update` pushes carry what changed: the
last mark price is kept per symbol. Replies are `{"event": "subscribe"|"error", "arg",
"code", "msg"}`; the keep-alive answer is the text `pong`.
"""

from __future__ import annotations

import msgspec

from hub.feeds.base import Decoded, MarketUpdate, decode_common, excerpt
from hub.feeds.normalize import gather, liquidation_event, number
from hub.feeds.recent import RecentKeys
from hub.models import LiquidationEvent, MarkPriceUpdate, OpenInterestUpdate

INST_TYPE = "usdt-futures"
LIQUIDATIONS = "liquidation"
TICKER = "ticker"
PING = "ping"
PONG = b"pong"
_SIDES = {"buy": "long", "sell": "short"}


class Row(msgspec.Struct, frozen=True):
    symbol: str
    side: str  # position side
    price: str
    amount: str  # quote notional
    ts: str


class Arg(msgspec.Struct, frozen=True):
    instType: str = ""
    topic: str = ""
    symbol: str = ""


class Ticker(msgspec.Struct, frozen=True):
    markPrice: str | None = None
    openInterest: str | None = None


class Frame(msgspec.Struct, frozen=True):
    arg: Arg | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent
    action: str | None = None
    ts: int | None = None
    event: str | None = None
    code: str | int | None = None
    msg: str | None = None


class _LiquidationPush(msgspec.Struct, frozen=True):
    """The frame almost every one is, decoded in one pass (its topic checked after)."""

    arg: Arg
    data: list[Row]


_push_decoder = msgspec.json.Decoder(_LiquidationPush)
_frame_decoder = msgspec.json.Decoder(Frame)
_rows_decoder = msgspec.json.Decoder(list[Row])
_tickers_decoder = msgspec.json.Decoder(list[Ticker])
_encoder = msgspec.json.Encoder()


def subscribe_request(op: str, args: list[dict[str, str]]) -> str:
    return _encoder.encode({"op": op, "args": args}).decode()


def ticker_arg(symbol: str) -> dict[str, str]:
    return {"instType": INST_TYPE, "topic": TICKER, "symbol": symbol}


def is_pong(frame: bytes) -> bool:
    return frame == PONG


class BitgetDecoder:
    def __init__(self) -> None:
        self.recent = RecentKeys()
        self.mark_prices: dict[str, float] = {}

    def take_rest(self, path: str, body: bytes) -> bool:
        return False  # the liquidation topic needs no instruments list

    def decode(self, frame: bytes) -> Decoded:
        push = decode_common(_push_decoder, frame)
        if push is not None and push.arg.topic == LIQUIDATIONS:
            return self._liquidations(push.arg, push.data)
        if is_pong(frame):
            return Decoded([])
        try:
            outer = _frame_decoder.decode(frame)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", str(error))])
        if outer.event is not None:
            if outer.event == "error":
                return Decoded([], [("error_reply", f"{outer.code}: {outer.msg}")])
            return Decoded([])  # subscribe / unsubscribe acknowledged
        if outer.arg is None or not outer.data:
            return Decoded([], [("unexpected_frame", excerpt(frame))])
        if outer.arg.topic == TICKER:
            return self._tickers(outer)
        if outer.arg.topic != LIQUIDATIONS:
            return Decoded([], [(f"unknown_topic:{outer.arg.topic[:40]}", outer.arg.topic[:60])])
        try:
            rows = _rows_decoder.decode(outer.data)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", f"data: {error}")])
        return self._liquidations(outer.arg, rows)

    def _liquidations(self, arg: Arg, rows: list[Row]) -> Decoded:
        if arg.instType != INST_TYPE:
            return Decoded([], ignored=len(rows))  # coin-margined or USDC lines: not read
        return gather(rows, _read, _key, self.recent, lambda row: row.symbol)

    def _tickers(self, outer: Frame) -> Decoded:
        symbol = outer.arg.symbol.upper() if outer.arg is not None else ""
        try:
            tickers = _tickers_decoder.decode(outer.data)
            if not symbol.isalnum() or outer.ts is None:
                raise ValueError(f"symbol {symbol[:40]!r}, ts {outer.ts}")
            values = [
                (
                    None
                    if t.markPrice is None
                    else number(t.markPrice, "mark price", positive=True),
                    None if t.openInterest is None else number(t.openInterest, "open interest"),
                )
                for t in tickers
            ]
        except (msgspec.DecodeError, ValueError) as error:
            return Decoded([], [("malformed", f"ticker: {error}")])
        market: list[MarketUpdate] = []
        for mark, oi in values:
            if mark is not None:
                self.mark_prices[symbol] = mark
                market.append(MarkPriceUpdate("bitget", symbol, outer.ts, mark))
            if oi is not None:
                price = self.mark_prices.get(symbol)
                market.append(OpenInterestUpdate("bitget", symbol, outer.ts, oi, price))
        return Decoded([], market=market)


def _key(row: Row, event: LiquidationEvent) -> tuple[str, ...]:
    return (row.symbol, row.ts, row.side, row.price, row.amount)


def _read(row: Row) -> list[LiquidationEvent]:
    side = _SIDES.get(row.side)
    if side is None:
        raise ValueError(f"side {row.side!r} is neither buy nor sell")
    price = number(row.price, "price")
    quantity = number(row.amount, "amount") / price if price > 0 else 0.0
    event = liquidation_event("bitget", row.symbol.upper(), side, price, quantity, int(row.ts))  # type: ignore[arg-type]
    return [event]
