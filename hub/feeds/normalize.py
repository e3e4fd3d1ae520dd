"""What the decoders of the exchanges added on the feed base share: a row to a normalized
event, a REST answer to its struct, and one pass over a push's rows that sorts them into
events, anomalies, duplicates and rows not followed (no I/O).

A decoder gives `gather` a `read` for one row. It returns the row's events (none: not a
liquidation, e.g. an ordinary Deribit trade), or None for a row of something the hub does
not follow (counted as ignored); it raises `ValueError` for a malformed row and `Skipped`
for one it will not guess (an unknown contract's size). A row seen recently is counted as
a duplicate, by the key the decoder names. Binance's, Bybit's and OKX's decoders keep
their own loops: theirs is the measured hot path (bench/bench_processor.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

import msgspec

from hub.errors import UpstreamError, clip
from hub.feeds.base import Decoded
from hub.feeds.recent import RecentKeys
from hub.models import LiquidationEvent, Side, round_notional
from hub.rounding import rounded_float

T = TypeVar("T")
Row = TypeVar("Row")


class Skipped(Exception):
    """A row skipped on purpose, counted as the anomaly `kind` (never guessed)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def liquidation_event(
    exchange: str, symbol: str, side: Side, price: float, quantity: float, time: int
) -> LiquidationEvent:
    """The normalized event; `ValueError` unless price and quantity are positive numbers
    and the symbol is letters and digits."""
    if not (math.isfinite(price) and math.isfinite(quantity)) or price <= 0 or quantity <= 0:
        raise ValueError(f"price {price} and quantity {quantity} must be positive")
    if not symbol.isalnum():
        raise ValueError(f"symbol {symbol[:40]!r} is not a symbol")
    quantity = rounded_float(quantity)  # contracts x contract size: no binary noise on it
    notional = round_notional(price * quantity)
    return LiquidationEvent(exchange, symbol, side, price, quantity, notional, time)


def number(value: float | str | None, what: str, *, positive: bool = False) -> float:
    """`value` as a finite number, at least 0 (above 0 when `positive`); `ValueError`
    otherwise."""
    if value is None:
        raise ValueError(f"no {what}")
    result = float(value)
    if not math.isfinite(result) or result < 0 or (positive and result == 0):
        raise ValueError(f"{what} {value!r} is out of range")
    return result


def positive_or_none(value: float | str) -> float | None:
    """`value` as a positive finite number, or None (a list's unusable row is skipped)."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


def decode_answer(decoder: msgspec.json.Decoder[T], body: bytes, what: str) -> T:
    """A REST answer as its struct; `UpstreamError` naming `what` for anything else."""
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as error:
        raise UpstreamError(f"{what}: malformed response: {clip(str(error), 160)}") from None


def gather(
    rows: Iterable[Row],
    read: Callable[[Row], list[LiquidationEvent] | None],
    key: Callable[[Row, LiquidationEvent], Hashable],
    recent: RecentKeys,
    name: Callable[[Row], str],
) -> Decoded:
    """One push's rows sorted into events, anomalies (`name` says which row), duplicates
    and rows not followed."""
    events: list[LiquidationEvent] = []
    anomalies: list[tuple[str, str]] = []
    duplicates = ignored = 0
    for row in rows:
        try:
            read_events = read(row)
        except ValueError as error:
            anomalies.append(("malformed", f"{name(row)[:40]}: {error}"))
            continue
        except Skipped as skipped:
            anomalies.append((skipped.kind, skipped.detail))
            continue
        if read_events is None:
            ignored += 1
            continue
        for event in read_events:
            if recent.seen(key(row, event)):
                duplicates += 1
            else:
                events.append(event)
    return Decoded(events, anomalies, duplicates, ignored)
