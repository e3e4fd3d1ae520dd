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
import time

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hub.errors import UpstreamError
from hub.feeds.backoff import Backoff
from hub.feeds.base import EventSink, Feed, FeedStatus, MarketSink, deliver, deliver_market
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
from hub.feeds.connection import KeepAlive, PersistentConnection, Timing

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


class BybitFeed(Feed):
    def __init__(
        self,
        ws_url: str,
        rest_url: str,
        symbols: set[str] | None,
        sink: EventSink,
        timing: Timing | None = None,
        backoff: Backoff | None = None,
        market_sink: MarketSink | None = None,
    ) -> None:
        """`symbols` None subscribes every linear perpetual Bybit lists; `market_sink`
        None leaves tickers unsubscribed."""
        self.ws_url = ws_url
        self.rest_url = rest_url
        self.symbols = None if symbols is None else {s.upper() for s in symbols}
        self.sink = sink
        self.market_sink = market_sink
        self.decoder = BybitDecoder()
        self.status = FeedStatus(
            name="bybit", note="Bybit pushes every liquidation (allLiquidation, 500 ms batches)"
        )
        self._request_ids = itertools.count(1)
        self._requests: dict[str, list[str]] = {}  # req_id -> topics of a pending subscribe
        self._http: httpx.AsyncClient | None = None
        self._retry: asyncio.Future[None] | None = None
        self.connection = PersistentConnection(
            self.status,
            lambda: self.ws_url,
            self._on_frame,
            self._on_open,
            timing or Timing(ping_interval=20.0),
            backoff,
            KeepAlive(PING, is_pong),
        )

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            self._http = client
            await self.connection.run()

    async def _on_open(self, websocket: ClientConnection) -> None:
        self._requests.clear()
        self.status.unlisted = []
        wanted = sorted(self.symbols) if self.symbols is not None else await self._listed()
        topics, left_out = fitting_topics(wanted, self.tickers)
        if left_out:
            self.status.count_anomaly(
                "over_subscription_limit", f"{len(left_out)} symbols do not fit one connection"
            )
        await self._send("subscribe", topics, websocket)

    @property
    def tickers(self) -> bool:
        return self.market_sink is not None

    async def _listed(self) -> list[str]:
        assert self._http is not None
        symbols: list[str] = []
        cursor = ""
        for _ in range(MAX_INSTRUMENT_PAGES):
            path = INSTRUMENTS_PATH + (f"&cursor={cursor}" if cursor else "")
            try:
                response = await self._http.get(f"{self.rest_url}{path}")
            except httpx.HTTPError as error:
                raise UpstreamError(f"Bybit instruments: {type(error).__name__}: {error}") from None
            if response.status_code != 200:
                raise UpstreamError(f"Bybit instruments: HTTP {response.status_code}")
            self._rest_received(int(time.time() * 1000), path, response.content)
            page, cursor = listed_perpetuals(response.content)
            symbols.extend(page)
            if not cursor:
                break
        return sorted(set(symbols))

    def _on_frame(self, frame: bytes, received_ms: int) -> None:
        self._frame_received(received_ms, frame)
        failed = failed_request(frame)
        if failed is not None:
            self._request_failed(failed.req_id or "", failed.ret_msg or "")
        elif frame.startswith(b'{"success"'):
            self._requests.pop(reply_id(frame), None)
        decoded = self.decoder.decode(frame)
        deliver(self.status, decoded, self.symbols, self.sink)
        deliver_market(self.status, decoded, self.symbols, self.market_sink)

    def _request_failed(self, req_id: str, message: str) -> None:
        topics = self._requests.pop(req_id, [])
        if len(topics) == 1:
            symbol = topic_symbol(topics[0])
            self.status.unlisted = sorted({*self.status.unlisted, symbol})
            log.warning("bybit: %s refused (%s); tracked on the other exchanges", symbol, message)
            return
        self.status.last_error = f"request failed: {message}"
        if topics:  # find which topic Bybit refused: one request each
            self._retry = asyncio.ensure_future(self._send("subscribe", topics, batch=1))

    async def add_symbols(self, symbols: set[str]) -> None:
        if self.symbols is None:
            return
        new = {s.upper() for s in symbols} - self.symbols
        self.symbols |= new
        fitting, _ = fitting_topics(sorted(self.symbols), self.tickers)
        wanted = set(symbol_topics(sorted(new), self.tickers))
        if len(wanted & set(fitting)) < len(wanted):
            self.status.count_anomaly("over_subscription_limit", "added symbols do not fit")
        await self._send("subscribe", sorted(wanted & set(fitting)))

    async def remove_symbols(self, symbols: set[str]) -> None:
        if self.symbols is None:
            return
        gone = {s.upper() for s in symbols} & self.symbols
        self.symbols -= gone
        await self._send("unsubscribe", symbol_topics(sorted(gone), self.tickers))

    async def _send(
        self,
        op: str,
        topics: list[str],
        websocket: ClientConnection | None = None,
        batch: int = MAX_ARGS_PER_REQUEST,
    ) -> None:
        websocket = websocket or self.connection.websocket
        if websocket is None:
            return  # the next connection subscribes to the whole set
        for start in range(0, len(topics), batch):
            req_id = str(next(self._request_ids))
            args = topics[start : start + batch]
            if op == "subscribe":
                self._requests[req_id] = args
            body = {"op": op, "req_id": req_id, "args": args}
            try:
                await websocket.send(_encoder.encode(body).decode())
            except ConnectionClosed:
                return
