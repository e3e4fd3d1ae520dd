"""The OKX order books kept from the book feed's frames: which instruments are followed,
when a book is resynchronised, and where a lost snapshot comes from.

The feed (`hub.feeds.okx_book`) only connects and decodes; the books (`OrderBook`, pure)
are applied here, and the wiring between them decided:
- A book that breaks (seqId gap, checksum mismatch) is dropped and its `books`
  subscription renewed. If no WebSocket snapshot follows within `snapshot_wait` seconds
  (OKX announced it would stop sending one), the book is taken from REST instead, and the
  updates held meanwhile are replayed onto it. In a replay (no socket) a break simply
  waits for the file's next snapshot.
- Contract values (`ctVal`, base units per contract) are injected, or fetched before the
  first connection, retried with backoff until they come: a trade or book without its
  ctVal has no notional.
- A reconnect drops every book: the new subscriptions start each with a snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from hub.analytics.order_book import OrderBook, Outcome
from hub.errors import UpstreamError
from hub.feeds.backoff import Backoff
from hub.feeds.okx_book import BookFeedStatus, BookOrTrades, OkxBookFeed
from hub.feeds.okx_book_wire import BookFrame, Trade, symbol_of
from hub.feeds.okx_wire import swap_inst_id
from hub.tasks import cancel_and_wait

log = logging.getLogger("hub.liquidity")

BookListener = Callable[[str, OrderBook, Outcome], None]  # (symbol, book, outcome)
TradeListener = Callable[[str, Trade], None]
FeedFactory = Callable[[Callable[[BookOrTrades], None], Callable[[], None]], OkxBookFeed]


class OrderBooks:
    def __init__(
        self,
        make_feed: FeedFactory,
        symbols: set[str],
        on_book: BookListener,
        on_trade: TradeListener,
        contract_values: Mapping[str, float] | None = None,
        snapshot_wait: float = 3.0,
    ) -> None:
        """`make_feed(on_frame, on_open)`: the feed whose frames these books follow."""
        self.feed = make_feed(self.take, self._connected)
        self.on_book = on_book
        self.on_trade = on_trade
        self.contract_values: dict[str, float] = dict(contract_values or {})
        self.snapshot_wait = snapshot_wait
        self.books: dict[str, OrderBook] = {}
        self.unlisted: set[str] = set()  # symbols OKX has no USDT/USDC swap for
        for symbol in symbols:
            self._add(symbol)
        self.feed.inst_ids = set(self.books)
        self._tasks: set[asyncio.Task[None]] = set()
        self._rest_pending: set[str] = set()

    @property
    def status(self) -> BookFeedStatus:
        return self.feed.status

    def _add(self, symbol: str) -> None:
        inst_id = swap_inst_id(symbol)
        if inst_id is None:
            self.unlisted.add(symbol)
        else:
            self.books.setdefault(inst_id, OrderBook(inst_id))

    # -- frames (live and replayed) -------------------------------------------------------

    def take_frame(self, frame: bytes) -> None:
        """A frame of a replay file; the live ones arrive through the feed."""
        self.feed.take_frame(frame)

    def take(self, parsed: BookOrTrades) -> None:
        if isinstance(parsed, BookFrame):
            self._take_book(parsed)
            return
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
        status = self.status
        if outcome.broken:
            status.resyncs += 1
            if outcome is Outcome.CHECKSUM:
                status.checksum_failures += 1
            else:
                status.sequence_gaps += 1
            status.last_error = f"{book.inst_id}: {outcome.value}; resynchronising"
            log.warning("okx_book: %s", status.last_error)
            self._resync(book.inst_id)
        status.books_synced = sum(b.synced for b in self.books.values())
        if outcome not in (Outcome.HELD, Outcome.SKIPPED) or was_synced != book.synced:
            self.on_book(symbol_of(book.inst_id), book, outcome)

    # -- resynchronising --------------------------------------------------------------------

    def _connected(self) -> None:
        for book in self.books.values():
            book.drop()
        self.status.books_synced = 0
        for inst_id in self.books:
            self._spawn(self._rest_if_no_snapshot(inst_id))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _resync(self, inst_id: str) -> None:
        if not self.feed.live:
            return  # a replay: the file's next snapshot resynchronises
        self._spawn(self._resubscribe(inst_id))

    async def _resubscribe(self, inst_id: str) -> None:
        await self.feed.resubscribe_book(inst_id)
        await self._rest_if_no_snapshot(inst_id)

    async def _rest_if_no_snapshot(self, inst_id: str) -> None:
        await asyncio.sleep(self.snapshot_wait)
        book = self.books.get(inst_id)
        if book is None or book.synced or inst_id in self._rest_pending:
            return
        self._rest_pending.add(inst_id)
        try:
            data = await self.feed.rest_book(inst_id)
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

    # -- the live connection ----------------------------------------------------------------

    async def run(self) -> None:
        """Contract values first: a trade or book without its ctVal has no notional."""
        await self.load_contract_values()
        await self.feed.run()

    async def load_contract_values(self, backoff: Backoff | None = None) -> None:
        """Fetch ctVal until it succeeds (notional needs it); failures show on status."""
        backoff = backoff or Backoff(base=1.0, cap=60.0)
        while not self.contract_values:
            try:
                self.contract_values = await self.feed.contract_values()
            except (OSError, ValueError, UpstreamError) as error:
                self.status.last_error = f"contract values unavailable: {error}"
                log.warning("okx_book: %s", self.status.last_error)
                await asyncio.sleep(backoff.next_delay())

    async def add_symbols(self, symbols: set[str]) -> None:
        new = {i for s in symbols if (i := swap_inst_id(s)) and i not in self.books}
        for symbol in symbols:
            self._add(symbol)
        await self.feed.subscribe(new)
        if self.feed.live:
            for inst_id in sorted(new):
                self._spawn(self._rest_if_no_snapshot(inst_id))

    async def remove_symbols(self, symbols: set[str]) -> None:
        gone = {i for s in symbols if (i := swap_inst_id(s)) and i in self.books}
        for inst_id in gone:
            del self.books[inst_id]
        self.unlisted -= symbols
        await self.feed.unsubscribe(gone)

    async def stop(self) -> None:
        await cancel_and_wait(list(self._tasks))
