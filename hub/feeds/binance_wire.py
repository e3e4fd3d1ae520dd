"""Binance USD-M futures `forceOrder` frames, decoded straight from bytes (no I/O).

Accepted shapes: the combined-stream envelope `{"stream", "data"}` (per-symbol and
`!forceOrder@arr`), the bare payload of a raw `/ws` connection, and control replies
`{"result", "id"}` / `{"code", "msg"}`. Unknown fields (the live `ps`, `st`) are ignored.

Normalization (docs/protocol.md, "Liquidations"): `S=SELL` is a liquidated long, `BUY` a
short; price is the average fill price `ap`, else the order price `p`; quantity is the
filled `z`, else `q`; time is the trade time `T`. Binance pushes at most the latest
liquidation per symbol per second, so what arrives is a sample of all liquidations;
nothing here depends on that rate.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import msgspec

from hub.feeds.base import Decoded, decode_common
from hub.models import LiquidationEvent, round_notional

ALL_MARKET_STREAM = "!forceOrder@arr"


class Order(msgspec.Struct, frozen=True):
    s: str  # symbol
    S: str  # order side
    q: str  # original quantity
    p: str  # order price
    ap: str = "0"  # average fill price
    z: str = "0"  # accumulated filled quantity
    T: int = 0  # trade time, ms
    X: str = ""
    l: str = "0"  # noqa: E741 - Binance's field name


class Payload(msgspec.Struct, frozen=True):
    e: str
    E: int = 0
    o: msgspec.Raw = msgspec.Raw()  # empty when absent


class Frame(msgspec.Struct, frozen=True):
    """Any frame on a Binance market connection; which fields are set tells its kind."""

    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent
    e: str | None = None
    E: int | None = None
    o: msgspec.Raw = msgspec.Raw()  # empty when absent
    result: Any = None
    id: int | None = None
    code: int | None = None
    msg: str | None = None


class _ForceOrderPayload(msgspec.Struct, frozen=True):
    e: str
    o: Order | None = None


class _StreamForceOrder(msgspec.Struct, frozen=True):
    """The frame almost every one is: a combined-stream forceOrder, decoded in one pass."""

    stream: str
    data: _ForceOrderPayload


class Parsed(NamedTuple):
    """The outcome of one frame: an event, a control reply, or an anomaly kind + detail."""

    event: LiquidationEvent | None = None
    reply_id: int | None = None
    anomaly: str | None = None
    detail: str = ""


_frame_decoder = msgspec.json.Decoder(Frame)
_payload_decoder = msgspec.json.Decoder(Payload)
_order_decoder = msgspec.json.Decoder(Order)
_stream_force_order_decoder = msgspec.json.Decoder(_StreamForceOrder)


def stream_name(symbol: str) -> str:
    return f"{symbol.lower()}@forceOrder"


def parse_frame(frame: bytes | str) -> Parsed:
    common = decode_common(_stream_force_order_decoder, frame)
    if common is not None and common.data.e == "forceOrder" and common.data.o is not None:
        try:
            return Parsed(normalize(common.data.o))
        except ValueError as error:
            return Parsed(anomaly="malformed", detail=f"order: {error}")
    try:
        outer = _frame_decoder.decode(frame)
    except msgspec.DecodeError as error:
        return Parsed(anomaly="malformed", detail=str(error))
    if outer.data:
        try:
            payload = _payload_decoder.decode(outer.data)
        except msgspec.DecodeError as error:
            return Parsed(anomaly="malformed", detail=f"data: {error}")
        return _parse_payload(payload.e, payload.o)
    if outer.e is not None:
        return _parse_payload(outer.e, outer.o)
    if outer.code is not None:
        return Parsed(reply_id=outer.id, anomaly="error_reply", detail=f"{outer.code}: {outer.msg}")
    if outer.id is not None:
        return Parsed(reply_id=outer.id)
    return Parsed(anomaly="unexpected_frame", detail=_excerpt(frame))


def _parse_payload(event_type: str, order_raw: msgspec.Raw) -> Parsed:
    if event_type != "forceOrder":
        return Parsed(anomaly=f"unknown_event:{event_type[:40]}", detail=event_type[:40])
    if not order_raw:
        return Parsed(anomaly="malformed", detail="forceOrder without 'o'")
    try:
        order = _order_decoder.decode(order_raw)
        return Parsed(event=normalize(order))
    except (msgspec.DecodeError, ValueError) as error:
        return Parsed(anomaly="malformed", detail=f"order: {error}")


def normalize(order: Order) -> LiquidationEvent:
    if order.S == "SELL":
        side = "long"
    elif order.S == "BUY":
        side = "short"
    else:
        raise ValueError(f"side {order.S!r} is neither BUY nor SELL")
    price = float(order.ap) or float(order.p)
    quantity = float(order.z) or float(order.q)
    if not (math.isfinite(price) and math.isfinite(quantity)) or price <= 0 or quantity <= 0:
        raise ValueError(f"price {price} and quantity {quantity} must be positive")
    if not order.s.isalnum():
        raise ValueError(f"symbol {order.s!r} is not a symbol")
    return LiquidationEvent(
        exchange="binance",
        symbol=order.s.upper(),
        side=side,
        price=price,
        quantity=quantity,
        notional=round_notional(price * quantity),
        time=order.T,
    )


def _excerpt(frame: bytes | str) -> str:
    text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
    return text[:120]


class BinanceDecoder:
    """`parse_frame` behind the `Decoder` interface (for replays of mixed sources)."""

    def decode(self, frame: bytes) -> Decoded:
        parsed = parse_frame(frame)
        if parsed.event is not None:
            return Decoded([parsed.event])
        return Decoded([], [] if parsed.anomaly is None else [(parsed.anomaly, parsed.detail)])

    def take_rest(self, path: str, body: bytes) -> bool:
        return False  # open interest answers are market data, read beside this decoder
