"""Binance USD-M futures liquidation feed (`forceOrder` streams).

URL: `{BINANCE_WS_URL}/stream?streams=btcusdt@forceOrder/...` for listed symbols, or
`.../stream?streams=!forceOrder@arr` for `*` and for lists longer than one connection
may carry (200 streams, the safe bound); then events are filtered to the tracked set.
Symbols added or removed at run time are sent as `SUBSCRIBE`/`UNSUBSCRIBE` requests,
spaced to stay under Binance's 10 incoming messages per second, and are part of the URL
of every later reconnect.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hub.feeds.backoff import Backoff
from hub.feeds.base import EventSink, Feed, FeedStatus
from hub.feeds.binance_wire import ALL_MARKET_STREAM, parse_frame, stream_name
from hub.feeds.connection import PersistentConnection, Timing

MAX_STREAMS = 200
REQUEST_SPACING = 0.2  # seconds between control requests: 5/s, half Binance's limit

log = logging.getLogger("hub.feeds")
_request_encoder = msgspec.json.Encoder()


def market_route(base_url: str) -> str:
    """Binance's bare root accepts a forceOrder subscription and then sends nothing (since
    2026-04-23 the streams live under /market), so the bare root is moved there."""
    base_url = base_url.rstrip("/")
    parts = urlsplit(base_url)
    if parts.hostname and parts.hostname.endswith("binance.com") and parts.path == "":
        log.warning("binance: %s serves no forceOrder; using %s/market", base_url, base_url)
        return f"{base_url}/market"
    return base_url


class BinanceFeed(Feed):
    def __init__(
        self,
        base_url: str,
        symbols: set[str] | None,
        sink: EventSink,
        timing: Timing | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        """`symbols` None tracks every symbol on the all-market stream."""
        self.base_url = market_route(base_url)
        self.symbols = None if symbols is None else {s.upper() for s in symbols}
        self.sink = sink
        self.status = FeedStatus(
            name="binance",
            note="Binance pushes at most one liquidation per symbol per second: a sample",
        )
        self._request_ids = itertools.count(1)
        self._pending_replies: set[int] = set()
        self._control_lock = asyncio.Lock()
        self._url_streams: list[str] = []
        self.connection = PersistentConnection(
            self.status, self._connect_url, self._on_frame, self._on_open, timing, backoff
        )

    @property
    def all_market(self) -> bool:
        return self.symbols is None or len(self.symbols) > MAX_STREAMS

    def streams(self) -> list[str]:
        if self.all_market or not self.symbols:
            return [ALL_MARKET_STREAM]
        return [stream_name(symbol) for symbol in sorted(self.symbols)]

    def url(self) -> str:
        return f"{self.base_url}/stream?streams={'/'.join(self.streams())}"

    def _connect_url(self) -> str:
        self._url_streams = self.streams()
        return self.url()

    async def _on_open(self, websocket: ClientConnection) -> None:
        """Catch up with symbols changed while the connection was being opened."""
        if self.all_market:
            return
        wanted, asked = set(self.streams()), set(self._url_streams)
        await self._request("SUBSCRIBE", sorted(wanted - asked), websocket)
        await self._request("UNSUBSCRIBE", sorted(asked - wanted - {ALL_MARKET_STREAM}), websocket)

    async def run(self) -> None:
        await self.connection.run()

    def _on_frame(self, frame: bytes, received_ms: int) -> None:
        self._frame_received(received_ms, frame)
        parsed = parse_frame(frame)
        if parsed.reply_id is not None:
            self._pending_replies.discard(parsed.reply_id)
        if parsed.anomaly is not None:
            if parsed.anomaly == "malformed":
                self.status.malformed += 1
            self.status.count_anomaly(parsed.anomaly, parsed.detail)
            return
        event = parsed.event
        if event is None:
            return
        if self.symbols is not None and event.symbol not in self.symbols:
            self.status.ignored += 1
            return
        self.status.events += 1
        try:
            self.sink(event)
        except Exception:  # a processor bug must not cost the connection
            log.exception("binance: the event sink failed on %s", event)

    async def add_symbols(self, symbols: set[str]) -> None:
        if self.symbols is None:
            return
        was_all = self.all_market
        new = {s.upper() for s in symbols} - self.symbols
        self.symbols |= new
        if not was_all and not self.all_market:
            await self._request("SUBSCRIBE", [stream_name(s) for s in sorted(new)])
        elif not was_all:
            await self._reconnect()  # moved onto the all-market stream

    async def remove_symbols(self, symbols: set[str]) -> None:
        if self.symbols is None:
            return
        gone = {s.upper() for s in symbols} & self.symbols
        self.symbols -= gone
        if not self.all_market and gone:
            await self._request("UNSUBSCRIBE", [stream_name(s) for s in sorted(gone)])

    async def _request(
        self, method: str, params: list[str], websocket: ClientConnection | None = None
    ) -> None:
        websocket = websocket or self.connection.websocket
        if websocket is None or not params:
            return  # the next connection's URL carries the change
        async with self._control_lock:
            for start in range(0, len(params), MAX_STREAMS):
                request_id = next(self._request_ids)
                self._pending_replies.add(request_id)
                body = {
                    "method": method,
                    "params": params[start : start + MAX_STREAMS],
                    "id": request_id,
                }
                try:
                    await websocket.send(_request_encoder.encode(body).decode())
                except ConnectionClosed:
                    return
                await asyncio.sleep(REQUEST_SPACING)

    async def _reconnect(self) -> None:
        websocket: ClientConnection | None = self.connection.websocket
        if websocket is not None:
            await websocket.close(1000, "changing streams")
