"""HTX USDT-margined frames of the notification WebSocket (`public.*.liquidation_orders`)
and its open interest answer, decoded from bytes (no I/O). Frames arrive GZIP-compressed;
the connection inflates them, so what is decoded (and recorded) is the JSON.

A push is `{"op": "notify", "topic", "ts", "data": [{"symbol", "contract_code",
"direction", "offset", "volume", "price", "created_at", "amount", "trade_turnover",
"contract_type", "pair", "business_type"}]}`, numbers as JSON numbers. Normalization:
- `direction` is the liquidation **order**'s side: `sell` (with `offset: close`) means a
  long was liquidated (HTX's REST example for "liquidate long positions" returns
  `sell`/`close`; the channel's doc only says "long or short");
- `price` is the bankruptcy price, `amount` the base quantity (`volume` is contracts,
  `trade_turnover` USDT), time `created_at`; a row without `amount` (frames from 2020) is
  skipped and counted, its contract size being unknown here;
- `BTC-USDT` with `business_type`/`contract_type` `swap` (or neither, as before 2021) is
  the hub's `BTCUSDT`; dated futures (`BTC-USDT-210625`, `business_type: futures`) are
  ignored.
How complete the feed is, no HTX page says. A row seen recently is a duplicate.

Control frames: `{"op": "sub", "cid", "topic", "err-code"}` (non-zero: refused, e.g. 2014
after subscribing `*` then one contract), `{"op": "ping", "ts"}` every ~5 s (answered
`{"op": "pong", "ts": same}` by the connection: five ignored pings close it), `{"op":
"close"}` and `{"op": "error"}`.

Open interest: `GET /linear-swap-api/v1/swap_open_interest` lists every contract with
`amount` (base coin) and `value` (USDT), both **summed over long and short** (HTX's
field table); it is halved, to count positions once as the other exchanges do, and its
price is `value / amount`.
"""

from __future__ import annotations

import msgspec

from hub.errors import UpstreamError
from hub.feeds.base import Decoded, MarketUpdate, decode_common, excerpt
from hub.feeds.normalize import decode_answer, gather, liquidation_event, number
from hub.feeds.recent import RecentKeys
from hub.models import LiquidationEvent, OpenInterestUpdate

ALL_TOPIC = "public.*.liquidation_orders"
OPEN_INTEREST_PATH = "/linear-swap-api/v1/swap_open_interest"
_SIDES = {"sell": "long", "buy": "short"}
_encoder = msgspec.json.Encoder()


class Row(msgspec.Struct, frozen=True):
    contract_code: str
    direction: str
    price: float
    created_at: int
    volume: float = 0.0
    amount: float | None = None
    contract_type: str | None = None
    business_type: str | None = None


class Frame(msgspec.Struct, frozen=True, rename={"err_code": "err-code", "err_msg": "err-msg"}):
    op: str = ""
    topic: str = ""
    ts: int | str | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent
    err_code: int | None = None
    err_msg: str | None = None


class _Notify(msgspec.Struct, frozen=True):
    """The frame almost every one is, decoded in one pass (its op checked after)."""

    op: str
    data: list[Row]


class _Ping(msgspec.Struct, frozen=True):
    op: str
    ts: int | str


class OpenInterestRow(msgspec.Struct, frozen=True):
    contract_code: str
    amount: float
    value: float = 0.0
    contract_type: str | None = None
    business_type: str | None = None


class OpenInterestAnswer(msgspec.Struct, frozen=True):
    status: str
    ts: int = 0
    data: list[OpenInterestRow] = []


_notify_decoder = msgspec.json.Decoder(_Notify)
_frame_decoder = msgspec.json.Decoder(Frame)
_rows_decoder = msgspec.json.Decoder(list[Row])
_ping_decoder = msgspec.json.Decoder(_Ping)
_open_interest_decoder = msgspec.json.Decoder(OpenInterestAnswer)


def subscribe_request(topic: str = ALL_TOPIC, cid: str = "hub") -> str:
    return _encoder.encode({"op": "sub", "cid": cid, "topic": topic}).decode()


def pong(frame: bytes) -> str | None:
    """The answer to HTX's `{"op":"ping","ts":...}`; None for any other frame."""
    ping = decode_common(_ping_decoder, frame) if b'"ping"' in frame else None
    if ping is None or ping.op != "ping":
        return None
    return _encoder.encode({"op": "pong", "ts": ping.ts}).decode()


def symbol_of(
    contract_code: str, contract_type: str | None, business_type: str | None
) -> str | None:
    """`BTC-USDT` of a swap -> `BTCUSDT`; None for dated futures and anything else."""
    parts = contract_code.split("-")
    if len(parts) != 2 or parts[1] != "USDT" or not parts[0].isalnum():
        return None
    if contract_type not in (None, "swap") or business_type not in (None, "swap"):
        return None
    return f"{parts[0]}USDT"


class HtxDecoder:
    def __init__(self) -> None:
        self.recent = RecentKeys()

    def take_rest(self, path: str, body: bytes) -> bool:
        # Open interest answers are market data, which the live feed reads (open_interest).
        return path.startswith(OPEN_INTEREST_PATH)

    def decode(self, frame: bytes) -> Decoded:
        notify = decode_common(_notify_decoder, frame)
        if notify is not None and notify.op == "notify":
            return self._liquidations(notify.data)
        try:
            outer = _frame_decoder.decode(frame)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", str(error))])
        if outer.op == "sub" or outer.op == "unsub":
            if outer.err_code:
                return Decoded([], [("error_reply", f"{outer.err_code}: {outer.err_msg}")])
            return Decoded([])
        if outer.op in ("ping", "pong"):
            return Decoded([])
        if outer.op in ("close", "error"):
            return Decoded([], [(f"server_{outer.op}", excerpt(frame))])
        if outer.op != "notify" or not outer.data:
            return Decoded([], [("unexpected_frame", excerpt(frame))])
        try:
            rows = _rows_decoder.decode(outer.data)
        except msgspec.DecodeError as error:
            return Decoded([], [("malformed", f"data: {error}")])
        return self._liquidations(rows)

    def _liquidations(self, rows: list[Row]) -> Decoded:
        return gather(rows, _read, _key, self.recent, lambda row: row.contract_code)


def _key(row: Row, event: LiquidationEvent) -> tuple[object, ...]:
    return (row.contract_code, row.created_at, row.direction, row.price, row.volume)


def _read(row: Row) -> list[LiquidationEvent] | None:
    symbol = symbol_of(row.contract_code, row.contract_type, row.business_type)
    if symbol is None:
        return None
    side = _SIDES.get(row.direction)
    if side is None:
        raise ValueError(f"direction {row.direction!r} is neither buy nor sell")
    quantity = number(row.amount, "amount (base quantity)")
    return [liquidation_event("htx", symbol, side, row.price, quantity, row.created_at)]  # type: ignore[arg-type]


def parse_open_interest(body: bytes) -> Decoded:
    """The open interest of every USDT swap in an answer, one side's worth, in base coin;
    `UpstreamError` for an error answer or another shape."""
    answer = decode_answer(_open_interest_decoder, body, "HTX open interest")
    if answer.status != "ok":
        raise UpstreamError(f"HTX open interest: status {answer.status!r}")
    market: list[MarketUpdate] = []
    anomalies: list[tuple[str, str]] = []
    ignored = 0
    for row in answer.data:
        symbol = symbol_of(row.contract_code, row.contract_type, row.business_type)
        if symbol is None:
            ignored += 1
            continue
        try:
            both_sides = number(row.amount, "amount")
        except ValueError as error:
            anomalies.append(("malformed", f"open interest {row.contract_code[:40]}: {error}"))
            continue
        price = row.value / row.amount if row.amount > 0 and row.value > 0 else None
        market.append(OpenInterestUpdate("htx", symbol, answer.ts, both_sides / 2, price))
    return Decoded([], anomalies, ignored=ignored, market=market)
