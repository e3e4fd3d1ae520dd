"""What every exchange's liquidation feed shares, so that an exchange is a decoder plus
its rules: one `PersistentConnection` (reconnect with backoff and jitter, the exchange's
keep-alive, the watchdog), the subscriptions sent on each connect and as symbols come
and go, an HTTP client for its REST calls, the instruments list fetched before the
first subscription and refreshed daily, and the feed's `FeedStatus`.

A subclass names itself (`name`, `note`), gives its decoder (`new_decoder`, pure: bytes
in, `Decoded` out, the same one replays use), its keep-alive and timing, and says what to
send (`subscriptions` on a fresh connection, `follow` when symbols change at run time).
Decisions:
- An exchange with an instruments list (`instruments_path`) is not subscribed before the
  list came: sizes it converts with it would otherwise be guessed. The list goes to the
  decoder (`take_rest`, as a replay gives it), every REST body to the REST listeners (so
  `record` keeps it), and a failed refresh keeps the list held.
- Channels that carry every symbol are filtered here, to the tracked set (`deliver`);
  status names tracked symbols the exchange does not list (`is_listed`), once it is known.
- An error reply (`error_reply` anomaly) is also the status's `last_error`.
"""

from __future__ import annotations

import abc
import asyncio
import gzip
import logging
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hub.errors import UpstreamError, clip
from hub.feeds.backoff import Backoff
from hub.feeds.base import (
    Decoded,
    Decoder,
    EventSink,
    Feed,
    FeedStatus,
    MarketSink,
    deliver,
    deliver_market,
)
from hub.feeds.connection import KeepAlive, PersistentConnection, Timing
from hub.tasks import run_together

log = logging.getLogger("hub.feeds")
T = TypeVar("T")
REFRESH_MS = 86_400_000  # instruments change rarely, and exchanges announce it in advance
HTTP_TIMEOUT_S = 10.0


def now_ms() -> int:
    return int(time.time() * 1000)


class ExchangeFeed(Feed):
    name: ClassVar[str]
    note: ClassVar[str] = ""
    timing: ClassVar[Timing] = Timing()
    keep_alive: ClassVar[KeepAlive | None] = None
    gzip: ClassVar[bool] = False  # every frame is GZIP-compressed (HTX)
    headers: ClassVar[Mapping[str, str]] = {}  # sent with the WebSocket handshake
    instruments_path: ClassVar[str | None] = None  # REST path of the instruments list

    def __init__(
        self,
        ws_url: str,
        rest_url: str,
        symbols: set[str] | None,
        sink: EventSink,
        timing: Timing | None = None,
        backoff: Backoff | None = None,
        market_sink: MarketSink | None = None,
        refresh_ms: int = REFRESH_MS,
    ) -> None:
        """`symbols` None follows every symbol; `market_sink` None leaves the exchange's
        open interest unsubscribed."""
        self.ws_url = ws_url
        self.rest_url = rest_url.rstrip("/")
        self.symbols = None if symbols is None else {s.upper() for s in symbols}
        self.sink = sink
        self.market_sink = market_sink
        self.refresh_ms = refresh_ms
        self.decoder = self.new_decoder()
        self.status = FeedStatus(name=self.name, note=self.note)
        self.instruments_fetched_at: int | None = None
        self._http: httpx.AsyncClient | None = None
        self.connection = PersistentConnection(
            self.status,
            self.connect_url,
            self._on_frame,
            self._on_open,
            timing or self.timing,
            backoff,
            self.keep_alive,
            inflate=gzip.decompress if self.gzip else None,
            headers=self.headers,
        )

    # -- for subclasses -------------------------------------------------------------------

    @abc.abstractmethod
    def new_decoder(self) -> Decoder: ...

    @abc.abstractmethod
    def subscriptions(self) -> list[str]:
        """The requests that subscribe everything wanted, on a fresh connection."""

    def follow(self, added: set[str], removed: set[str]) -> list[str]:
        """The requests that follow symbols added and removed at run time: by default only
        their open interest, the liquidation channels carrying every symbol (events are
        filtered here)."""
        subscribe = self.open_interest_requests("subscribe", added)
        return subscribe + self.open_interest_requests("unsubscribe", removed)

    def open_interest_requests(self, op: str, symbols: set[str]) -> list[str]:
        """`op` ("subscribe", "unsubscribe") requests for the open interest of `symbols`;
        none without a market sink."""
        if self.market_sink is None or not symbols:
            return []
        return self.market_requests(op, symbols)

    def market_requests(self, op: str, symbols: set[str]) -> list[str]:
        """The exchange's requests for the open interest of `symbols` on this connection
        (none by default: the exchange publishes it elsewhere, or not)."""
        return []

    def is_listed(self, symbol: str) -> bool:
        """Whether the exchange lists `symbol`, from its instruments list."""
        return True

    def connect_url(self) -> str:
        return self.ws_url

    def decode(self, frame: bytes, received_ms: int) -> Decoded:
        return self.decoder.decode(frame)

    def background(self) -> list[Coroutine[Any, Any, None]]:
        """Loops run beside the connection (the instruments refresh; an exchange's polls)."""
        return [self._refresh_loop()] if self.instruments_path is not None else []

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
            self._http = client
            await run_together(self.connection.run(), *self.background())

    async def prepare(self) -> None:
        """What a fresh connection needs before it subscribes: the instruments list, until
        one came (an `UpstreamError` reconnects with backoff)."""
        if self.instruments_path is not None and self.instruments_fetched_at is None:
            await self.load_instruments()

    async def _on_open(self, websocket: ClientConnection) -> None:
        await self.prepare()
        self._note_unlisted()
        await self.send(self.subscriptions(), websocket)

    def _on_frame(self, frame: bytes, received_ms: int) -> None:
        self._frame_received(received_ms, frame)
        decoded = self.decode(frame, received_ms)
        for kind, detail in decoded.anomalies:
            if kind == "error_reply":
                self.status.last_error = detail
        deliver(self.status, decoded, self.symbols, self.sink)
        deliver_market(self.status, decoded, self.symbols, self.market_sink)

    async def send(self, requests: list[str], websocket: ClientConnection | None = None) -> None:
        websocket = websocket or self.connection.websocket
        if websocket is None:
            return  # the next connection subscribes to the whole set
        for request in requests:
            try:
                await websocket.send(request)
            except ConnectionClosed:
                return

    # -- REST -------------------------------------------------------------------------------

    async def get(self, path: str) -> bytes:
        """The body of a 200 answer to `GET {rest_url}{path}`, also handed to the REST
        listeners; `UpstreamError` otherwise."""
        assert self._http is not None, "get() runs inside run()"
        try:
            response = await self._http.get(f"{self.rest_url}{path}")
        except httpx.HTTPError as error:
            raise UpstreamError(f"{self.name} {path}: {type(error).__name__}: {error}") from None
        if response.status_code != 200:
            raise UpstreamError(f"{self.name} {path}: HTTP {response.status_code}")
        self._rest_received(now_ms(), path, response.content)
        return response.content

    async def load_instruments(self) -> None:
        assert self.instruments_path is not None
        body = await self.get(self.instruments_path)
        self.decoder.take_rest(self.instruments_path, body)  # UpstreamError for a bad list
        self.instruments_fetched_at = now_ms()
        self._note_unlisted()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_ms / 1000)
            try:
                await self.load_instruments()
            except UpstreamError as error:
                self.status.last_error = clip(str(error), 200)
                log.warning("%s: instruments refresh failed, keeping them: %s", self.name, error)

    def _note_unlisted(self) -> None:
        if self.symbols is None or (
            self.instruments_path is not None and self.instruments_fetched_at is None
        ):
            self.status.unlisted = []  # not knowing is not "not listed"
            return
        self.status.unlisted = sorted(s for s in self.symbols if not self.is_listed(s))

    # -- symbols at run time ------------------------------------------------------------------

    async def add_symbols(self, symbols: set[str]) -> None:
        if self.symbols is None:
            return
        added = {s.upper() for s in symbols} - self.symbols
        self.symbols |= added
        self._note_unlisted()
        await self.send(self.follow(added, set()))

    async def remove_symbols(self, symbols: set[str]) -> None:
        if self.symbols is None:
            return
        removed = {s.upper() for s in symbols} & self.symbols
        self.symbols -= removed
        self._note_unlisted()
        await self.send(self.follow(set(), removed))


def in_batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """`items` in runs of at most `size`, for exchanges that bound a request's arguments."""
    return [items[start : start + size] for start in range(0, len(items), size)]
