"""CoinGlass API v4's aggregated hourly liquidation history: the request and its answer.

`GET {COINGLASS_URL}/api/futures/liquidation/aggregated-history` (header `CG-API-KEY`),
interval 1h, the last WINDOW_HOURS hours of one coin over the named exchanges. Amounts
may come as numbers or strings; both are read. What is done with the history (the
comparison with the hub's own, the polling and its status) is `hub.service.coinglass`'s.
"""

from __future__ import annotations

from urllib.parse import urlencode

import msgspec

from hub.feeds.http import get

HISTORY_PATH = "/api/futures/liquidation/aggregated-history"
WINDOW_HOURS = 24
# The hub's exchange names as CoinGlass spells them (its `exchange_list` values).
EXCHANGE_NAMES = {
    "binance": "Binance",
    "bybit": "Bybit",
    "okx": "OKX",
    "bitget": "Bitget",
    "gate": "Gate",
    "htx": "HTX",
    "deribit": "Deribit",
    "bitmex": "Bitmex",
}


class _Row(msgspec.Struct):
    time: int
    aggregated_long_liquidation_usd: float | str = 0.0
    aggregated_short_liquidation_usd: float | str = 0.0


class _History(msgspec.Struct):
    code: str | int
    msg: str = ""
    data: list[_Row] | None = None


class Refused(Exception):
    """CoinGlass answered, but not with data (a plan limit, a bad parameter)."""


def coin_of(symbol: str) -> str:
    for quote in ("USDT", "USDC", "USD"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)]
    return symbol


def parse_history(body: bytes) -> dict[int, tuple[float, float]]:
    try:
        reply = msgspec.json.decode(body, type=_History)
    except msgspec.DecodeError as error:
        raise Refused(f"malformed response: {error}") from None
    if str(reply.code) != "0" or reply.data is None:
        raise Refused(f"code {reply.code}: {reply.msg or 'no data'}")
    return {
        row.time: (
            float(row.aggregated_long_liquidation_usd),
            float(row.aggregated_short_liquidation_usd),
        )
        for row in reply.data
    }


def coinglass_names(exchanges: list[str]) -> list[str]:
    return [EXCHANGE_NAMES.get(e, e) for e in exchanges]


async def fetch_history(
    url: str, key: str, names: list[str], coin: str
) -> dict[int, tuple[float, float]]:
    """{hour start: (long usd, short usd)} over the exchanges CoinGlass calls `names`;
    `HttpStatusError` for an HTTP error, `OSError` when CoinGlass cannot be reached,
    `Refused` when it answers without data."""
    query = urlencode(
        {
            "exchange_list": ",".join(names),
            "symbol": coin,
            "interval": "1h",
            "limit": WINDOW_HOURS + 1,
        }
    )
    body = await get(f"{url}{HISTORY_PATH}?{query}", {"CG-API-KEY": key})
    return parse_history(body)
