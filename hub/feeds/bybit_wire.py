"""Bybit V5 public linear frames (`allLiquidation.{SYMBOL}`), decoded from bytes (no I/O).

A push is `{"topic", "type", "ts", "data": [{"T", "s", "S", "v", "p"}, ...]}`: `data` is an
array, since Bybit batches every liquidation of 500 ms into one push. `S` is the side of
the liquidated **position** (`Buy`: a long was liquidated; the opposite of Binance's order
side), `p` the bankruptcy price, `v` the size in base coin (linear contracts), `T` the
time. Control replies are `{"success", "ret_msg", "op", ...}`; the answer to our JSON ping
is one with `op: "ping"` (`ret_msg: "pong"`). Unknown fields are ignored.
"""

from __future__ import annotations

import math

import msgspec

from hub.feeds.base import Decoded, excerpt
from hub.models import LiquidationEvent, round_notional

TOPIC_PREFIX = "allLiquidation."
PING = '{"op":"ping"}'
_SIDES = {"Buy": "long", "Sell": "short"}


class Liquidation(msgspec.Struct, frozen=True):
    T: int  # time, ms
    s: str  # symbol
    S: str  # position side
    v: str  # size, base coin
    p: str  # bankruptcy price


class Frame(msgspec.Struct, frozen=True):
    topic: str | None = None
    type: str | None = None
    ts: int | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent
    op: str | None = None
    success: bool | None = None
    ret_msg: str | None = None
    req_id: str | None = None


_frame_decoder = msgspec.json.Decoder(Frame)
_batch_decoder = msgspec.json.Decoder(list[Liquidation])


def topic(symbol: str) -> str:
    return f"{TOPIC_PREFIX}{symbol.upper()}"


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
    def decode(self, frame: bytes) -> Decoded:
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
        if not outer.topic.startswith(TOPIC_PREFIX):
            return Decoded([], [(f"unknown_topic:{outer.topic[:40]}", outer.topic[:60])])
        try:
            batch = _batch_decoder.decode(outer.data)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", f"data: {error}")])
        events: list[LiquidationEvent] = []
        anomalies: list[tuple[str, str]] = []
        for item in batch:
            try:
                events.append(normalize(item))
            except ValueError as error:
                anomalies.append(("malformed", f"liquidation: {error}"))
        return Decoded(events, anomalies)

    def take_rest(self, path: str, body: bytes) -> None:
        return None


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
