"""Deribit JSON-RPC frames: public trades carrying the `liquidation` flag, the
`incremental_ticker` (open interest), heartbeats and replies, decoded from bytes (no I/O).

Deribit has no liquidation channel: a trade caused by one carries `liquidation`, `T`
when the taker was liquidated, `M` the maker, `MT` both. `direction` is the **taker**'s
side, so the liquidation order's side is `direction` for `T` and the opposite for `M`;
`MT` is two liquidations of the trade's size, a long and a short (cryptofeed reads
`direction` alone, which gets every `M` wrong). An order `sell` means a long was
liquidated. `price` is the trade price (Deribit publishes no bankruptcy price here),
time the trade's `timestamp`. A trade without the flag is not a liquidation and is
passed over without a count (the channel is every trade).

Units and symbols (there is no USDT-margined perpetual on Deribit):
- inverse perpetuals `BTC-PERPETUAL`: `amount` is USD, so the base quantity is
  `amount / price`; they count as the hub's `BTCUSDT` (USD and USDT taken as equal);
- linear perpetuals `BTC_USDC-PERPETUAL`: `amount` is base coin; the hub's `BTCUSDC`;
- dated futures, options and combos are ignored.
A trade seen recently (its `trade_id`) is a duplicate.

`incremental_ticker.{instrument}` pushes a `snapshot`, then `change`s with what changed,
at most once a second: `open_interest` (USD for inverse, base coin for linear, converted
with the last `mark_price` seen) and `mark_price`. Heartbeats (`method: heartbeat`) are
keep-alive; a `test_request` must be answered with `public/test` (the connection does).
"""

from __future__ import annotations

from typing import Any

import msgspec

from hub.feeds.base import Decoded, MarketUpdate, decode_common, excerpt
from hub.feeds.normalize import gather, liquidation_event, number
from hub.feeds.recent import RecentKeys
from hub.models import LiquidationEvent, MarkPriceUpdate, OpenInterestUpdate

PERPETUAL = "-PERPETUAL"
LINEAR_QUOTES = ("USDC", "USDT")
TRADES_INTERVAL = "100ms"  # `raw` needs an authorized connection
ALL_FUTURES_TRADES = f"trades.future.any.{TRADES_INTERVAL}"
KEEP_ALIVE_ID = 8212  # the id of our `public/test` answers, so their replies are known
_ORDER_SIDE = {"buy": "short", "sell": "long"}  # the liquidation order's side -> position
_OPPOSITE = {"buy": "sell", "sell": "buy"}
_encoder = msgspec.json.Encoder()


class Trade(msgspec.Struct, frozen=True):
    trade_id: str
    instrument_name: str
    direction: str  # the taker's
    price: float
    amount: float
    timestamp: int
    liquidation: str | None = None


class Ticker(msgspec.Struct, frozen=True):
    instrument_name: str
    timestamp: int
    type: str = ""
    open_interest: float | None = None
    mark_price: float | None = None


class Params(msgspec.Struct, frozen=True):
    channel: str = ""
    type: str = ""  # a heartbeat's
    data: msgspec.Raw = msgspec.Raw()  # empty when absent


class Error(msgspec.Struct, frozen=True):
    code: int | None = None
    message: str = ""


class Frame(msgspec.Struct, frozen=True):
    method: str | None = None
    params: Params | None = None
    id: int | str | None = None
    result: Any = None
    error: Error | None = None


class _TradesParams(msgspec.Struct, frozen=True):
    channel: str
    data: list[Trade]


class _TradesPush(msgspec.Struct, frozen=True):
    """The frame almost every one is, decoded in one pass (its channel checked after)."""

    method: str
    params: _TradesParams


_push_decoder = msgspec.json.Decoder(_TradesPush)
_frame_decoder = msgspec.json.Decoder(Frame)
_trades_decoder = msgspec.json.Decoder(list[Trade])
_ticker_decoder = msgspec.json.Decoder(Ticker)


def rpc(method: str, params: dict[str, Any], request_id: int) -> str:
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return _encoder.encode(body).decode()


def instrument_of(symbol: str) -> str | None:
    """`BTCUSDT` -> `BTC-PERPETUAL` (inverse), `BTCUSDC` -> `BTC_USDC-PERPETUAL`."""
    symbol = symbol.upper()
    if symbol.endswith("USDT") and len(symbol) > 4:
        return f"{symbol[:-4]}{PERPETUAL}"
    if symbol.endswith("USDC") and len(symbol) > 4:
        return f"{symbol[:-4]}_USDC{PERPETUAL}"
    return None


def symbol_of(instrument: str) -> tuple[str, bool] | None:
    """(hub symbol, inverse) of a perpetual; None for anything else."""
    if not instrument.endswith(PERPETUAL):
        return None
    name = instrument.removesuffix(PERPETUAL)
    base, _, quote = name.partition("_")
    if not base.isalnum():
        return None
    if not quote:
        return f"{base}USDT", True
    return (f"{base}{quote}", False) if quote in LINEAR_QUOTES else None


def subscribed(frame: bytes) -> tuple[int, list[str]] | None:
    """(request id, channels) of a `public/subscribe` reply; None for any other frame."""
    outer = decode_common(_frame_decoder, frame) if b'"result"' in frame else None
    if outer is None or not isinstance(outer.id, int) or not isinstance(outer.result, list):
        return None
    return outer.id, [c for c in outer.result if isinstance(c, str)]


def keep_alive_answer(frame: bytes) -> str | None:
    """`public/test` for a heartbeat `test_request`, else None."""
    outer = decode_common(_frame_decoder, frame) if b"test_request" in frame else None
    params = outer.params if outer is not None else None
    if (
        outer is not None
        and outer.method == "heartbeat"
        and params is not None
        and params.type == "test_request"
    ):
        return rpc("public/test", {}, KEEP_ALIVE_ID)
    return None


def is_keep_alive(frame: bytes) -> bool:
    """A heartbeat, or the reply to our `public/test`: life, not messages."""
    maybe = b"heartbeat" in frame or str(KEEP_ALIVE_ID).encode() in frame
    outer = decode_common(_frame_decoder, frame) if maybe else None
    if outer is None:
        return False
    params = outer.params
    heartbeat = outer.method == "heartbeat" and params is not None and params.type == "heartbeat"
    return heartbeat or outer.id == KEEP_ALIVE_ID


class DeribitDecoder:
    def __init__(self) -> None:
        self.recent = RecentKeys()
        self.mark_prices: dict[str, float] = {}  # per instrument, the last one seen

    def take_rest(self, path: str, body: bytes) -> bool:
        return False  # instrument names and `amount` units say all that is needed

    def decode(self, frame: bytes) -> Decoded:
        push = decode_common(_push_decoder, frame)
        if push is not None and push.params.channel.startswith("trades."):
            return self._trades(push.params.data)
        try:
            outer = _frame_decoder.decode(frame)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", str(error))])
        if outer.error is not None:
            return Decoded([], [("error_reply", f"{outer.error.code}: {outer.error.message}")])
        if outer.method == "heartbeat" or (outer.id is not None and outer.method is None):
            return Decoded([])  # a reply, or keep-alive
        params = outer.params
        if outer.method != "subscription" or params is None or not params.data:
            return Decoded([], [("unexpected_frame", excerpt(frame))])
        if params.channel.startswith("incremental_ticker."):
            return self._ticker(params.data)
        if not params.channel.startswith("trades."):
            return Decoded([], [(f"unknown_channel:{params.channel[:40]}", params.channel[:60])])
        try:
            trades = _trades_decoder.decode(params.data)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", f"trades: {error}")])
        return self._trades(trades)

    def _trades(self, trades: list[Trade]) -> Decoded:
        return gather(trades, _read, _key, self.recent, lambda trade: trade.instrument_name)

    def _ticker(self, data: msgspec.Raw) -> Decoded:
        try:
            ticker = _ticker_decoder.decode(data)
            mark = (
                None
                if ticker.mark_price is None
                else number(ticker.mark_price, "mark", positive=True)
            )
            oi = None if ticker.open_interest is None else number(ticker.open_interest, "oi")
        except (msgspec.DecodeError, ValueError) as error:
            return Decoded([], [("malformed", f"ticker: {error}")])
        mapped = symbol_of(ticker.instrument_name)
        if mapped is None:
            return Decoded([], ignored=1)
        symbol, inverse = mapped
        name, at = ticker.instrument_name, ticker.timestamp
        if ticker.type == "snapshot":
            self.mark_prices.pop(name, None)  # a fresh subscription starts over
        market: list[MarketUpdate] = []
        if mark is not None:
            self.mark_prices[name] = mark
            market.append(MarkPriceUpdate("deribit", symbol, at, mark))
        price = self.mark_prices.get(name)
        if oi is not None and (price is not None or not inverse):
            base = oi / price if inverse and price else oi  # USD over the mark price
            market.append(OpenInterestUpdate("deribit", symbol, at, base, price))
        return Decoded([], market=market)


def _key(trade: Trade, event: LiquidationEvent) -> tuple[str, str]:
    return (trade.trade_id, event.side)


def _read(trade: Trade) -> list[LiquidationEvent] | None:
    """A trade's liquidations: none for an ordinary trade, None for an instrument the hub
    does not read."""
    if trade.liquidation is None:
        return []
    mapped = symbol_of(trade.instrument_name)
    if mapped is None:
        return None
    symbol, inverse = mapped
    if trade.direction not in _OPPOSITE:
        raise ValueError(f"direction {trade.direction!r} is neither buy nor sell")
    if trade.liquidation not in ("T", "M", "MT"):
        raise ValueError(f"liquidation flag {trade.liquidation!r} is not M, T or MT")
    price = number(trade.price, "price", positive=True)
    amount = number(trade.amount, "amount", positive=True)
    quantity = amount / price if inverse else amount
    orders = []
    if "T" in trade.liquidation:
        orders.append(trade.direction)
    if "M" in trade.liquidation:
        orders.append(_OPPOSITE[trade.direction])
    return [
        liquidation_event("deribit", symbol, _ORDER_SIDE[o], price, quantity, trade.timestamp)  # type: ignore[arg-type]
        for o in orders
    ]
