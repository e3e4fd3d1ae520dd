"""History: where accepted events outlive the process, and what a restart gets back.

`ingest` (and `serve`) hand every accepted event to one `History`:
- `RedisHistory` (with REDIS_URL): the event log on Redis Streams, checkpoints in the
  positions hash published with every flush (so `ingest` resumes its streams in the same
  epoch), and the coverage kept beside them;
- `DiskHistory` (`serve` without Redis, HEATMAP_DATA_DIR set): Arrow/Parquet segments and
  a state file; a restart restores every event, in a new epoch (a one-process server's
  clients all reconnect anyway);
- none: nothing outlives the process.

Both keep, beside the events, each symbol's coverage (hub.analytics.coverage), the last
time the process was alive (so a restart after a longer stop records a gap), and the
source's own state (the demo's clock, so a restart carries it on).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
from redis.exceptions import RedisError

from hub.analytics import checkpoint
from hub.analytics.coverage import Coverage, CoverageState
from hub.analytics.follow import Follower
from hub.analytics.processor import LiquidationProcessor
from hub.analytics.rows import EMPTY_ROWS, Named
from hub.analytics.rows import merge as merged
from hub.config import Settings
from hub.errors import Fenced
from hub.fanout.broker import topic_tag
from hub.models import ChannelMessage, LiquidationEvent
from hub.service.control import CONTROL_TOPIC, SYMBOLS_KEY, SYMBOLS_TOPIC
from hub.service.heartbeat import HEARTBEAT_TOPIC
from hub.service.sources import Source, wall_clock_ms
from hub.storage.disk_log import DiskEventLog, SkippedFile
from hub.storage.event_log import CLOCK_SLACK_MS, RedisEventLog, read_all
from hub.storage.fence import Fence
from hub.storage.layout import (
    GLOBAL,
    AnyRedis,
    migrate_legacy,
    stamp_fences,
    state_key,
)

log = logging.getLogger("hub.history")
ALIVE_FIELD = "~alive"
COVERAGE_FIELD = "~coverage"
SOURCE_FIELD = "~source"
ALIVE_EVERY_MS = 1_000


class Restored(NamedTuple):
    resumed: dict[str, bool]  # per symbol: the saved stream resumed (same epoch, seqs)
    messages: list[ChannelMessage]  # of the events after the checkpoints, to send again


class Meta(msgspec.Struct):
    """What is kept beside the events."""

    alive: int = 0
    coverage: dict[str, CoverageState] = {}
    source: str | None = None


class Kept(NamedTuple):
    """What `read` found: the state kept beside the events, and the symbols' rows."""

    meta: Meta
    symbols: set[str]  # to restore: those asked for, and with `*` every one kept
    rows: dict[str, Named]

    @property
    def newest(self) -> int | None:
        """The newest event time kept."""
        times = [int(named.rows.time.max()) for named in self.rows.values() if len(named.rows)]
        return max(times, default=None)


_meta_decoder = msgspec.json.Decoder(Meta)
_coverage_decoder = msgspec.json.Decoder(dict[str, CoverageState])


class History(abc.ABC):
    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self.source_state: bytes | None = None  # saved with the rest; set by the source
        self._alive_saved = 0

    @abc.abstractmethod
    def append(self, arrival: int, event: LiquidationEvent) -> None: ...

    @abc.abstractmethod
    async def read(self, symbols: set[str], track_all: bool, now: int, rows: bool = True) -> Kept:
        """What was kept for `symbols` (with `track_all`, for every symbol kept); reads
        the liquidations/alerts channels' positions too, where they are kept. Without
        `rows`, not the events (a warm standby holds them)."""

    def restore(
        self,
        processor: LiquidationProcessor,
        kept: Kept,
        now: int,
        covers_from: int,
        merge: bool = False,
        follower: Follower | None = None,
    ) -> Restored:
        """Rebuild the processor's books from what `read` gave. The source delivers from
        `covers_from` on: where a symbol with nothing kept is covered from, and the end of
        the gap since the process before this one was last alive (a source that lays what
        it missed, as the demo does, leaves none). With `merge` (the history is read late,
        the books already hold events) the kept rows join those held, in a new epoch.
        With a `follower` (a warm standby's, whose processor this is), its books are
        finished instead of rebuilt from rows."""
        if not merge:
            self.restore_channels(processor)
        meta = kept.meta
        resumed: dict[str, bool] = {}
        messages: list[ChannelMessage] = []
        for symbol in sorted(kept.symbols):
            named = kept.rows.get(symbol, Named(EMPTY_ROWS, []))
            book = processor.track(symbol, covers_from)
            state = meta.coverage.get(symbol)
            book.coverage = Coverage.restored(state) if state else Coverage(covers_from)
            if meta.alive:
                book.coverage.add_gap(meta.alive, covers_from)
            position = self.position(symbol)
            if merge:
                if not len(named.rows):
                    continue
                named = merged([named, Named(book.store.rows(), book.store.exchanges)])
                position = None
            if follower is not None:
                resumed[symbol], again = follower.take_over(symbol, position, now)
            else:
                resumed[symbol], again = checkpoint.restore_book(
                    processor, symbol, named, position, now
                )
            messages.extend(again)
            log.info(
                "history: %s restored %d events (%s%s)",
                symbol,
                len(processor.books[symbol].store),
                "stream resumed" if resumed[symbol] else "new epoch",
                ", kept warm by the standby" if follower is not None else "",
            )
        return Restored(resumed, messages)

    def position(self, symbol: str) -> bytes | None:
        """The checkpoint of `symbol` read with the rest, if this history keeps them."""
        return None

    def restore_channels(self, processor: LiquidationProcessor) -> None:
        """The liquidations/alerts channels' positions read with the rest, if kept."""
        return None

    def meta(self, processor: LiquidationProcessor, now: int) -> Meta:
        coverage = {symbol: book.coverage.state() for symbol, book in processor.books.items()}
        source = self.source_state.decode() if self.source_state else None
        return Meta(now, coverage, source)

    async def checkpoint(
        self, processor: LiquidationProcessor, now: int
    ) -> Mapping[str, bytes] | None:
        """What to store with the messages of this flush (see `Broker.publish_many`)."""
        return None

    def stored(self, fields: Mapping[str, bytes]) -> None:
        """The broker stored what `checkpoint` gave."""
        return None

    @abc.abstractmethod
    async def sweep(self, symbols: set[str], now: int) -> None:
        """Drop what is past retention; keep the log quick to read back."""

    def loops(self) -> list[Callable[[], Awaitable[None]]]:
        return []

    async def start(self) -> None:
        """Taken over: from here on this process writes the history."""
        return None

    def fenced_by(self, fence: Fence) -> None:
        """Writes carry this lease's token from now on (a history in Redis)."""
        return None

    async def close(self, processor: LiquidationProcessor, now: int) -> None:
        return None

    @abc.abstractmethod
    def status(self) -> Any: ...


class RedisHistory(History):
    def __init__(
        self, redis: AnyRedis, retention_ms: int, holdings: Callable[[], Mapping[str, Named]]
    ) -> None:
        super().__init__(retention_ms)
        self.redis = redis
        self.log = RedisEventLog(redis, holdings)
        self._saved: dict[str, bytes] = {}  # fields as last stored
        self._positions: dict[bytes, bytes] = {}
        self._encode_positions = checkpoint.Positions()
        self._coverage_saved: tuple[list[tuple[str, Coverage, int]], bytes] = ([], b"")
        self._losses_seen = (0, 0)

    def append(self, arrival: int, event: LiquidationEvent) -> None:
        self.log.append(arrival, event)

    async def read(self, symbols: set[str], track_all: bool, now: int, rows: bool = True) -> Kept:
        redis, layout = self.redis, self.log.layout
        await migrate_legacy(redis, layout)
        if track_all:
            symbols = symbols | {m.decode() for m in await redis.smembers(SYMBOLS_KEY)}
        if self.log.fence is not None:  # before reading: see hub.storage.layout
            services = [topic_tag(t) for t in (CONTROL_TOPIC, SYMBOLS_TOPIC, HEARTBEAT_TOPIC)]
            await stamp_fences(redis, layout, [*symbols, *services], self.log.fence.token)
        owners = [GLOBAL, *sorted(symbols)]
        async with redis.pipeline(transaction=False) as pipe:
            for owner in owners:
                pipe.hgetall(state_key(owner))
            states = await pipe.execute()
        saved = {field: value for state in states for field, value in state.items()}
        self._positions = saved
        meta = Meta(
            alive=int(saved.get(ALIVE_FIELD.encode(), b"0") or 0),
            coverage=_decoded(saved.get(COVERAGE_FIELD.encode()), _coverage_decoder, {}),
            source=(saved.get(SOURCE_FIELD.encode()) or b"").decode() or None,
        )
        if not rows:
            return Kept(meta, symbols, {})
        since = now - self.retention_ms - CLOCK_SLACK_MS
        return Kept(
            meta, symbols, {symbol: await read_all(redis, symbol, since) for symbol in symbols}
        )

    def position(self, symbol: str) -> bytes | None:
        return self._positions.get(symbol.encode())

    def restore_channels(self, processor: LiquidationProcessor) -> None:
        channels = self._positions.get(checkpoint.CHANNELS_FIELD.encode())
        checkpoint.restore_channels(processor, channels)

    async def start(self) -> None:
        await self.log.claim()

    def fenced_by(self, fence: Fence) -> None:
        self.log.fence = fence

    async def checkpoint(
        self, processor: LiquidationProcessor, now: int
    ) -> Mapping[str, bytes] | None:
        """The processor's positions that changed since last stored, once the events they
        name are in the log (a checkpoint ahead of the log could not be resumed from), and
        the coverage, the source's state and the time, when they changed."""
        log_ = self.log
        if not log_.outage.due():
            return None
        try:
            await log_.write_pending()
        except (RedisError, OSError, Fenced) as error:
            log_.failed(error)
            return None
        losses = (log_.status.rewrites, log_.failures)
        if losses != self._losses_seen:
            self._losses_seen = losses
            # Redis lost everything, or was away (a failover may have lost the last
            # writes): whatever the checkpoint held may be gone too.
            self._saved.clear()
        fields = self._encode_positions(processor)
        fields[COVERAGE_FIELD] = self._coverage(processor, now)
        if self.source_state:
            fields[SOURCE_FIELD] = self.source_state
        if now - self._alive_saved >= ALIVE_EVERY_MS:
            fields[ALIVE_FIELD] = str(now).encode()
        return {k: v for k, v in fields.items() if self._saved.get(k) != v}

    def _coverage(self, processor: LiquidationProcessor, now: int) -> bytes:
        """Every book's coverage, encoded again only when one changed: a checkpoint goes
        with every publish, and encoding 300 of them each time cost 140 us."""
        # The objects themselves: a book may be given a new one (a restore), revision 0.
        revisions = [
            (symbol, book.coverage, book.coverage.revision)
            for symbol, book in processor.books.items()
        ]
        if revisions != self._coverage_saved[0]:
            encoded = msgspec.json.encode(self.meta(processor, now).coverage)
            self._coverage_saved = (revisions, encoded)
        return self._coverage_saved[1]

    def stored(self, fields: Mapping[str, bytes]) -> None:
        self._saved.update(fields)
        if ALIVE_FIELD in fields:
            self._alive_saved = int(fields[ALIVE_FIELD])

    async def sweep(self, symbols: set[str], now: int) -> None:
        with contextlib.suppress(RedisError, OSError, Fenced):
            await self.log.trim(symbols, now - self.retention_ms - CLOCK_SLACK_MS)
            await self.log.compact(symbols, now)

    def loops(self) -> list[Callable[[], Awaitable[None]]]:
        return [self.log.run]

    async def close(self, processor: LiquidationProcessor, now: int) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.log.flushed(), 5)

    def status(self) -> Any:
        return self.log.status


class DiskHistory(History):
    def __init__(self, directory: Path, retention_ms: int, clock: Callable[[], int]) -> None:
        super().__init__(retention_ms)
        self.log = DiskEventLog(directory, clock)
        self.clock = clock
        self._meta_saved = b""

    def append(self, arrival: int, event: LiquidationEvent) -> None:
        self.log.append(arrival, event)

    async def read(self, symbols: set[str], track_all: bool, now: int, rows: bool = True) -> Kept:
        meta = _decoded(self.log.read_state(), _meta_decoder, Meta())
        logged = await asyncio.to_thread(self.log.read_all, now - self.retention_ms)
        if track_all:
            symbols = symbols | set(logged)
        for skipped in self.log.status.skipped:
            _hole_in(meta, skipped, symbols)
        return Kept(meta, symbols, {s: logged[s] for s in symbols if s in logged})

    def _save_meta(self, processor: LiquidationProcessor, now: int) -> None:
        encoded = msgspec.json.encode(self.meta(processor, now))
        if encoded != self._meta_saved:
            try:
                self.log.write_state(encoded)
            except OSError as error:
                log.warning("history: cannot write its state: %s", error)
                return
            self._meta_saved = encoded

    async def checkpoint(
        self, processor: LiquidationProcessor, now: int
    ) -> Mapping[str, bytes] | None:
        if now - self._alive_saved >= ALIVE_EVERY_MS:
            self._alive_saved = now
            self._save_meta(processor, now)
        return None

    async def sweep(self, symbols: set[str], now: int) -> None:
        await asyncio.to_thread(self.log.trim, now - self.retention_ms)

    def loops(self) -> list[Callable[[], Awaitable[None]]]:
        return [self.log.run]

    async def close(self, processor: LiquidationProcessor, now: int) -> None:
        await self.log.close()
        self._save_meta(processor, now)

    def status(self) -> Any:
        return self.log.status


def _hole_in(meta: Meta, skipped: SkippedFile, symbols: set[str]) -> None:
    """An unreadable file: its span is a gap in every symbol's kept coverage."""
    if skipped.first is None or skipped.last is None:
        return
    for symbol in symbols:
        state = meta.coverage.get(symbol)
        if state is None:
            continue
        coverage = Coverage.restored(state)
        coverage.add_gap(skipped.first, skipped.last + 1, tolerance=0)
        meta.coverage[symbol] = coverage.state()


def _decoded(raw: bytes | None, decoder: msgspec.json.Decoder, default: Any) -> Any:
    if not raw:
        return default
    try:
        return decoder.decode(raw)
    except msgspec.DecodeError:
        log.warning("history: ignored an unreadable saved state")
        return default


def build_history(
    settings: Settings,
    source: Source,
    redis: AnyRedis | None,
    holdings: Callable[[], Mapping[str, Named]],
) -> History | None:
    """Redis when there is one; else the data directory, unless this is a replay (whose
    events are the file's, not history); else none."""
    if redis is not None:
        return RedisHistory(redis, settings.retention_ms, holdings)
    directory = data_directory(settings, source)
    if directory is None:
        return None
    return DiskHistory(directory, settings.retention_ms, wall_clock_ms)


def data_directory(settings: Settings, source: Source) -> Path | None:
    """Where a `serve` without Redis keeps what it keeps for `source` (one directory per
    kind of source, so the demo's past never mixes with the market's); None for a replay
    or with HEATMAP_DATA_DIR=off."""
    if settings.data_dir is None or source.replay is not None:
        return None
    return Path(settings.data_dir) / ("demo" if source.demo else "live")
