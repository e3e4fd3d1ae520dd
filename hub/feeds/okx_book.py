"""OKX order books and trades over the V5 public WebSocket (`books`, `trades`).

One connection carries every tracked instrument (`BTCUSDT` -> `BTC-USDT-SWAP`). Decisions:
- Keep-alive is OKX's: the text `ping` every 25 s (OKX closes a connection idle for 30 s),
  answered by the text `pong`; the shared connection reconnects with backoff.
- A book that breaks (seqId gap, checksum mismatch) is dropped and resubscribed. If no
  WebSocket snapshot follows within `snapshot_wait` seconds (OKX announced it would stop
  sending one), the book is taken from REST `/api/v5/market/books` instead, and updates
  held meanwhile are replayed onto it (`hub.analytics.order_book`).
- Contract values (`ctVal`, base units per contract) are injected; `fetch_contract_values`
  reads them from `/api/v5/public/instruments` when none are given.
- The same `take_frame` serves the live socket and replay files, where a break simply
  waits for the file's next snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hub.analytics.order_book import OrderBook, Outcome
from hub.errors import UpstreamError
from hub.feeds.backoff import Backoff
from hub.feeds.base import FeedStatus
from hub.feeds.connection import KeepAlive, PersistentConnection, Timing
from hub.feeds.http import get
from hub.feeds.okx_book_wire import (
    BOOKS,
    TRADES,
    Anomaly,
    BookData,
    BookFrame,
    EventFrame,
    Trade,
    TradesFrame,
    parse_frame,
    parse_rest_books,
    subscribe_request,
    symbol_of,
)
from hub.feeds.okx_instruments import instruments_path, parse_contract_values
from hub.feeds.okx_wire import PING, is_pong, swap_inst_id
from hub.tasks import cancel_and_wait

log = logging.getLogger("hub.feeds")
OKX_TIMING = Timing(ping_interval=25.0, watchdog_timeout=60.0)
BOOKS_PATH = "/api/v5/market/books"
_encoder = msgspec.json.Encoder()

BookListener = Callable[[str, OrderBook, Outcome], None]  # (symbol, book, outcome)
TradeListener = Callable[[str, Trade], None]


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
        symbols: set[str],
        on_book: BookListener,
        on_trade: TradeListener,
        contract_values: Mapping[str, float] | None = None,
        timing: Timing | None = None,
        backoff: Backoff | None = None,
        snapshot_wait: float = 3.0,
    ) -> None:
        self.ws_url = ws_url
        self.rest_url = rest_url
        self.on_book = on_book
        self.on_trade = on_trade
        self.contract_values: dict[str, float] = dict(contract_values or {})
        self.snapshot_wait = snapshot_wait
        self.status = BookFeedStatus(name="okx_book")
        self.books: dict[str, OrderBook] = {}
        self.unlisted: set[str] = set()  # symbols OKX has no USDT/USDC swap for
        for symbol in symbols:
            self._add(symbol)
        self._tasks: set[asyncio.Task[None]] = set()
        self._rest_pending: set[str] = set()
        self.connection = PersistentConnection(
            self.status,
            lambda: self.ws_url,
            self._on_frame,
            self._on_open,
            timing or OKX_TIMING,
            backoff,
            KeepAlive(PING, is_pong),
        )

    def _add(self, symbol: str) -> None:
        inst_id = swap_inst_id(symbol)
        if inst_id is None:
            self.unlisted.add(symbol)
        else:
            self.books.setdefault(inst_id, OrderBook(inst_id))

    # -- frames (live and replayed) -------------------------------------------------------

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
        elif isinstance(parsed, BookFrame):
            self._take_book(parsed)
        elif isinstance(parsed, TradesFrame):
            for trade in parsed.trades:
                if trade.instId in self.books:
                    self.status.events += 1
                    self.on_trade(symbol_of(trade.instId), trade)

    def _take_book(self, frame: BookFrame) -> None:
        book = self.books.get(frame.inst_id)
        if book is None:
            self.status.ignored += 1
            return
        was_synced = book.synced
        outcome = book.apply(frame.action, frame.data)
        self._after(book, outcome, was_synced)

    def _after(self, book: OrderBook, outcome: Outcome, was_synced: bool) -> None:
        if outcome.broken:
            self.status.resyncs += 1
            if outcome is Outcome.CHECKSUM:
                self.status.checksum_failures += 1
            else:
                self.status.sequence_gaps += 1
            self.status.last_error = f"{book.inst_id}: {outcome.value}; resynchronising"
            log.warning("okx_book: %s", self.status.last_error)
            self._resync(book.inst_id)
        self.status.books_synced = sum(b.synced for b in self.books.values())
        if outcome not in (Outcome.HELD, Outcome.SKIPPED) or was_synced != book.synced:
            self.on_book(symbol_of(book.inst_id), book, outcome)

    # -- the live connection --------------------------------------------------------------

    async def run(self) -> None:
        """Contract values first: a trade or book without its ctVal has no notional."""
        await self.load_contract_values()
        await self.connection.run()

    async def _on_open(self, websocket: ClientConnection) -> None:
        for book in self.books.values():
            book.drop()
        self.status.books_synced = 0
        await self._send(websocket, "subscribe", sorted(self.books), (BOOKS, TRADES))
        for inst_id in self.books:
            self._spawn(self._rest_if_no_snapshot(inst_id))

    def _on_frame(self, frame: bytes, received_ms: int) -> None:
        try:
            self.take_frame(frame)
        except Exception:  # a listener bug must not cost the connection
            log.exception("okx_book: failed on a frame")

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

    def _spawn(self, coroutine: object) -> None:
        task = asyncio.ensure_future(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _resync(self, inst_id: str) -> None:
        websocket = self.connection.websocket
        if websocket is None:
            return  # a replay: the file's next snapshot resynchronises
        self._spawn(self._resubscribe(websocket, inst_id))

    async def _resubscribe(self, websocket: ClientConnection, inst_id: str) -> None:
        await self._send(websocket, "unsubscribe", [inst_id], (BOOKS,))
        await self._send(websocket, "subscribe", [inst_id], (BOOKS,))
        await self._rest_if_no_snapshot(inst_id)

    async def _rest_if_no_snapshot(self, inst_id: str) -> None:
        await asyncio.sleep(self.snapshot_wait)
        book = self.books.get(inst_id)
        if book is None or book.synced or inst_id in self._rest_pending:
            return
        self._rest_pending.add(inst_id)
        try:
            data = await fetch_rest_book(self.rest_url, inst_id)
        except (OSError, ValueError) as error:
            self.status.last_error = f"{inst_id}: REST book failed: {error}"
            log.warning("okx_book: %s", self.status.last_error)
            self._resync(inst_id)  # try the socket again, then REST again
            return
        finally:
            self._rest_pending.discard(inst_id)
        if book.synced:
            return  # the WebSocket snapshot won the race
        self.status.rest_snapshots += 1
        self._after(book, book.load_rest(data), False)

    async def load_contract_values(self, backoff: Backoff | None = None) -> None:
        """Fetch ctVal until it succeeds (notional needs it); failures show on status."""
        backoff = backoff or Backoff(base=1.0, cap=60.0)
        while not self.contract_values:
            try:
                self.contract_values = await fetch_contract_values(self.rest_url)
            except (OSError, ValueError, UpstreamError) as error:
                self.status.last_error = f"contract values unavailable: {error}"
                log.warning("okx_book: %s", self.status.last_error)
                await asyncio.sleep(backoff.next_delay())

    async def add_symbols(self, symbols: set[str]) -> None:
        new = [i for s in sorted(symbols) if (i := swap_inst_id(s)) and i not in self.books]
        for symbol in symbols:
            self._add(symbol)
        await self._send(self.connection.websocket, "subscribe", new, (BOOKS, TRADES))
        for inst_id in new:
            self._spawn(self._rest_if_no_snapshot(inst_id))

    async def remove_symbols(self, symbols: set[str]) -> None:
        gone = [i for s in sorted(symbols) if (i := swap_inst_id(s)) and i in self.books]
        for inst_id in gone:
            del self.books[inst_id]
        self.unlisted -= symbols
        await self._send(self.connection.websocket, "unsubscribe", gone, (BOOKS, TRADES))

    async def stop(self) -> None:
        await cancel_and_wait(list(self._tasks))
