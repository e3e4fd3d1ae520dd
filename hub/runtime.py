"""Assembly of one hub process: feeds -> processor -> broker -> fan-out, and its loops.

This is the only place that reads the clock and owns tasks. The processor is fed
synchronously from the feed (an event costs microseconds); its messages are published in
order by one publisher loop, which also flushes diffs every HEATMAP_FLUSH_MS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from hub.analytics.processor import LiquidationProcessor, ProcessorConfig
from hub.config import Settings
from hub.fanout.broker import Broker, topic_for
from hub.fanout.broker_memory import MemoryBroker
from hub.fanout.codec import encode_message
from hub.fanout.fanout import Fanout
from hub.feeds.backoff import Backoff
from hub.feeds.base import Feed
from hub.feeds.binance import BinanceFeed
from hub.feeds.connection import Timing
from hub.feeds.replay import ReplayFeed, read_replay
from hub.models import ChannelMessage, LiquidationEvent

log = logging.getLogger("hub")
DEMO_REPLAY = Path(__file__).parent / "data" / "demo_session.jsonl"


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Hub:
    """One process's worth of the pipeline (the `serve` shape)."""

    def __init__(
        self,
        settings: Settings,
        replay: Path | None = None,
        speed: float = 1.0,
        demo: bool = False,
        broker: Broker | None = None,
        timing: Timing | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.started_at = time.time()
        self.broker = broker or MemoryBroker()
        tracked = None if settings.track_all_symbols else set(settings.symbols)
        self.feed: Feed
        self.clock: Callable[[], int]
        if replay is not None or demo:
            lines = read_replay(replay or DEMO_REPLAY)
            self.feed = ReplayFeed(
                lines, self.on_event, speed=speed, loop=demo, shift_to_now=demo, symbols=tracked
            )
            self.clock = self.feed.clock
        else:
            self.feed = BinanceFeed(
                settings.binance_ws_url, tracked, self.on_event, timing=timing, backoff=backoff
            )
            self.clock = wall_clock_ms
        self.processor = LiquidationProcessor(
            ProcessorConfig(
                max_events=settings.max_events,
                retention_ms=settings.retention_ms,
                bandwidth_pct=settings.kde_bandwidth_pct,
                range_pct=settings.price_range_pct,
            ),
            epoch=f"{wall_clock_ms():x}",
        )
        self.fanout = Fanout(self.clock)
        self._outbox: list[ChannelMessage] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        for symbol in tracked or ():
            self.processor.track(symbol)
            self._outbox.extend(self.processor.snapshots_of(symbol, self.clock()))

    # -- the pipeline -----------------------------------------------------------------

    def on_event(self, event: LiquidationEvent) -> None:
        now = self.clock()
        if event.symbol not in self.processor.books:
            if not self.settings.track_all_symbols:
                return
            self.processor.track(event.symbol)
            self._outbox.extend(self.processor.snapshots_of(event.symbol, now))
        self._outbox.extend(self.processor.apply(event, now))
        self._wake.set()

    async def add_symbols(self, symbols: set[str]) -> None:
        now = self.clock()
        for symbol in sorted(symbols - self.processor.books.keys()):
            self.processor.track(symbol)
            self._outbox.extend(self.processor.snapshots_of(symbol, now))
        await self.feed.add_symbols(symbols)
        self._wake.set()

    async def remove_symbols(self, symbols: set[str]) -> None:
        await self.feed.remove_symbols(symbols)
        for symbol in symbols:
            self.processor.untrack(symbol)
            self.fanout.symbols.discard(symbol)

    async def _publish_loop(self) -> None:
        flush_every = self.settings.flush_ms / 1000
        next_flush = time.monotonic()
        while True:
            timeout = max(0.0, next_flush - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if time.monotonic() >= next_flush:
                self._outbox.extend(self.processor.flush(self.clock()))
                next_flush = time.monotonic() + flush_every
            await self._publish_pending()

    async def _publish_pending(self) -> None:
        outbox, self._outbox = self._outbox, []
        for message in outbox:
            await self.broker.publish(topic_for(message.ch), encode_message(message))

    async def _relay_loop(self) -> None:
        async for _topic, payload in self.broker.messages():
            try:
                self.fanout.publish(payload)
            except Exception:  # one bad message must not stop the fan-out
                log.exception("fan-out failed on a message")

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cleanup_interval_ms / 1000)
            self.processor.sweep(self.clock())

    async def _feed_loop(self) -> None:
        try:
            await self.feed.run()
        except Exception:
            log.exception("feed %s stopped", self.feed.status.name)
            raise

    async def start(self) -> None:
        await self._publish_pending()
        for loop in (self._relay_loop, self._publish_loop, self._sweep_loop, self._feed_loop):
            self._tasks.append(asyncio.create_task(loop(), name=loop.__name__))

    async def flush_now(self) -> None:
        """Flush and publish immediately (tests and shutdown)."""
        self._outbox.extend(self.processor.flush(self.clock()))
        await self._publish_pending()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.broker.close()
