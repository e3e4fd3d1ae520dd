"""Bybit V5 public linear liquidation feed (`allLiquidation.{SYMBOL}`): every liquidation.

Unlike Binance's one-per-second sample, `allLiquidation` pushes every liquidation, batched
every 500 ms. One connection carries the tracked symbols, subscribed in requests of at
most MAX_ARGS_PER_REQUEST topics and at most MAX_ARGS_CHARS characters of topics in all
(Bybit's per-connection bound; what does not fit is left out, counted and logged). `*`
subscribes every trading linear perpetual from the instruments list, fetched on each
connect. A request Bybit refuses (one unknown symbol fails the whole request) is retried
topic by topic, so a symbol Bybit does not list costs only itself, and status names it in
`unlisted`. Keep-alive is Bybit's JSON `{"op":"ping"}` every 20 s (with neither pings nor
data Bybit cuts the connection after 10 minutes).

With a `market_sink`, each symbol's `tickers.{SYMBOL}` (open interest and mark price) is
subscribed on the same connection; when the bound is reached, liquidations come first.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import msgspec

from hub.errors import UpstreamError
from hub.feeds.bybit_wire import (
    PING,
    BybitDecoder,
    failed_request,
    is_pong,
    reply_id,
    ticker_topic,
    topic,
    topic_symbol,
)
from hub.feeds.connection import KeepAlive, Timing
from hub.feeds.exchange import ExchangeFeed

MAX_ARGS_PER_REQUEST = 10
MAX_ARGS_CHARS = 21_000
INSTRUMENTS_PATH = "/v5/market/instruments-info?category=linear&limit=1000"
MAX_INSTRUMENT_PAGES = 20

log = logging.getLogger("hub.feeds")
_encoder = msgspec.json.Encoder()


class _Instrument(msgspec.Struct, frozen=True):
    symbol: str
    contractType: str = ""
    status: str = ""


class _InstrumentPage(msgspec.Struct, frozen=True, rename={"instruments": "list"}):
    instruments: list[_Instrument] = []
    nextPageCursor: str = ""


class _InstrumentsResponse(msgspec.Struct, frozen=True):
    retCode: int
    retMsg: str = ""
    result: _InstrumentPage = _InstrumentPage()


_instruments_decoder = msgspec.json.Decoder(_InstrumentsResponse)


def listed_perpetuals(body: bytes) -> tuple[list[str], str]:
    """(trading linear perpetual symbols, next page cursor) of one instruments page."""
    try:
        response = _instruments_decoder.decode(body)
    except msgspec.DecodeError as error:
        raise UpstreamError(f"Bybit instruments: malformed response: {error}") from None
    if response.retCode != 0:
        raise UpstreamError(f"Bybit instruments: error {response.retCode}: {response.retMsg}")
    symbols = [
        i.symbol
        for i in response.result.instruments
        if i.contractType == "LinearPerpetual" and i.status == "Trading" and i.symbol.isalnum()
    ]
    return symbols, response.result.nextPageCursor


def symbol_topics(symbols: list[str], tickers: bool) -> list[str]:
    """Every liquidation topic, then (with `tickers`) every ticker topic."""
    return [topic(s) for s in symbols] + ([ticker_topic(s) for s in symbols] if tickers else [])


def fitting_topics(symbols: list[str], tickers: bool = False) -> tuple[list[str], list[str]]:
    """(topics that fit one connection, symbols missing one of theirs), in the given
    order: liquidation topics first, so tickers are what a full connection goes without."""
    topics: list[str] = []
    used = 0
    for name in symbol_topics(symbols, tickers):
        if used + len(name) + 3 > MAX_ARGS_CHARS:  # quotes and comma, as sent
            break
        topics.append(name)
        used += len(name) + 3
    fitting = set(topics)
    left_out = [s for s in symbols if not set(symbol_topics([s], tickers)) <= fitting]
    return topics, left_out


class BybitFeed(ExchangeFeed):
    name = "bybit"
    note = "Bybit pushes every liquidation (allLiquidation, 500 ms batches)"
    timing = Timing(ping_interval=20.0)
    keep_alive = KeepAlive(PING, is_pong)
    decoder: BybitDecoder

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_ids = itertools.count(1)
        self._requests: dict[str, list[str]] = {}  # req_id -> topics of a pending subscribe
        self._refused: set[str] = set()  # symbols Bybit refused on this connection
        self._listed: list[str] = []  # every linear perpetual, for `*`
        self._retry: asyncio.Future[None] | None = None

    def new_decoder(self) -> BybitDecoder:
        return BybitDecoder()

    @property
    def tickers(self) -> bool:
        return self.market_sink is not None

    def is_listed(self, symbol: str) -> bool:
        return symbol not in self._refused

    async def prepare(self) -> None:
        self._requests.clear()
        self._refused.clear()
        if self.symbols is None:
            self._listed = await self._fetch_listed()

    def subscriptions(self) -> list[str]:
        wanted = sorted(self.symbols) if self.symbols is not None else self._listed
        topics, left_out = fitting_topics(wanted, self.tickers)
        if left_out:
            self.status.count_anomaly(
                "over_subscription_limit", f"{len(left_out)} symbols do not fit one connection"
            )
        return self._requests_for("subscribe", topics)

    def follow(self, added: set[str], removed: set[str]) -> list[str]:
        assert self.symbols is not None  # `*` follows no symbol at run time
        fitting, _ = fitting_topics(sorted(self.symbols), self.tickers)
        wanted = set(symbol_topics(sorted(added), self.tickers))
        if len(wanted & set(fitting)) < len(wanted):
            self.status.count_anomaly("over_subscription_limit", "added symbols do not fit")
        gone = symbol_topics(sorted(removed), self.tickers)
        subscribe = self._requests_for("subscribe", sorted(wanted & set(fitting)))
        return subscribe + self._requests_for("unsubscribe", gone)

    async def _fetch_listed(self) -> list[str]:
        symbols: list[str] = []
        cursor = ""
        for _ in range(MAX_INSTRUMENT_PAGES):
            page, cursor = listed_perpetuals(
                await self.get(INSTRUMENTS_PATH + (f"&cursor={cursor}" if cursor else ""))
            )
            symbols.extend(page)
            if not cursor:
                break
        return sorted(set(symbols))

    def _on_frame(self, frame: bytes, received_ms: int) -> None:
        failed = failed_request(frame)
        if failed is not None:
            self._request_failed(failed.req_id or "", failed.ret_msg or "")
        elif frame.startswith(b'{"success"'):
            self._requests.pop(reply_id(frame), None)
        super()._on_frame(frame, received_ms)

    def _request_failed(self, req_id: str, message: str) -> None:
        topics = self._requests.pop(req_id, [])
        if len(topics) == 1:
            symbol = topic_symbol(topics[0])
            self._refused.add(symbol)
            self._note_unlisted()
            log.warning("bybit: %s refused (%s); tracked on the other exchanges", symbol, message)
            return
        self.status.last_error = f"request failed: {message}"
        if topics:  # find which topic Bybit refused: one request each
            requests = self._requests_for("subscribe", topics, batch=1)
            self._retry = asyncio.ensure_future(self.send(requests))

    def _requests_for(
        self, op: str, topics: list[str], batch: int = MAX_ARGS_PER_REQUEST
    ) -> list[str]:
        """`op` requests for `topics`, `batch` a request; subscriptions are remembered by
        `req_id`, so that a refusal names its topics."""
        requests = []
        for start in range(0, len(topics), batch):
            req_id = str(next(self._request_ids))
            args = topics[start : start + batch]
            if op == "subscribe":
                self._requests[req_id] = args
            requests.append(_encoder.encode({"op": op, "req_id": req_id, "args": args}).decode())
        return requests
