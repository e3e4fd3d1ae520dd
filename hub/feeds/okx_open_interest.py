"""OKX `open-interest` pushes to `OpenInterestUpdate`s (no I/O).

One subscription per instrument (`{"channel": "open-interest", "instId": "BTC-USDT-SWAP"}`),
pushed every 3 s when it changed. Each `data[]` item has `instId`, `oi` (contracts),
`oiCcy` (base coin), `oiUsd` and `ts`; the hub takes `oiCcy`, already in base units, so no
contract value is needed. The channel carries no price: the predicted levels price it at
the last mark price they saw for the symbol (Binance's or Bybit's).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from hub.feeds.base import Decoded, MarketUpdate
from hub.feeds.okx_wire import swap_inst_id, swap_symbol
from hub.models import OpenInterestUpdate

CHANNEL = "open-interest"


class OpenInterest(msgspec.Struct, frozen=True):
    instId: str
    oiCcy: str  # base coin
    ts: str
    oi: str = ""  # contracts


_data_decoder = msgspec.json.Decoder(list[OpenInterest])


def subscription(symbol: str) -> dict[str, Any] | None:
    """The channel argument for a hub symbol; None when OKX has no perpetual of that form."""
    inst_id = swap_inst_id(symbol)
    return None if inst_id is None else {"channel": CHANNEL, "instId": inst_id}


def decode_open_interest(data: msgspec.Raw) -> Decoded:
    try:
        pushed = _data_decoder.decode(data)
    except msgspec.DecodeError as error:
        return Decoded([], [("malformed", f"open-interest: {error}")])
    market: list[MarketUpdate] = []
    anomalies: list[tuple[str, str]] = []
    ignored = 0
    for item in pushed:
        symbol = swap_symbol(item.instId)
        if symbol is None:
            ignored += 1  # an inverse swap or another kind of instrument
            continue
        try:
            oi, time = float(item.oiCcy), int(item.ts)
        except ValueError as error:
            anomalies.append(("malformed", f"open-interest {item.instId[:40]}: {error}"))
            continue
        if not (math.isfinite(oi) and oi >= 0):
            anomalies.append(("malformed", f"open-interest {item.instId[:40]}: oiCcy {oi}"))
            continue
        market.append(OpenInterestUpdate("okx", symbol, time, oi))
    return Decoded([], anomalies, ignored=ignored, market=market)
