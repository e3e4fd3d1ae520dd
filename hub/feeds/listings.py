"""Which symbols each exchange lists, from its REST API (one fetcher per exchange).

A fetcher is an async function returning the set of symbols, in the hub's naming, that
the exchange trades as USD-margined perpetuals now; it raises `UpstreamError` when the
answer cannot be had. Binance: `GET {BINANCE_REST_URL}/fapi/v1/exchangeInfo`, whose
`symbols` rows carry `symbol`, `contractType` (`PERPETUAL`, `CURRENT_QUARTER`, ...) and
`status` (`TRADING`, `SETTLING`, `PENDING_TRADING`, ...); fields the hub does not read are
ignored. The request runs in a daemon thread (urllib): it is made once a day, which does
not justify an HTTP client dependency, and a daemon thread never holds up the exit that
SIGTERM asks for (the default executor would wait out the request's timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable

import msgspec

from hub.errors import UpstreamError, clip

ListingFetcher = Callable[[], Awaitable[set[str]]]
TIMEOUT_S = 10.0
MAX_BODY = 32 * 1024 * 1024  # exchangeInfo is about 1.5 MB today


class _BinanceSymbol(msgspec.Struct, rename="camel"):
    symbol: str
    status: str = ""
    contract_type: str = ""


class _BinanceExchangeInfo(msgspec.Struct):
    symbols: list[_BinanceSymbol]


_binance_decoder = msgspec.json.Decoder(_BinanceExchangeInfo)


def _get(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: bytes = response.read(MAX_BODY + 1)
    except urllib.error.HTTPError as error:
        raise UpstreamError(f"GET {url}: HTTP {error.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise UpstreamError(f"GET {url}: {clip(str(reason), 160)}") from None
    if len(body) > MAX_BODY:
        raise UpstreamError(f"GET {url}: answer over {MAX_BODY} bytes")
    return body


async def get_bytes(url: str) -> bytes:
    """The body of a GET, within TIMEOUT_S; `UpstreamError` otherwise."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()

    def settle(body: bytes | None, error: BaseException | None) -> None:
        if answer.done():  # the caller was cancelled meanwhile
            return
        if error is None:
            answer.set_result(body or b"")
        else:
            answer.set_exception(error)

    def fetch() -> None:
        try:
            result: tuple[bytes | None, BaseException | None] = (_get(url, TIMEOUT_S), None)
        except Exception as error:
            result = (None, error)
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(settle, *result)

    threading.Thread(target=fetch, name="hub-rest-get", daemon=True).start()
    return await answer


def parse_binance_listing(body: bytes) -> set[str]:
    """The perpetuals trading now, from an exchangeInfo body."""
    try:
        info = _binance_decoder.decode(body)
    except msgspec.DecodeError as error:
        raise UpstreamError(f"exchangeInfo: {clip(str(error), 160)}") from None
    return {
        row.symbol.upper()
        for row in info.symbols
        if row.contract_type == "PERPETUAL" and row.status == "TRADING"
    }


def binance_listing(rest_url: str) -> ListingFetcher:
    url = f"{rest_url}/fapi/v1/exchangeInfo"

    async def fetch() -> set[str]:
        return parse_binance_listing(await get_bytes(url))

    return fetch
