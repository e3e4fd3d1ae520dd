"""Binance USD-M market data for predicted levels, decoded straight from bytes (no I/O):
the `markPriceUpdate` stream frame and the `GET /fapi/v1/openInterest` body.

Mark price frames come combined (`{"stream", "data"}`), bare, or as the all-market array
of `!markPrice@arr@1s`; `p` is the mark price, `E` the event time. Open interest is in base
units (`openInterest`, a string) with the server's `time`; it carries no price, so the
model values it at the latest mark price.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import msgspec

from hub.models import MarkPriceUpdate, OpenInterestUpdate

OPEN_INTEREST_PATH = "/fapi/v1/openInterest"
ALL_MARK_PRICES = "!markPrice@arr@1s"


def mark_price_stream(symbol: str) -> str:
    return f"{symbol.lower()}@markPrice@1s"


class _MarkPrice(msgspec.Struct, frozen=True):
    e: str
    s: str
    p: str
    E: int = 0


class _Envelope(msgspec.Struct, frozen=True):
    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    result: object = None
    id: int | None = None


class _OpenInterest(msgspec.Struct, frozen=True):
    openInterest: str  # Binance's field name
    symbol: str
    time: int


class MarketParsed(NamedTuple):
    updates: list[MarkPriceUpdate]
    anomaly: str | None = None
    detail: str = ""


_envelope = msgspec.json.Decoder(_Envelope)
_one = msgspec.json.Decoder(_MarkPrice)
_many = msgspec.json.Decoder(list[_MarkPrice])
_open_interest = msgspec.json.Decoder(_OpenInterest)


def parse_mark_price_frame(frame: bytes | str | msgspec.Raw) -> MarketParsed:
    try:
        body = frame.encode() if isinstance(frame, str) else bytes(frame)
        if body.lstrip()[:1] == b"[":
            return _normalize(_many.decode(body))
        envelope = _envelope.decode(body)
        if envelope.data:
            inner = bytes(envelope.data)
            if inner.lstrip()[:1] == b"[":
                return _normalize(_many.decode(inner))
            return _normalize([_one.decode(inner)])
        if envelope.id is not None:
            return MarketParsed([])  # a control reply
        return _normalize([_one.decode(body)])
    except (msgspec.DecodeError, ValueError) as error:
        return MarketParsed([], "malformed", str(error)[:120])


def _normalize(items: list[_MarkPrice]) -> MarketParsed:
    updates = []
    for item in items:
        if item.e != "markPriceUpdate":
            return MarketParsed([], f"unknown_event:{item.e[:40]}", item.e[:40])
        price = float(item.p)
        if not (math.isfinite(price) and price > 0) or not item.s.isalnum():
            return MarketParsed([], "malformed", f"mark price {item.p!r} of {item.s!r}")
        updates.append(MarkPriceUpdate("binance", item.s.upper(), item.E, price))
    return MarketParsed(updates)


def parse_open_interest(body: bytes | str | msgspec.Raw) -> OpenInterestUpdate:
    """The update a response body holds; ValueError when it holds none."""
    try:
        decoded = _open_interest.decode(body)
        oi = float(decoded.openInterest)
    except (msgspec.DecodeError, ValueError) as error:
        raise ValueError(f"open interest body: {str(error)[:120]}") from None
    if not (math.isfinite(oi) and oi >= 0) or not decoded.symbol.isalnum():
        raise ValueError(f"open interest {decoded.openInterest!r} of {decoded.symbol!r}")
    return OpenInterestUpdate("binance", decoded.symbol.upper(), decoded.time, oi)
