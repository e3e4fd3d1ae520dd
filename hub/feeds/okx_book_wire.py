"""OKX V5 public WebSocket frames of the `books` and `trades` channels, and the REST book.

Wire facts (docs/liquidity.md has the sources): a level is `[px, sz, "0", orders]` with
every value a string and `sz` in contracts (REST books-full sends three elements);
`checksum`, `prevSeqId` and `seqId` are JSON integers; a trade's `side` is the taker's.
Frames from before 2023 carry no `seqId`, and since 2026-06-23 `checksum` is always 0.
Unknown fields are ignored, never an error. Books decode into the exchange-neutral
`BookData` of `hub.market.book`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from hub.market.book import BookData

BOOKS = "books"
TRADES = "trades"
LIQUIDATIONS = "liquidation-orders"  # read by hub.feeds.okx; in a recording, interleaved


class Arg(msgspec.Struct, frozen=True):
    channel: str
    instId: str = ""


class Trade(msgspec.Struct):
    instId: str
    px: str
    sz: str
    side: str
    ts: str = "0"
    tradeId: str = ""


class _Envelope(msgspec.Struct):
    arg: Arg | None = None
    event: str | None = None
    action: str | None = None
    code: str | None = None
    msg: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"")  # absent: empty


class RestBooks(msgspec.Struct):
    code: str
    msg: str = ""
    data: list[BookData] = []


class BookFrame(msgspec.Struct, frozen=True):
    inst_id: str
    action: Literal["snapshot", "update"]
    data: BookData


class TradesFrame(msgspec.Struct, frozen=True):
    inst_id: str
    trades: list[Trade]


class EventFrame(msgspec.Struct, frozen=True):
    """A reply to a request: `subscribe`, `unsubscribe` or `error` (then `code`, `msg`)."""

    event: str
    channel: str
    inst_id: str
    code: str
    msg: str


class Anomaly(msgspec.Struct, frozen=True):
    kind: str  # "malformed" or a short name of what was unexpected
    detail: str


# None: nothing for the book (the text `pong`, another OKX channel's push)
Frame = BookFrame | TradesFrame | EventFrame | Anomaly | None

_envelope = msgspec.json.Decoder(_Envelope)
_book_list = msgspec.json.Decoder(list[BookData])
_trade_list = msgspec.json.Decoder(list[Trade])
_rest_books = msgspec.json.Decoder(RestBooks)


def parse_frame(frame: bytes | str) -> Frame:
    """One text frame of the public socket, classified."""
    raw = frame.encode() if isinstance(frame, str) else frame
    if raw == b"pong":
        return None
    try:
        envelope = _envelope.decode(raw)
    except msgspec.DecodeError as error:
        return Anomaly("malformed", f"{error}: {raw[:80]!r}")
    arg = envelope.arg
    if envelope.event is not None:
        return EventFrame(
            envelope.event,
            arg.channel if arg else "",
            arg.instId if arg else "",
            envelope.code or "",
            envelope.msg or "",
        )
    if arg is None or not envelope.data:
        return Anomaly("unexpected_frame", raw[:80].decode(errors="replace"))
    try:
        if arg.channel == BOOKS:
            if envelope.action not in ("snapshot", "update"):
                return Anomaly("unknown_book_action", str(envelope.action))
            books = _book_list.decode(envelope.data)
            if len(books) != 1:
                return Anomaly("malformed", f"books push with {len(books)} data entries")
            return BookFrame(arg.instId, envelope.action, books[0])  # type: ignore[arg-type]
        if arg.channel == TRADES:
            return TradesFrame(arg.instId, _trade_list.decode(envelope.data))
    except msgspec.DecodeError as error:
        return Anomaly("malformed", f"{arg.channel}: {error}")
    if arg.channel == LIQUIDATIONS:
        return None
    return Anomaly("unknown_channel", arg.channel)


def parse_rest_books(body: bytes) -> BookData:
    """The book of `GET /api/v5/market/books`; `ValueError` for an error or odd body."""
    try:
        reply = _rest_books.decode(body)
    except msgspec.DecodeError as error:
        raise ValueError(f"malformed order-book response: {error}") from None
    if reply.code != "0" or len(reply.data) != 1:
        raise ValueError(f"order-book request refused: code {reply.code} {reply.msg!r}")
    return reply.data[0]


def subscribe_request(op: str, inst_ids: list[str], channels: tuple[str, ...]) -> dict[str, object]:
    return {
        "op": op,
        "args": [{"channel": c, "instId": i} for i in inst_ids for c in channels],
    }


def symbol_of(inst_id: str) -> str:
    """`BTC-USDT-SWAP` -> `BTCUSDT`."""
    return "".join(inst_id.split("-")[:2])
