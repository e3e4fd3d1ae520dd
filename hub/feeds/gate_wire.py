"""Gate USDT-settled futures frames (`futures.public_liquidates`, `futures.contract_stats`)
and the contracts list, decoded from bytes (no I/O).

Every frame is `{"time", "time_ms", "channel", "event", "result", "error"}`. Three shapes
of a liquidation push exist, and all are read (the sources are in docs/exchanges.md):
the English doc's (`result` an array, `price` a number, `size` an integer, the row time
in `time_ms`), the live frames of 2026-08 (`result` a bare object, `price` a string, the
row time in `time`, ms) and the Chinese doc's since 2026-08-20 (an array of several rows
of one contract). A row `time` below 10^11 is seconds (one doc example prints it so).
Normalization:
- `size` is signed contracts: negative is a sell order, so a **long** was liquidated
  (Gate's sign convention for trades, orders and REST `liq_orders`; the channel's doc
  does not say, an inference);
- quantity = |size| x the contract's `quanto_multiplier` (BTC_USDT: 0.0001 BTC) from
  `GET /api/v4/futures/usdt/contracts`; a contract without one is skipped and counted,
  never guessed (guessing is how notionals end up 10,000 times off);
- `BTC_USDT` is the hub's `BTCUSDT`; only the USDT settle is read;
- with the handshake header `X-Gate-Size-Decimal: 1` sizes are strings that may carry
  decimals (without it Gate truncates them toward zero).
Until 2026-08-20 Gate pushed at most one liquidation per contract per second; since then
it batches every liquidation of a second. A row seen recently is a duplicate.

`futures.contract_stats` (`[contract, "1m"]` per contract) carries `open_interest` in
contracts, converted the same way, and `mark_price`; its `time` is seconds. Replies:
`event: "subscribe"` with `result.status`, or an `error` object; `futures.pong` answers
the keep-alive `futures.ping`.
"""

from __future__ import annotations

import time

import msgspec

from hub.feeds.base import Decoded, MarketUpdate, decode_common, excerpt
from hub.feeds.normalize import (
    Skipped,
    decode_answer,
    gather,
    liquidation_event,
    number,
    positive_or_none,
)
from hub.feeds.recent import RecentKeys
from hub.models import LiquidationEvent, OpenInterestUpdate

LIQUIDATIONS = "futures.public_liquidates"
CONTRACT_STATS = "futures.contract_stats"
PING_CHANNEL = "futures.ping"
PONG_CHANNEL = "futures.pong"
CONTRACTS_PATH = "/api/v4/futures/usdt/contracts"
SETTLE = "_USDT"
ALL_CONTRACTS = "!all"
SECONDS_BELOW = 10**11  # a time below this is seconds: ms since 1973 are above it


class Row(msgspec.Struct, frozen=True):
    contract: str
    price: float | str
    size: float | str  # signed contracts
    time: int | None = None  # ms (seconds in one doc example)
    time_ms: int | None = None


class Stats(msgspec.Struct, frozen=True):
    contract: str
    open_interest: float | str
    time: int  # seconds
    mark_price: float | str | None = None


class Error(msgspec.Struct, frozen=True):
    code: int | str | None = None
    message: str = ""


class Frame(msgspec.Struct, frozen=True):
    channel: str = ""
    event: str = ""
    time: int | None = None
    time_ms: int | None = None
    result: msgspec.Raw = msgspec.Raw()  # empty when absent
    error: Error | None = None


class _LiquidationPush(msgspec.Struct, frozen=True):
    """The frame almost every one is, decoded in one pass (its channel checked after)."""

    channel: str
    event: str
    result: list[Row] | Row
    time_ms: int | None = None


class Contract(msgspec.Struct, frozen=True):
    name: str
    quanto_multiplier: str | float = ""


_push_decoder = msgspec.json.Decoder(_LiquidationPush)
_frame_decoder = msgspec.json.Decoder(Frame)
_rows_decoder = msgspec.json.Decoder(list[Row] | Row)
_stats_decoder = msgspec.json.Decoder(list[Stats] | Stats)
_contracts_decoder = msgspec.json.Decoder(list[Contract])
_encoder = msgspec.json.Encoder()


def request(channel: str, event: str, payload: list[str] | None = None) -> str:
    body: dict[str, object] = {"time": int(time.time()), "channel": channel}
    if event:
        body["event"] = event
    if payload is not None:
        body["payload"] = payload
    return _encoder.encode(body).decode()


def ping() -> str:
    return request(PING_CHANNEL, "")


def is_pong(frame: bytes) -> bool:
    if PONG_CHANNEL.encode() not in frame:
        return False
    try:
        return _frame_decoder.decode(frame).channel == PONG_CHANNEL
    except msgspec.DecodeError:
        return False


def symbol_of(contract: str) -> str | None:
    """`BTC_USDT` -> `BTCUSDT`; None for another settle (the inverse `BTC_USD`)."""
    base = contract.removesuffix(SETTLE)
    return f"{base}USDT" if contract.endswith(SETTLE) and base.isalnum() else None


def contract_of(symbol: str) -> str | None:
    """`BTCUSDT` -> `BTC_USDT`; None when the symbol is not USDT-settled."""
    base = symbol.upper().removesuffix("USDT")
    return f"{base}{SETTLE}" if symbol.upper().endswith("USDT") and base else None


def parse_contracts(body: bytes) -> dict[str, float]:
    """{contract: coins per contract}; `UpstreamError` for anything but the list."""
    contracts = decode_answer(_contracts_decoder, body, "Gate contracts")
    return {
        contract.name: value
        for contract in contracts
        if (value := positive_or_none(contract.quanto_multiplier)) is not None
    }


class GateDecoder:
    def __init__(self, multipliers: dict[str, float] | None = None) -> None:
        self.multipliers: dict[str, float] = dict(multipliers or {})
        self.recent = RecentKeys()

    def take_rest(self, path: str, body: bytes) -> bool:
        if not path.startswith(CONTRACTS_PATH):
            return False
        self.multipliers = parse_contracts(body)
        return True

    def decode(self, frame: bytes) -> Decoded:
        push = decode_common(_push_decoder, frame)
        if push is not None and push.channel == LIQUIDATIONS and push.event == "update":
            rows = push.result if isinstance(push.result, list) else [push.result]
            return self._liquidations(rows, push.time_ms)
        try:
            outer = _frame_decoder.decode(frame)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", str(error))])
        if outer.error is not None:
            detail = f"{outer.error.code}: {outer.error.message}"
            return Decoded([], [("error_reply", f"{outer.channel} {detail}")])
        if outer.event in ("subscribe", "unsubscribe") or outer.channel == PONG_CHANNEL:
            return Decoded([])
        if outer.event != "update" or not outer.result:
            return Decoded([], [("unexpected_frame", excerpt(frame))])
        if outer.channel == CONTRACT_STATS:
            return self._stats(outer.result)
        if outer.channel != LIQUIDATIONS:
            return Decoded([], [(f"unknown_channel:{outer.channel[:40]}", outer.channel[:60])])
        try:
            result = _rows_decoder.decode(outer.result)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", f"result: {error}")])
        return self._liquidations(result if isinstance(result, list) else [result], outer.time_ms)

    def _liquidations(self, rows: list[Row], pushed_ms: int | None) -> Decoded:
        def read(row: Row) -> list[LiquidationEvent] | None:
            symbol = symbol_of(row.contract)
            if symbol is None:
                return None
            multiplier = self.multipliers.get(row.contract)
            if multiplier is None:
                raise Skipped("unknown_instrument", row.contract[:40])
            return [_event(symbol, row, multiplier, pushed_ms)]

        return gather(rows, read, _key, self.recent, lambda row: row.contract)

    def _stats(self, result: msgspec.Raw) -> Decoded:
        try:
            decoded = _stats_decoder.decode(result)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", f"contract_stats: {error}")])
        market: list[MarketUpdate] = []
        anomalies: list[tuple[str, str]] = []
        ignored = 0
        for stats in decoded if isinstance(decoded, list) else [decoded]:
            symbol, multiplier = symbol_of(stats.contract), self.multipliers.get(stats.contract)
            if symbol is None or multiplier is None:
                ignored += 1
                continue
            try:
                oi = number(stats.open_interest, "open interest") * multiplier
                mark = None
                if stats.mark_price is not None:
                    mark = number(stats.mark_price, "mark price", positive=True)
            except ValueError as error:
                anomalies.append(("malformed", f"contract_stats {stats.contract[:40]}: {error}"))
                continue
            market.append(OpenInterestUpdate("gate", symbol, stats.time * 1000, oi, mark))
        return Decoded([], anomalies, ignored=ignored, market=market)


def _key(row: Row, event: LiquidationEvent) -> tuple[object, ...]:
    return (row.contract, event.time, row.price, row.size)


def _event(symbol: str, row: Row, multiplier: float, pushed_ms: int | None) -> LiquidationEvent:
    size = number(abs(float(row.size)), "size", positive=True)
    side = "long" if float(row.size) < 0 else "short"
    at = row.time_ms if row.time_ms is not None else row.time
    if at is None:
        if pushed_ms is None:
            raise ValueError("no time")
        at = pushed_ms
    if at < SECONDS_BELOW:
        at *= 1000
    price = number(row.price, "price")
    return liquidation_event("gate", symbol, side, price, size * multiplier, at)
