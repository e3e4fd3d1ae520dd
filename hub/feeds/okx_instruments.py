"""OKX instruments (`GET /api/v5/public/instruments`): the contract value of each swap.

OKX counts sizes in contracts; a contract of a linear instrument is `ctVal` base coin
(BTC-USDT-SWAP: 0.01 BTC), so base quantity = `sz * ctVal`. Only linear instruments are
kept: an inverse contract's `ctVal` is in the quote currency and would need a price to
convert. The parse is pure; the feeds fetch the list (and record its body, so that a
replay converts exactly as the live feed did).
"""

from __future__ import annotations

import math

import msgspec

from hub.errors import UpstreamError


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
    try:
        response = _response_decoder.decode(body)
    except msgspec.DecodeError as error:
        raise UpstreamError(f"OKX instruments: malformed response: {error}") from None
    if response.code != "0":
        raise UpstreamError(f"OKX instruments: error {response.code}: {response.msg}")
    values: dict[str, float] = {}
    for instrument in response.data:
        if instrument.ctType != "linear":
            continue
        try:
            value = float(instrument.ctVal)
        except ValueError:
            continue
        if math.isfinite(value) and value > 0:
            values[instrument.instId] = value
    return values
