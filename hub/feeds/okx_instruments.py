"""OKX instruments (`GET /api/v5/public/instruments`): the contract value of each swap.

OKX counts sizes in contracts; a contract of a linear instrument is `ctVal` base coin
(BTC-USDT-SWAP: 0.01 BTC), so base quantity = `sz * ctVal`. Only linear instruments are
kept: an inverse contract's `ctVal` is in the quote currency and would need a price to
convert. The parse is pure; the feeds fetch the list (and record its body, so that a
replay converts exactly as the live feed did).
"""

from __future__ import annotations

import msgspec

from hub.errors import UpstreamError
from hub.feeds.normalize import decode_answer, positive_or_none


class Instrument(msgspec.Struct, frozen=True):
    instId: str
    ctVal: str = ""
    ctType: str = ""
    state: str = ""


class InstrumentsResponse(msgspec.Struct, frozen=True):
    code: str
    msg: str = ""
    data: list[Instrument] = []


_response_decoder = msgspec.json.Decoder(InstrumentsResponse)


def instruments_path(inst_type: str = "SWAP") -> str:
    return f"/api/v5/public/instruments?instType={inst_type}"


def is_instruments_path(path: str) -> bool:
    return path.startswith("/api/v5/public/instruments")


def parse_contract_values(body: bytes) -> dict[str, float]:
    """{instId: ctVal} of the linear instruments in a response; UpstreamError if OKX
    answered with an error or something else than the documented shape."""
    response = decode_answer(_response_decoder, body, "OKX instruments")
    if response.code != "0":
        raise UpstreamError(f"OKX instruments: error {response.code}: {response.msg}")
    return {
        instrument.instId: value
        for instrument in response.data
        if instrument.ctType == "linear" and (value := positive_or_none(instrument.ctVal))
    }
