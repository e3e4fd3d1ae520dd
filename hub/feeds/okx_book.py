"""OKX order books and trades over the V5 public WebSocket (`books`, `trades`): the
connection, its subscriptions and the REST calls, and nothing kept from them.

One connection carries every subscribed instrument (`BTCUSDT` -> `BTC-USDT-SWAP`).
Decisions:
- Keep-alive is OKX's: the text `ping` every 25 s (OKX closes a connection idle for 30 s),
  answered by the text `pong`; the shared connection reconnects with backoff.
- Each frame is decoded (`okx_book_wire`) and handed to `on_frame`, the live socket's and a
  replay file's alike (`take_frame`); the books themselves, and when to resynchronise one,
  are the caller's (`hub.service.order_books`). A reconnect is announced (`on_open`)
  before the subscriptions are sent again, so the caller can drop what it held.
- REST answers on request: a book (`/api/v5/market/books`, OKX announced it would stop
  sending a WebSocket snapshot) and the contract values (`/api/v5/public/instruments`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hub.feeds.backoff import Backoff
from hub.feeds.base import FeedStatus
from hub.feeds.connection import KeepAlive, PersistentConnection, Timing
from hub.feeds.http import get
from hub.feeds.okx_book_wire import (
    BOOKS,
    TRADES,
    Anomaly,
    BookFrame,
    EventFrame,
    TradesFrame,
    parse_frame,
    parse_rest_books,
    subscribe_request,
)
from hub.feeds.okx_instruments import instruments_path, parse_contract_values
from hub.feeds.okx_wire import PING, is_pong
from hub.market.book import BookData

log = logging.getLogger("hub.feeds")
OKX_TIMING = Timing(ping_interval=25.0, watchdog_timeout=60.0)
BOOKS_PATH = "/api/v5/market/books"
_encoder = msgspec.json.Encoder()

BookOrTrades = BookFrame | TradesFrame


class BookFeedStatus(FeedStatus):
    books_synced: int = 0
    resyncs: int = 0
    checksum_failures: int = 0
    sequence_gaps: int = 0
    rest_snapshots: int = 0


async def fetch_contract_values(rest_url: str) -> dict[str, float]:
    return parse_contract_values(await get(f"{rest_url}{instruments_path()}"))


async def fetch_rest_book(rest_url: str, inst_id: str) -> BookData:
    return parse_rest_books(await get(f"{rest_url}{BOOKS_PATH}?instId={inst_id}&sz=400"))


class OkxBookFeed:
    def __init__(
        self,
        ws_url: str,
        rest_url: str,
        on_frame: Callable[[BookOrTrades], None],
        on_open: Callable[[], None] = lambda: None,
        timing: Timing | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.ws_url = ws_url
        self.rest_url = rest_url
        self.on_frame = on_frame
        self.on_open = on_open
        self.status = BookFeedStatus(name="okx_book")
        self.inst_ids: set[str] = set()  # subscribed to books and trades
        self.connection = PersistentConnection(
            self.status,
            lambda: self.ws_url,
            self._on_frame,
            self._on_open,
            timing or OKX_TIMING,
            backoff,
            KeepAlive(PING, is_pong),
        )

    @property
    def live(self) -> bool:
        """Whether a socket is open (a replay's frames come through `take_frame` only)."""
        return self.connection.websocket is not None

    async def run(self) -> None:
        await self.connection.run()

    def take_frame(self, frame: bytes) -> None:
        parsed = parse_frame(frame)
        if parsed is None:
            return
        if isinstance(parsed, Anomaly):
            self.status.malformed += parsed.kind == "malformed"
            self.status.count_anomaly(parsed.kind, parsed.detail)
        elif isinstance(parsed, EventFrame):
            if parsed.event == "error":
                self.status.last_error = f"OKX error {parsed.code}: {parsed.msg}"
                self.status.count_anomaly("error_reply", self.status.last_error)
        else:
            self.on_frame(parsed)

    def _on_frame(self, frame: bytes, received_ms: int) -> None:
        try:
            self.take_frame(frame)
        except Exception:  # a listener bug must not cost the connection
            log.exception("okx_book: failed on a frame")

    async def _on_open(self, websocket: ClientConnection) -> None:
        self.on_open()
        await self._send(websocket, "subscribe", sorted(self.inst_ids), (BOOKS, TRADES))

    async def subscribe(self, inst_ids: set[str]) -> None:
        new = sorted(inst_ids - self.inst_ids)
        self.inst_ids |= inst_ids
        await self._send(self.connection.websocket, "subscribe", new, (BOOKS, TRADES))

    async def unsubscribe(self, inst_ids: set[str]) -> None:
        gone = sorted(inst_ids & self.inst_ids)
        self.inst_ids -= inst_ids
        await self._send(self.connection.websocket, "unsubscribe", gone, (BOOKS, TRADES))

    async def resubscribe_book(self, inst_id: str) -> None:
        """A fresh `books` subscription, whose first push is a snapshot (while OKX sends
        one): how a broken book is made whole again."""
        websocket = self.connection.websocket
        await self._send(websocket, "unsubscribe", [inst_id], (BOOKS,))
        await self._send(websocket, "subscribe", [inst_id], (BOOKS,))

    async def rest_book(self, inst_id: str) -> BookData:
        """`OSError` or `ValueError` when OKX does not answer with a book."""
        return await fetch_rest_book(self.rest_url, inst_id)

    async def contract_values(self) -> dict[str, float]:
        return await fetch_contract_values(self.rest_url)

    async def _send(
        self,
        websocket: ClientConnection | None,
        op: str,
        inst_ids: list[str],
        channels: tuple[str, ...],
    ) -> None:
        if websocket is None or not inst_ids:
            return
        try:
            request = subscribe_request(op, inst_ids, channels)
            await websocket.send(_encoder.encode(request).decode())
        except ConnectionClosed:
            return  # the next connection subscribes again
