"""OKX V5 public WebSocket envelopes, shared by every OKX channel the hub reads (no I/O).

Every frame is JSON except the keep-alive: the client sends the text `ping` and OKX
answers the text `pong`. A push is `{"arg": {"channel", ...}, "data": [...]}` (book
channels add `action`); a reply to a request is `{"event": "subscribe"|"unsubscribe"|
"error", "arg", "code", "msg", "connId"}`. `data` is left encoded so that each channel
decodes it into its own structs. Instruments are named `BTC-USDT-SWAP`; the hub's name
for that perpetual is `BTCUSDT`.
"""

from __future__ import annotations

from typing import Any

import msgspec

PING = "ping"
PONG = b"pong"
SWAP_QUOTES = ("USDT", "USDC")  # linear perpetuals, whose contract value is in base coin


class Arg(msgspec.Struct, frozen=True):
    channel: str
    instType: str | None = None
    instId: str | None = None
    instFamily: str | None = None


class Envelope(msgspec.Struct, frozen=True):
    arg: Arg | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent
    action: str | None = None
    event: str | None = None
    code: str | None = None
    msg: str | None = None
    connId: str | None = None


_envelope_decoder = msgspec.json.Decoder(Envelope)
_encoder = msgspec.json.Encoder()


def decode_envelope(frame: bytes | str) -> Envelope:
    """Raises `msgspec.DecodeError` for anything that is not an OKX JSON frame."""
    return _envelope_decoder.decode(frame)


def is_pong(frame: bytes) -> bool:
    return frame == PONG


def request(op: str, args: list[dict[str, Any]], request_id: str | None = None) -> str:
    body: dict[str, Any] = {"op": op, "args": args}
    if request_id is not None:
        body["id"] = request_id  # OKX: up to 32 letters and digits
    return _encoder.encode(body).decode()


def swap_symbol(inst_id: str) -> str | None:
    """`BTC-USDT-SWAP` -> `BTCUSDT`; None for anything but a USDT/USDC perpetual."""
    parts = inst_id.split("-")
    if len(parts) != 3 or parts[2] != "SWAP" or parts[1] not in SWAP_QUOTES:
        return None
    return f"{parts[0]}{parts[1]}" if parts[0].isalnum() else None


def swap_inst_id(symbol: str) -> str | None:
    """`BTCUSDT` -> `BTC-USDT-SWAP`; None when the symbol has no OKX perpetual form."""
    symbol = symbol.upper()
    for quote in SWAP_QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}-{quote}-SWAP"
    return None
