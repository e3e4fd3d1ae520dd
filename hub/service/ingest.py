"""Ingest: the upstream feeds (one per configured exchange, or one replay) through the
processor onto the broker.

Open interest and mark prices go through the predicted-levels processor, whose
`predicted:{SYMBOL}` channels are flushed with the heatmaps'. Its levels are not
persisted: an ingest restart starts them afresh, in a new epoch. Mark prices also make
each symbol's candles (`MarkPrices`), which Redis keeps for web processes and a restart.

The processor is fed synchronously from every feed, so heatmaps, clusters, statistics
and alerts aggregate all exchanges; its messages leave in order through
one publisher loop, which also flushes diffs every HEATMAP_FLUSH_MS. With Redis, every
accepted event also goes to the durable event log, the tracked symbols are announced for
web processes, and snapshot requests from them are answered on the channels' topics.
A publish that fails (Redis down) is dropped and counted: the processor keeps the state,
and web processes resynchronise from fresh snapshots once Redis is back. Publishing,
announcing and the status key share one `Outage` (the event log has its own): while
Redis is down they try again with backoff, not on every flush, and the log says once
that Redis was lost and once that it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.alerting.service import Alerting
from hub.analytics.candles import MarkPrices
from hub.analytics.coverage import Coverage
from hub.analytics.predicted_stream import PredictedProcessor
from hub.analytics.processor import LiquidationProcessor, ProcessorConfig
from hub.analytics.rows import Named
from hub.channels import parse_channel
from hub.config import Settings
from hub.errors import BrokerUnavailable, ProtocolError
from hub.fanout.broker import RESYNC_TOPIC, Broker, topic_for
from hub.fanout.codec import encode_message
from hub.feeds.backoff import Backoff
from hub.feeds.base import Feed
from hub.models import (
    ChannelMessage,
    Cluster,
    LiquidationEvent,
    MarkPriceUpdate,
    OpenInterestUpdate,
)
from hub.service import control
from hub.service.coinglass import CoinGlassValidation, disabled_status
from hub.service.control import ControlRequest, SymbolsAnnouncement
from hub.service.health import source_entry, source_reasons
from hub.service.heartbeat import Beats
from hub.service.history import History, build_history, data_directory
from hub.service.liquidity import build_liquidity
from hub.service.sources import (
    Source,
    build_feeds,
    build_listings,
    build_open_interest,
    open_interest_entry,
    wall_clock_ms,
)
from hub.storage.candles import CandleWriter
from hub.storage.outage import Outage
from hub.tasks import cancel_and_wait

if TYPE_CHECKING:
    from hub.service.standby import Standby

log = logging.getLogger("hub.ingest")
LIQUIDITY_WINDOW = "1h"  # whose clusters support and resistance take in
# A publish (and the event log's write and the checkpoint with it) follows the previous by
# at least this: in a burst, the liquidations of a few ms go out together, not a round
# trip each (at 2,000/s, 1 ms cost a fifth of ingest's CPU and 5 ms a tenth; 15 ms saves
# another 4 points for about 6 ms more on a liquidation's median way to clients); a lone
# one goes out at once.
PUBLISH_GAP_S = 0.015
COINGLASS_HORIZON_MS = 25 * 3_600_000  # the hours CoinGlass is compared over, and one more
_encoder = msgspec.json.Encoder()


def processor_config(settings: Settings) -> ProcessorConfig:
    return ProcessorConfig(
        max_events=settings.max_events,
        retention_ms=settings.retention_ms,
        bandwidth_pct=settings.kde_bandwidth_pct,
        range_pct=settings.price_range_pct,
        alert_max_age_ms=settings.alert_max_age_ms,
        alerts=settings.alerts.thresholds,
        alerts_by_symbol=settings.alerts.by_symbol,
    )


class Ingest:
    def __init__(
        self,
        settings: Settings,
        source: Source,
        broker: Broker,
        redis: Redis | None = None,
        standby: Standby | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.redis = redis
        epoch = f"{wall_clock_ms():x}"
        self.liquidity = build_liquidity(
            settings,
            source,
            lambda: self.clock(),
            self._emit,
            self._clusters,
            self._bin_width,
            epoch,
        )
        line_sinks = {"okx": self.liquidity.take_line} if self.liquidity is not None else None
        self.feeds, self.clock = build_feeds(
            settings, source, self.on_event, line_sinks, self.on_market
        )
        self.open_interest = build_open_interest(settings, source, self.on_market)
        self.listings = build_listings(settings, source)
        timing = source.timing
        self._silent_after_ms = int(1000 * (timing.silent_after if timing else 60.0))
        # Arrival numbers from this process's start (in us): after any earlier one's.
        first_arrival = wall_clock_ms() * 1000
        # A warm standby taking over brings the processor it kept following the leader.
        self.standby = standby
        if standby is None:
            self.processor = LiquidationProcessor(
                processor_config(settings), epoch=epoch, first_arrival=first_arrival
            )
        else:
            self.processor = standby.follower.processor
            self.processor.epoch, self.processor.first_arrival = epoch, first_arrival
        live = source.replay is None and not source.demo
        self.coinglass = (
            CoinGlassValidation(
                settings.coinglass_url,
                settings.coinglass_api_key,
                lambda: list(self.processor.books),
                list(settings.exchanges),
                self._events_since_a_day,
                self.clock,
                started=self.clock(),
            )
            if settings.coinglass_api_key and live
            else None
        )
        self.marks = MarkPrices()  # tracked with the predicted streams
        self.predicted = PredictedProcessor(settings.predicted, self.processor.epoch, self.marks)
        self.redis_state = Outage("ingest", log)
        self.history: History | None = build_history(settings, source, redis, self._holdings)
        directory = data_directory(settings, source)
        self.alerting = Alerting(settings, directory, redis, wall_clock_ms())
        self.restored = False  # the history was read back (or there is none)
        self.unpublished = 0
        # Only web processes across Redis need telling that this one is alive.
        self.beats = Beats(settings.heartbeat_ms) if redis is not None else None
        self._publishing = asyncio.Lock()  # one flush's messages (and beat) at a time, in order
        self._covers_from = self.clock()  # what a newly tracked symbol's coverage starts at
        self._outbox: list[ChannelMessage] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._feed_tasks: list[asyncio.Task[None]] = []
        self._symbols_changed = True
        for symbol in settings.named_symbols:
            self.processor.track(symbol, self._covers_from)
            self.predicted.track(symbol, self.clock())

    def _holdings(self) -> dict[str, Named]:
        return {
            symbol: Named(book.store.rows(), book.store.exchanges)
            for symbol, book in self.processor.books.items()
        }

    # -- events in ----------------------------------------------------------------------

    def on_event(self, event: LiquidationEvent) -> None:
        now = self.clock()
        if event.symbol not in self.processor.books:
            if not self.settings.track_all_symbols:
                return
            # Listening to every symbol since the start: covered since then.
            self._track(event.symbol, now, self._covers_from)
        accepted, messages, arrival = self.processor.apply(event, now)
        if accepted is not None and self.history is not None:
            self.history.append(arrival, accepted)
        self._outbox.extend(messages)
        self._wake.set()

    def _emit(self, messages: list[ChannelMessage]) -> None:
        self._outbox.extend(messages)
        self._wake.set()

    def _clusters(self, symbol: str) -> list[Cluster]:
        """The 1-hour heatmap's clusters, which support and resistance take in."""
        book = self.processor.books.get(symbol)
        window = book.windows.get(LIQUIDITY_WINDOW) if book is not None else None
        return window.clusters() if window is not None else []

    def _events_since_a_day(self, symbol: str) -> list[LiquidationEvent]:
        if symbol not in self.processor.books:
            return []
        return list(self.processor.events(symbol, self.clock() - COINGLASS_HORIZON_MS))

    def _bin_width(self, symbol: str) -> float | None:
        book = self.processor.books.get(symbol)
        return book.grid.bin_width if book is not None and book.grid is not None else None

    def on_market(self, update: OpenInterestUpdate | MarkPriceUpdate) -> None:
        """Open interest or a mark price: the predicted levels move at the next flush."""
        if isinstance(update, OpenInterestUpdate):
            self.predicted.apply_open_interest(update)
        else:
            self.predicted.apply_price(update)
            self.marks.apply(update, self.clock())

    def _track(self, symbol: str, now: int, covered_since: int) -> None:
        self.processor.track(symbol, covered_since)
        self.predicted.track(symbol, now)
        self._outbox.extend(self.processor.snapshots_of(symbol, now))
        self._outbox.append(self.predicted.snapshot_message(symbol))
        self._symbols_changed = True
        if self.liquidity is not None:
            self._tasks.append(asyncio.create_task(self.liquidity.add_symbols({symbol})))
        if self.open_interest is not None and self.settings.track_all_symbols:
            self.open_interest.track(symbol)

    async def add_symbols(self, symbols: set[str]) -> None:
        now = self.clock()
        for symbol in sorted(symbols - self.processor.books.keys()):
            self._track(symbol, now, now)
        for feed in self.feeds:
            await feed.add_symbols(symbols)
        if self.liquidity is not None:
            await self.liquidity.add_symbols(symbols)
        if self.open_interest is not None:
            await self.open_interest.add_symbols(symbols)
        self._wake.set()

    async def remove_symbols(self, symbols: set[str]) -> None:
        for feed in self.feeds:
            await feed.remove_symbols(symbols)
        if self.liquidity is not None:
            await self.liquidity.remove_symbols(symbols)
        if self.open_interest is not None:
            await self.open_interest.remove_symbols(symbols)
        for symbol in symbols:
            self.processor.untrack(symbol)
            self.predicted.untrack(symbol)
        if self.beats is not None:
            self.beats.forget(symbols)
        self._symbols_changed = True
        self._wake.set()

    async def handle(self, request: ControlRequest) -> None:
        """A web process's request: fresh snapshots, or a change of tracked symbols."""
        if request.op == "add_symbols":
            await self.add_symbols({s.upper() for s in request.symbols})
        elif request.op == "remove_symbols":
            await self.remove_symbols({s.upper() for s in request.symbols})
        else:
            await self.flush_now()  # diffs first, so the snapshots follow them in order
            now = self.clock()
            for name in request.channels:
                try:
                    channel = parse_channel(name)
                except ProtocolError:
                    continue
                if channel.kind == "heatmap" and channel.symbol in self.processor.books:
                    self._outbox.extend(
                        m for m in self.processor.snapshots_of(channel.symbol, now) if m.ch == name
                    )
                elif channel.kind == "predicted" and channel.symbol in self.predicted.streams:
                    self._outbox.append(self.predicted.snapshot_message(channel.symbol))
            await self._publish_pending()

    # -- messages out -------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        flush_every = self.settings.flush_ms / 1000
        next_flush = time.monotonic()
        published = -math.inf
        while True:
            wake_at = next_flush if self.beats is None else min(next_flush, self.beats.next_at)
            timeout = max(0.0, wake_at - time.monotonic())
            with contextlib.suppress(TimeoutError):
                # not wait_for: on 3.11 it can swallow a cancel racing a wake (gh-86296)
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            gap = published + PUBLISH_GAP_S - time.monotonic()
            if gap > 0:
                await asyncio.sleep(min(gap, max(0.0, next_flush - time.monotonic())))
            self._wake.clear()
            if time.monotonic() >= next_flush:
                self._flush()
                next_flush = time.monotonic() + flush_every
            await self._publish_pending()
            published = time.monotonic()

    async def _publish_pending(self) -> None:
        async with self._publishing:
            await self._publish_outbox()

    async def _publish_outbox(self) -> None:
        self.alerting.take(self._outbox)
        if self.redis is not None and not self.redis_state.due():
            # Redis is down and the next attempt is not due: what would be published is
            # dropped as a failed publish would be; web processes resync once it is back.
            self.unpublished += len(self._take_outbox())
            return
        failure: Exception | None = None
        began = self.redis_state.clock()
        tried = self._symbols_changed
        if tried:
            failure = await self._announce_symbols()
        state = await self._checkpoint()
        outbox = self._take_outbox()
        messages = [(topic_for(m.ch), encode_message(m)) for m in outbox]
        if self.beats is not None and self.beats.due(time.monotonic()):
            # Last in the pipeline: every position it carries was published before it.
            messages.extend(self.beats.beat(time.monotonic(), self.broker.sharded_topics))
        if messages or state:
            tried = True
            try:
                await self.broker.publish_many(messages, state)
                if state and self.history is not None:
                    self.history.stored(state)
            except BrokerUnavailable as error:
                self.unpublished += len(outbox)
                failure = error
        if self.redis is None or not tried:
            return
        if failure is not None:
            self.redis_state.failed(failure, began)
        else:
            self.redis_state.succeeded()

    def _take_outbox(self) -> list[ChannelMessage]:
        """The messages to publish now, their positions recorded for the heartbeat first:
        published or dropped, a relay holding another position must resynchronise. (Taken
        after the awaits before publishing, so the beat never lags what goes out.)"""
        outbox, self._outbox = self._outbox, []
        if self.beats is not None:
            self.beats.record(outbox)
        return outbox

    async def _checkpoint(self) -> Mapping[str, bytes] | None:
        """What the history stores with this flush's messages (a checkpoint)."""
        if self.history is None or not self.restored:
            return None
        return await self.history.checkpoint(self.processor, self.clock())

    async def restore(self) -> dict[str, bool]:
        """Rebuild the processor from the history (or finish the one a warm standby kept);
        per symbol, whether its stream was resumed (same epoch and seq) rather than
        restarted. Raises when the history cannot be read (Redis down)."""
        history = self.history
        assert history is not None
        now = self.clock()
        standby = self.standby
        if standby is None:
            books = self.processor.books.values()
            late = self.processor.rejected + sum(len(book.store) for book in books)
            symbols = set(self.processor.books)
        else:  # its books are the follower's, not events taken late
            late, symbols = 0, set(self.settings.named_symbols)
        kept = await history.read(
            symbols, self.settings.track_all_symbols, now, rows=standby is None
        )
        newest = kept.newest
        if standby is not None:
            await standby.catch_up(kept.symbols)
            newest = standby.follower.newest_time()
        source = kept.meta.source.encode() if kept.meta.source else None
        for feed in self.feeds:
            feed.resume(source, newest, now)
            history.source_state = feed.state() or history.source_state
        self._covers_from = min([feed.covers_from(now) for feed in self.feeds] or [now])
        follower = None if standby is None else standby.follower
        restored = history.restore(
            self.processor, kept, now, self._covers_from, merge=late > 0, follower=follower
        )
        if follower is not None:
            log.info(
                "ingest: took over from the standby's books: %d carried on, %d rebuilt from "
                "the rows it held %s",
                len(kept.symbols) - len(follower.rebuilt),
                len(follower.rebuilt),
                follower.rebuilt[:10],
            )
        self.standby = None  # the follower's work is done: its books are this process's
        self._outbox.extend(restored.messages)
        for symbol in self.processor.books:
            self.predicted.track(symbol, now)  # restored books of `*`
        await history.start()
        self.restored = True
        self._symbols_changed = True
        # What the restore built lives as long as the books: out of the collector's full
        # passes, which walked it every few seconds at 2,000 liquidations/s (50 ms each).
        gc.collect()
        gc.freeze()
        return restored.resumed

    async def _announce_symbols(self) -> Exception | None:
        """Announce the tracked symbols; the failure, if Redis did not take them (the
        next publish retries)."""
        if self.redis is None:
            self._symbols_changed = False
            return None
        symbols = sorted(self.processor.books)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(control.SYMBOLS_KEY)
                if symbols:
                    pipe.sadd(control.SYMBOLS_KEY, *symbols)
                await pipe.execute()
            await self.broker.publish(
                control.SYMBOLS_TOPIC, control.encode(SymbolsAnnouncement(symbols))
            )
            self._symbols_changed = False
        except (BrokerUnavailable, RedisError, OSError) as error:
            return error
        return None

    def _flush(self) -> None:
        now = self.clock()
        self._outbox.extend(self.processor.flush(now))
        self._outbox.extend(self.predicted.flush(now))

    async def flush_now(self) -> None:
        self._flush()
        await self._publish_pending()

    # -- background loops ---------------------------------------------------------------

    async def _control_loop(self) -> None:
        await self.broker.subscribe({control.CONTROL_TOPIC})
        async for topic, payload in self.broker.messages():
            if topic == RESYNC_TOPIC:
                self._symbols_changed = True  # Redis may have restarted empty
                self._wake.set()
                continue
            if topic != control.CONTROL_TOPIC:
                continue
            try:
                await self.handle(control.decode_request(payload))
            except msgspec.DecodeError:
                log.warning("ingest: ignored a malformed control message")

    async def _alerting_loop(self) -> None:
        await self.alerting.run(wall_clock_ms, lambda: self.restored)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cleanup_interval_ms / 1000)
            now = self.clock()
            self.processor.sweep(now)
            if self.history is not None:
                await self.history.sweep(set(self.processor.books), now)

    async def _status_loop(self) -> None:
        assert self.redis is not None
        while True:
            if self.redis_state.due():
                began = self.redis_state.clock()
                try:
                    await self.redis.set(
                        control.STATUS_KEY,
                        _encoder.encode(self.status()),
                        ex=control.STATUS_TTL_S,
                    )
                except (RedisError, OSError) as error:
                    self.redis_state.failed(error, began)
                else:
                    self.redis_state.succeeded()
            await asyncio.sleep(1.0)

    async def _feed_loop(self, feed: Feed) -> None:
        try:
            await feed.run()
        except Exception as error:
            feed.status.last_error = f"stopped: {type(error).__name__}: {error}"
            log.exception("feed %s stopped", feed.status.name)
            raise

    async def _open_interest_loop(self) -> None:
        assert self.open_interest is not None
        try:
            await self.open_interest.run()
        except Exception:
            log.exception("feed %s stopped", self.open_interest.status.name)
            raise

    def sources(self) -> dict[str, dict[str, Any]]:
        """`status.sources` (docs/rest.md): one entry per source, keyed by its name."""
        now = self.clock()
        sources: dict[str, dict[str, Any]] = {
            status.name: source_entry(status, now, feed.live, self._silent_after_ms)
            for feed in self.feeds
            for status in feed.statuses()
        }
        # The order book, open interest and CoinGlass show on status but never degrade
        # health: they feed analyses, not the liquidations.
        if self.liquidity is not None:
            sources["okx_book"] = self.liquidity.status(now)
        open_interest = open_interest_entry(self.open_interest, self.feeds, now)
        if open_interest is not None:
            sources["open_interest"] = open_interest
        sources["coinglass"] = (
            self.coinglass.status(now) if self.coinglass is not None else disabled_status()
        )
        return sources

    def health_reasons(self) -> list[str]:
        return source_reasons(self.sources())

    def status(self) -> dict[str, object]:
        sources = self.sources()
        listings = self.listings
        return {
            "sources": sources,
            "reasons": source_reasons(sources),
            "symbols": {
                symbol: {"events": len(book.store), "epoch": book.epoch}
                for symbol, book in self.processor.books.items()
            },
            "symbols_unlisted": {} if listings is None else listings.unlisted(self.processor.books),
            "listings": None if listings is None else listings.status,
            "processor": {
                "rejected": self.processor.rejected,
                "unpublished": self.unpublished,
                "mark_prices_rejected": self.marks.rejected,
            },
            "history": None if self.history is None else self.history.status(),
            "alerts": self.alerting.status(),
        }

    async def start(self, control_messages: bool) -> None:
        if self.history is None:
            now = self.clock()
            self._covers_from = min([feed.covers_from(now) for feed in self.feeds] or [now])
            for book in self.processor.books.values():
                book.coverage = Coverage(self._covers_from)
            self.restored = True
        else:
            try:
                await self.restore()
            except (RedisError, OSError) as error:
                log.warning("ingest: cannot read the history yet (%s); retrying", error)
                if self.standby is not None:
                    # The feeds start now and cannot wait: their events go to books of
                    # this process, and the history read later joins them (a new epoch).
                    self.standby = None
                    self.processor = LiquidationProcessor(
                        processor_config(self.settings),
                        epoch=self.processor.epoch,
                        first_arrival=self.processor.first_arrival,
                    )
                    for symbol in self.settings.named_symbols:
                        self.processor.track(symbol, self._covers_from)
                self._tasks.append(asyncio.create_task(self._restore_later(), name="restore"))
        # A flush first: a resumed stream's next diff (re-sending its derived parts) comes
        # before any snapshot, so every snapshot published matches the stream.
        self._flush()
        now = self.clock()
        for symbol in self.processor.books:
            self._outbox.extend(self.processor.snapshots_of(symbol, now))
            self.predicted.track(symbol, now)  # restored books of `*`
            self._outbox.append(self.predicted.snapshot_message(symbol))
        await self._publish_pending()
        loops = [self._publish_loop, self._sweep_loop, self._alerting_loop]
        if self.open_interest is not None:
            loops.append(self._open_interest_loop)
        if self.liquidity is not None:
            loops.append(self.liquidity.run)
        if self.coinglass is not None:
            loops.append(self.coinglass.run)
        if control_messages:
            loops.append(self._control_loop)
        if self.redis is not None:
            loops.append(self._status_loop)
            loops.append(CandleWriter(self.redis, self.marks).run)
        if self.history is not None:
            loops.extend(self.history.loops())
        if self.listings is not None:
            loops.append(self.listings.run)
        for loop in loops:
            self._tasks.append(asyncio.create_task(loop(), name=loop.__name__))
        self._feed_tasks = [
            asyncio.create_task(self._feed_loop(feed), name=f"feed:{feed.status.name}")
            for feed in self.feeds
        ]
        self._tasks.extend(self._feed_tasks)

    async def stop_feeds(self) -> None:
        """Stop reading upstream; the processor and publisher keep running."""
        await cancel_and_wait(self._feed_tasks)

    async def _restore_later(self) -> None:
        """The history could not be read at start: read it once it can be, merged with
        what came since (a new epoch for every book that had history)."""
        backoff = Backoff(base=0.5, cap=10.0, healthy_after=0.0)
        while True:
            await asyncio.sleep(backoff.next_delay())
            try:
                await self.restore()
            except (RedisError, OSError):
                continue
            log.info("ingest: history read back")
            self._wake.set()
            return

    async def abandon(self) -> None:
        """Stop at once, writing nothing more: another ingest has taken over (the lease),
        and what this one holds is no longer the deployment's."""
        await cancel_and_wait(self._tasks)
        self._tasks.clear()

    async def stop(self) -> None:
        # The feeds first: an event taken after the history closed would be lost to it.
        await self.stop_feeds()
        with contextlib.suppress(Exception):
            await self.flush_now()
        if self.history is not None and self.restored:
            with contextlib.suppress(Exception):
                await self.history.close(self.processor, self.clock())
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.alerting.close(wall_clock_ms() - self.settings.retention_ms)
