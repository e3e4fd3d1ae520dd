"""Liquidity in ingest: OKX books and trades through the analyzer onto `liquidity:{SYMBOL}`.

A symbol's analysis is published within a second of a book change and at most once a
second (wall-clock paced, so a fast replay does not flood the channel); the analysis
itself runs on the ingest clock, the replay's time in a replay. A book that breaks is
announced once with `synced: false` and its reason, so REST answers 503 and subscribers
know, instead of being served numbers from a book known to be wrong.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from hub.analytics.liquidity import Liquidity, LiquidityAnalyzer
from hub.analytics.order_book import OrderBook, Outcome
from hub.config import Settings
from hub.errors import UpstreamError
from hub.feeds.okx_book import BookOrTrades, OkxBookFeed
from hub.feeds.okx_book_wire import Trade
from hub.feeds.okx_instruments import is_instruments_path, parse_contract_values
from hub.feeds.okx_wire import swap_inst_id
from hub.feeds.replay import ReplayLine
from hub.models import ChannelMessage, Cluster
from hub.service.order_books import BookListener, OrderBooks, TradeListener
from hub.service.sources import Source

log = logging.getLogger("hub.liquidity")
PUBLISH_EVERY_S = 1.0
# An unchanged book is analysed again this often: flow windows slide with time, and a web
# process that started (or a Redis that restarted) since the last change gets the state.
REFRESH_S = 5.0
TICK_S = 0.1

Emit = Callable[[list[ChannelMessage]], None]


def liquidity_channel(symbol: str) -> str:
    return f"liquidity:{symbol}"


class LiquidityService:
    def __init__(
        self,
        make_books: Callable[[BookListener, TradeListener], OrderBooks],
        clock: Callable[[], int],
        emit: Emit,
        clusters: Callable[[str], Sequence[Cluster]],
        bin_width: Callable[[str], float | None],
        epoch: str,
        live: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.order_books = make_books(self.on_book, self.on_trade)
        self.monotonic = monotonic
        self.clock = clock
        self.emit = emit
        self.clusters = clusters
        self.bin_width = bin_width
        self.epoch = epoch
        self.live = live
        self.analyzers: dict[str, LiquidityAnalyzer] = {}
        self.latest: dict[str, Liquidity] = {}
        self._seq: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._lost: dict[str, str] = {}  # symbol -> why its book was dropped
        self._published_at: dict[str, float] = {}

    def _analyzer(self, symbol: str) -> LiquidityAnalyzer:
        analyzer = self.analyzers.get(symbol)
        if analyzer is None:
            analyzer = self.analyzers[symbol] = LiquidityAnalyzer(symbol)
        return analyzer

    # -- from the feed --------------------------------------------------------------------

    def on_book(self, symbol: str, book: OrderBook, outcome: Outcome) -> None:
        if outcome.broken:  # the walls stay: the next analysis keeps those still standing
            self._lost[symbol] = f"order book resynchronising after a {outcome.value} failure"
        self._dirty.add(symbol)

    def on_trade(self, symbol: str, trade: Trade) -> None:
        ct_val = self.order_books.contract_values.get(trade.instId)
        try:
            price, contracts = float(trade.px), float(trade.sz)
        except ValueError:
            self.order_books.status.count_anomaly("bad_trade", f"{trade.px!r} x {trade.sz!r}")
            return
        if ct_val is not None:
            # timed on arrival (the hub's clock), so replays and the demo line up with it
            self._analyzer(symbol).add_trade(self.clock(), trade.side, price, contracts, ct_val)
            self._dirty.add(symbol)  # the flow changed

    async def add_symbols(self, symbols: set[str]) -> None:
        await self.order_books.add_symbols(symbols)

    async def remove_symbols(self, symbols: set[str]) -> None:
        await self.order_books.remove_symbols(symbols)
        for symbol in symbols:
            self.latest.pop(symbol, None)
            self.analyzers.pop(symbol, None)
            self._dirty.discard(symbol)

    def take_line(self, line: ReplayLine) -> None:
        """An `okx` line of a replay file: a frame, or a polled REST response."""
        status = self.order_books.status
        status.connected = True
        status.frames += 1
        status.last_frame_at = self.clock()
        if line.rest is not None:
            self.take_rest(line.rest, bytes(line.raw))
        else:
            self.order_books.take_frame(bytes(line.raw))

    def take_rest(self, path: str, body: bytes) -> None:
        """A REST response recorded in a replay file (instruments: the contract values)."""
        if is_instruments_path(path):
            try:
                self.order_books.contract_values.update(parse_contract_values(body))
            except UpstreamError as error:
                self.order_books.status.count_anomaly("bad_instruments", str(error))

    # -- out ------------------------------------------------------------------------------

    def publish_due(self) -> None:
        """Analyse and emit every changed symbol whose last message is a second old."""
        now_s = self.monotonic()
        messages: list[ChannelMessage] = []
        for symbol in sorted(self._dirty | self.latest.keys()):
            age = now_s - self._published_at.get(symbol, -REFRESH_S)
            if age < PUBLISH_EVERY_S or (symbol not in self._dirty and age < REFRESH_S):
                continue
            body = self.analyze(symbol)
            if body is None:
                continue
            self._dirty.discard(symbol)
            self._published_at[symbol] = now_s
            self.latest[symbol] = body
            channel = liquidity_channel(symbol)
            seq = self._seq[channel] = self._seq.get(channel, 0) + 1
            messages.append(ChannelMessage(channel, "liquidity", seq, self.epoch, body))
        if messages:
            self.emit(messages)

    def analyze(self, symbol: str) -> Liquidity | None:
        """The symbol's analysis, a `synced: false` notice once after a break, or None."""
        inst_id = swap_inst_id(symbol)
        book = self.order_books.books.get(inst_id) if inst_id else None
        now = self.clock()
        if book is None:
            return None
        if not book.synced:
            reason = self._lost.pop(symbol, None)
            if reason is None:
                return None
            return Liquidity(symbol, "okx", now, False, error=reason)
        self._lost.pop(symbol, None)
        ct_val = self.order_books.contract_values.get(book.inst_id)
        if ct_val is None:
            return None  # status names the missing contract values
        return self._analyzer(symbol).analyze(
            book.bids.sorted(),
            book.asks.sorted(),
            ct_val,
            now,
            self.bin_width(symbol),
            self.clusters(symbol),
        )

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._publish_loop())]
        if self.live:
            tasks.append(asyncio.create_task(self.order_books.run()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.order_books.stop()

    async def _publish_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.publish_due()
            except Exception:  # an analysis bug must not stop the channel for good
                log.exception("liquidity: analysis failed")

    def status(self, now: int) -> dict[str, Any]:
        status = self.order_books.status
        last = status.last_frame_at
        return {
            **msgspec.structs.asdict(status),
            "messages": status.frames,
            "last_message_age_ms": None if last is None else max(0, now - last),
            "contract_values": len(self.order_books.contract_values),
            "unlisted": sorted(self.order_books.unlisted),
        }


def build_liquidity(
    settings: Settings,
    source: Source,
    clock: Callable[[], int],
    emit: Emit,
    clusters: Callable[[str], Sequence[Cluster]],
    bin_width: Callable[[str], float | None],
    epoch: str,
) -> LiquidityService | None:
    """The OKX order-book service (live, or fed by a replay's `okx` lines), or None when
    HEATMAP_LIQUIDITY is off. With HEATMAP_SYMBOLS `*` books follow the symbols seen."""
    if settings.liquidity == "off":
        return None
    symbols = set(settings.named_symbols)
    live = source.replay is None and not source.demo

    def make_feed(
        on_frame: Callable[[BookOrTrades], None], on_open: Callable[[], None]
    ) -> OkxBookFeed:
        return OkxBookFeed(
            settings.okx_ws_url,
            settings.okx_rest_url,
            on_frame,
            on_open,
            timing=source.timing,
            backoff=source.backoff,
        )

    def make_books(on_book: BookListener, on_trade: TradeListener) -> OrderBooks:
        return OrderBooks(make_feed, symbols, on_book, on_trade)

    return LiquidityService(make_books, clock, emit, clusters, bin_width, epoch, live=live)
