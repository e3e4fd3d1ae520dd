"""BitMEX realtime frames (`liquidation` and `instrument` tables) and its instruments
list, decoded from bytes (no I/O).

The `liquidation` table holds the liquidation **orders** active now: a row is inserted
when one enters the book (`{orderID, symbol, side, price, leavesQty}`), then `update`d
(leavesQty falls as it fills, or rises; price moves) and `delete`d. Each order counts
once, at its `insert` (or in the `partial` a subscription starts with, for an order met
mid-life); updates and deletes are the same order and are not counted. A reconnect's
`partial` repeats orders already counted: an orderID seen recently is a duplicate.
Normalization:
- `side` is the order's: `Sell` means a long was liquidated; `price` is the bankruptcy
  price (BitMEX support: the order is for the full quantity at the bankruptcy price);
- `leavesQty` is contracts. From the instruments list (`GET /api/v1/instrument/active`),
  per BitMEX's contract-size rule: a linear perpetual (`XBTUSDT`) holds
  1 / `underlyingToPositionMultiplier` base coin a contract; an inverse one (`XBTUSD`)
  `multiplier / underlyingToSettleMultiplier` USD a contract, so base = USD / price.
  Both count as the hub's `BASE` + `USDT` (`XBT` is BTC; USD taken as USDT); quanto
  perpetuals (`ETHUSD`) and dated futures are left out. A symbol missing from the list
  is skipped and counted, never guessed;
- rows carry **no time**: the time is the frame's receive time (`received_ms`). Without
  one (a replay), the latest `timestamp` the connection carried stands in: the welcome
  frame's, and the `instrument` table's rows, which come every few seconds when open
  interest is subscribed. With neither the row is counted as `untimed`, not guessed.

The `instrument` table (`instrument:{SYMBOL}`) carries `openInterest` (contracts) and
`markPrice`; open interest is read from linear perpetuals only (an inverse one's beside
it would count one symbol twice), as base coin. Replies: `{"success", "subscribe"}`, or
`{"status", "error"}`; the keep-alive answer is the text `pong`.
"""

from __future__ import annotations

import contextlib
import math
from datetime import datetime
from typing import NamedTuple

import msgspec

from hub.feeds.base import Decoded, MarketUpdate, decode_common, excerpt
from hub.feeds.normalize import Skipped, decode_answer, gather, liquidation_event, number
from hub.feeds.recent import RecentKeys
from hub.models import LiquidationEvent, MarkPriceUpdate, OpenInterestUpdate

LIQUIDATIONS = "liquidation"
INSTRUMENTS = "instrument"
INSTRUMENTS_PATH = "/api/v1/instrument/active"
PERPETUAL = "FFWCSX"  # BitMEX's `typ` of a perpetual swap
PING = "ping"
PONG = b"pong"
_SIDES = {"Sell": "long", "Buy": "short"}
_encoder = msgspec.json.Encoder()


class Contract(NamedTuple):
    symbol: str  # the hub's
    size: float  # base coin a contract (linear) or quote a contract (inverse)
    inverse: bool


class Instrument(msgspec.Struct, frozen=True):
    symbol: str
    rootSymbol: str = ""
    quoteCurrency: str = ""
    typ: str = ""
    isInverse: bool = False
    isQuanto: bool = False
    multiplier: float | None = None
    underlyingToPositionMultiplier: float | None = None
    underlyingToSettleMultiplier: float | None = None


class Row(msgspec.Struct, frozen=True):
    orderID: str
    symbol: str
    side: str | None = None  # on insert and partial only
    price: float | None = None
    leavesQty: float | None = None


class InstrumentRow(msgspec.Struct, frozen=True):
    symbol: str
    timestamp: str | None = None
    openInterest: float | None = None
    markPrice: float | None = None


class Frame(msgspec.Struct, frozen=True):
    table: str | None = None
    action: str | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent
    timestamp: str | None = None  # the welcome frame's
    success: bool | None = None
    error: str | None = None
    status: int | None = None


class _LiquidationFrame(msgspec.Struct, frozen=True):
    """The frame almost every one is, decoded in one pass (its table checked after)."""

    table: str
    action: str
    data: list[Row]


_table_decoder = msgspec.json.Decoder(_LiquidationFrame)
_frame_decoder = msgspec.json.Decoder(Frame)
_rows_decoder = msgspec.json.Decoder(list[Row])
_instrument_rows_decoder = msgspec.json.Decoder(list[InstrumentRow])
_instruments_decoder = msgspec.json.Decoder(list[Instrument])


def subscribe_request(op: str, args: list[str]) -> str:
    return _encoder.encode({"op": op, "args": args}).decode()


def is_pong(frame: bytes) -> bool:
    return frame == PONG


def contract(instrument: Instrument) -> Contract | None:
    """How a perpetual's contracts convert, by BitMEX's contract-size rule; None for a
    quanto or dated contract, or one whose multipliers are missing."""
    if instrument.typ != PERPETUAL or instrument.isQuanto:
        return None
    base = "BTC" if instrument.rootSymbol == "XBT" else instrument.rootSymbol
    if not base.isalnum():
        return None
    if instrument.isInverse:
        settle, multiplier = instrument.underlyingToSettleMultiplier, instrument.multiplier
        if instrument.quoteCurrency != "USD" or not settle or not multiplier:
            return None
        size = multiplier / settle
        return Contract(f"{base}USDT", size, True) if size > 0 and math.isfinite(size) else None
    position = instrument.underlyingToPositionMultiplier
    if instrument.quoteCurrency not in ("USDT", "USDC") or not position or position <= 0:
        return None
    return Contract(f"{base}{instrument.quoteCurrency}", 1.0 / position, False)


def parse_instruments(body: bytes) -> dict[str, Contract]:
    """{BitMEX symbol: contract} of the perpetuals the hub reads; `UpstreamError` for
    anything but the list."""
    instruments = decode_answer(_instruments_decoder, body, "BitMEX instruments")
    return {i.symbol: c for i in instruments if (c := contract(i)) is not None}


def iso_ms(value: str) -> int:
    """`2024-11-13T10:34:26.741Z` in ms; `ValueError` for anything else."""
    return int(datetime.fromisoformat(value).timestamp() * 1000)


class BitmexDecoder:
    def __init__(self, contracts: dict[str, Contract] | None = None) -> None:
        self.contracts: dict[str, Contract] = dict(contracts or {})
        self.recent = RecentKeys()
        self.mark_prices: dict[str, float] = {}  # per BitMEX symbol
        self.last_timestamp: int | None = None  # the latest time a frame carried

    def take_rest(self, path: str, body: bytes) -> bool:
        if not path.startswith(INSTRUMENTS_PATH):
            return False
        self.contracts = parse_instruments(body)
        return True

    def decode(self, frame: bytes, received_ms: int | None = None) -> Decoded:
        table = decode_common(_table_decoder, frame)
        if table is not None and table.table == LIQUIDATIONS:
            return self._liquidations(table.action, table.data, received_ms)
        if is_pong(frame):
            return Decoded([])
        try:
            outer = _frame_decoder.decode(frame)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", str(error))])
        if outer.error is not None:
            return Decoded([], [("error_reply", f"{outer.status}: {outer.error}")])
        if outer.table is None:
            if outer.timestamp is not None:  # the welcome frame
                self._remember(outer.timestamp)
            if outer.success is not None or outer.timestamp is not None:
                return Decoded([])
            return Decoded([], [("unexpected_frame", excerpt(frame))])
        if outer.table == INSTRUMENTS:
            return self._instruments(outer.data)
        if outer.table != LIQUIDATIONS:
            return Decoded([], [(f"unknown_table:{outer.table[:40]}", outer.table[:60])])
        try:
            rows = _rows_decoder.decode(outer.data)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", f"data: {error}")])
        return self._liquidations(outer.action or "", rows, received_ms)

    def _remember(self, timestamp: str) -> None:
        with contextlib.suppress(ValueError):  # a stand-in time: a bad one is not an anomaly
            self.last_timestamp = max(iso_ms(timestamp), self.last_timestamp or 0)

    def _liquidations(self, action: str, rows: list[Row], received_ms: int | None) -> Decoded:
        if action not in ("insert", "partial"):
            return Decoded([])  # updates and deletes are orders counted at their insert
        at = received_ms if received_ms is not None else self.last_timestamp

        def read(row: Row) -> list[LiquidationEvent]:
            known = self.contracts.get(row.symbol)
            if known is None:
                raise Skipped("unknown_instrument", row.symbol[:40])
            if at is None:
                raise Skipped("untimed", f"{row.symbol[:40]}: no receive time")
            return [_event(known, row, at)]

        return gather(rows, read, lambda row, event: row.orderID, self.recent, lambda r: r.symbol)

    def _instruments(self, data: msgspec.Raw) -> Decoded:
        try:
            rows = _instrument_rows_decoder.decode(data)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", f"instrument: {error}")])
        market: list[MarketUpdate] = []
        anomalies: list[tuple[str, str]] = []
        ignored = 0
        for row in rows:
            known = self.contracts.get(row.symbol)
            try:
                at = None if row.timestamp is None else iso_ms(row.timestamp)
                mark = (
                    None if row.markPrice is None else number(row.markPrice, "mark", positive=True)
                )
                oi = None if row.openInterest is None else number(row.openInterest, "oi")
            except ValueError as error:
                anomalies.append(("malformed", f"instrument {row.symbol[:40]}: {error}"))
                continue
            if at is not None:
                self.last_timestamp = max(at, self.last_timestamp or 0)
            if known is None or known.inverse or at is None:
                # open interest of linear perpetuals only; a row without it is a clock tick
                ignored += row.openInterest is not None or row.markPrice is not None
                continue
            if mark is not None:
                self.mark_prices[row.symbol] = mark
                market.append(MarkPriceUpdate("bitmex", known.symbol, at, mark))
            if oi is not None:
                price = self.mark_prices.get(row.symbol)
                market.append(
                    OpenInterestUpdate("bitmex", known.symbol, at, oi * known.size, price)
                )
        return Decoded([], anomalies, ignored=ignored, market=market)


def _event(known: Contract, row: Row, at: int) -> LiquidationEvent:
    side = _SIDES.get(row.side or "")
    if side is None:
        raise ValueError(f"side {row.side!r} is neither Buy nor Sell")
    price = number(row.price, "price", positive=True)
    contracts = number(row.leavesQty, "leavesQty", positive=True)
    quantity = contracts * known.size / price if known.inverse else contracts * known.size
    return liquidation_event("bitmex", known.symbol, side, price, quantity, at)  # type: ignore[arg-type]
