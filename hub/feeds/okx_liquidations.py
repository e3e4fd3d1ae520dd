"""OKX `liquidation-orders` pushes to events (no I/O).

One subscription (`instType: SWAP`) carries every swap: `data[]` holds per instrument
`instId` and `details[]` with `side` (the liquidation **order** side: `buy` closes a
short, so a short was liquidated), `bkPx` (bankruptcy price), `sz` (contracts) and `ts`.
Quantity is `sz * ctVal` from the instruments list; an instrument whose contract value is
not known is skipped and counted, never guessed (a guess is how notionals end up 100 times
off). Pushes are not in time order, and a fresh connection may replay recent ones: a
liquidation seen recently is dropped here and counted as a duplicate.

The same connection may carry `open-interest` and `mark-price` pushes (okx_market),
decoded here too, so that a live feed and a replay route them alike.
"""

from __future__ import annotations

import math

import msgspec

from hub.feeds.base import Decoded, decode_common, excerpt
from hub.feeds.okx_instruments import is_instruments_path, parse_contract_values
from hub.feeds.okx_market import DECODERS as MARKET_DECODERS
from hub.feeds.okx_wire import Arg, decode_envelope, is_pong, swap_symbol
from hub.feeds.recent import RecentKeys
from hub.models import LiquidationEvent, round_notional
from hub.rounding import rounded_float

CHANNEL = "liquidation-orders"
SUBSCRIPTION = {"channel": CHANNEL, "instType": "SWAP"}
_SIDES = {"sell": "long", "buy": "short"}


class Detail(msgspec.Struct, frozen=True):
    side: str
    sz: str
    bkPx: str
    ts: str
    posSide: str = ""


class InstrumentLiquidations(msgspec.Struct, frozen=True):
    instId: str
    details: list[Detail] = []


class _LiquidationPush(msgspec.Struct, frozen=True):
    """The frame almost every one is, decoded in one pass (its channel checked after)."""

    arg: Arg
    data: list[InstrumentLiquidations]


_data_decoder = msgspec.json.Decoder(list[InstrumentLiquidations])
_push_decoder = msgspec.json.Decoder(_LiquidationPush)


class OkxLiquidationDecoder:
    def __init__(self, contract_values: dict[str, float] | None = None) -> None:
        self.contract_values: dict[str, float] = dict(contract_values or {})
        self.recent = RecentKeys()

    def take_rest(self, path: str, body: bytes) -> bool:
        if not is_instruments_path(path):
            return False
        self.contract_values = parse_contract_values(body)
        return True

    def decode(self, frame: bytes) -> Decoded:
        if is_pong(frame):
            return Decoded([])
        push = decode_common(_push_decoder, frame)
        if push is not None and push.arg.channel == CHANNEL:
            return self._normalize(push.data)
        try:
            envelope = decode_envelope(frame)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", str(error))])
        if envelope.event is not None:
            if envelope.event == "error":
                return Decoded([], [("error_reply", f"{envelope.code}: {envelope.msg}")])
            return Decoded([])  # subscribe / unsubscribe acknowledged
        if envelope.arg is None or not envelope.data:
            return Decoded([], [("unexpected_frame", excerpt(frame))])
        market = MARKET_DECODERS.get(envelope.arg.channel)
        if market is not None:
            return market(envelope.data)
        if envelope.arg.channel != CHANNEL:
            # Another OKX channel (a book, trades): not an error, another reader's data (a
            # recording of every OKX source interleaves them).
            return Decoded([], ignored=1)
        try:
            pushed = _data_decoder.decode(envelope.data)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", f"data: {error}")])
        return self._normalize(pushed)

    def _normalize(self, pushed: list[InstrumentLiquidations]) -> Decoded:
        events: list[LiquidationEvent] = []
        anomalies: list[tuple[str, str]] = []
        duplicates = ignored = 0
        for item in pushed:
            symbol = swap_symbol(item.instId)
            if symbol is None:
                ignored += len(item.details)  # inverse swaps: not what the hub follows
                continue
            contract_value = self.contract_values.get(item.instId)
            if contract_value is None:
                anomalies.append(("unknown_instrument", item.instId[:40]))
                continue
            for detail in item.details:
                key = (item.instId, detail.ts, detail.side, detail.bkPx, detail.sz)
                try:
                    event = _event(symbol, detail, contract_value)
                except ValueError as error:
                    anomalies.append(("malformed", f"{item.instId[:40]}: {error}"))
                    continue
                if self.recent.seen(key):
                    duplicates += 1
                    continue
                events.append(event)
        return Decoded(events, anomalies, duplicates, ignored)


def _event(symbol: str, detail: Detail, contract_value: float) -> LiquidationEvent:
    side = _SIDES.get(detail.side)
    if side is None:
        raise ValueError(f"side {detail.side!r} is neither buy nor sell")
    price = float(detail.bkPx)
    quantity = rounded_float(float(detail.sz) * contract_value)
    time = int(detail.ts)
    if not (math.isfinite(price) and math.isfinite(quantity)) or price <= 0 or quantity <= 0:
        raise ValueError(f"price {price} and size {detail.sz} must be positive")
    return LiquidationEvent(
        exchange="okx",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        price=price,
        quantity=quantity,
        notional=round_notional(price * quantity),
        time=time,
    )
