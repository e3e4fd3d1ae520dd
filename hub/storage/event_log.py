"""The durable event log: one Redis Stream of accepted events per symbol.

`ingest` appends every event it accepts; a restarted `ingest` reads the streams back to
rebuild its processor, and `web` processes read them for event lists and exports.

Writes go through a bounded in-memory buffer drained by one task, so the feed never waits
on Redis. When Redis is unreachable the buffer keeps filling (oldest dropped past its
bound) and the task retries with backoff (`Outage`: the loss and the return are logged
once each, and the checkpoint's writes wait for the same backoff); once Redis answers
again it writes the buffer in order. If the buffer overflowed, or Redis came back empty
(a restart without persistence: the instance marker is gone), the log is rewritten from
what the processor still holds, so nothing already accepted is lost. Streams are trimmed
by count (`MAXLEN ~ HEATMAP_MAX_EVENTS`) on every write and by age (`MINID`) on each
sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.models import LiquidationEvent
from hub.storage.outage import Outage

log = logging.getLogger("hub.storage")
PREFIX = "hub:"
MARKER_KEY = f"{PREFIX}instance"
WRITE_BATCH = 500
READ_PAGE = 2_000
CLOCK_SLACK_MS = 60_000  # how far an exchange's trade time may run ahead of ours
_FAILURES = (RedisError, OSError)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LiquidationEvent)


def stream_key(symbol: str) -> str:
    return f"{PREFIX}events:{symbol}"


class EventLogStatus(msgspec.Struct):
    connected: bool = False
    written: int = 0
    buffered: int = 0
    dropped_from_buffer: int = 0
    rewrites: int = 0
    last_error: str | None = None


class RedisEventLog:
    def __init__(
        self,
        redis: Redis,
        max_events: int,
        holdings: Callable[[], Mapping[str, Iterable[LiquidationEvent]]],
        max_buffer: int = 200_000,
    ) -> None:
        """`holdings` gives every event the processor holds, per symbol, oldest first."""
        self.redis = redis
        self.max_events = max_events
        self.holdings = holdings
        self.max_buffer = max_buffer
        self.outage = Outage("event log", log)
        self.status = EventLogStatus()
        self._pending: deque[LiquidationEvent] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._rewrite = False
        self._marker = uuid.uuid4().hex
        self._lock = asyncio.Lock()  # one writer at a time keeps each stream in order

    # -- writing ------------------------------------------------------------------------

    def append(self, event: LiquidationEvent) -> None:
        if len(self._pending) >= self.max_buffer:
            self._pending.popleft()
            self.status.dropped_from_buffer += 1
            self._rewrite = True  # the processor still holds what the buffer let go
        self._pending.append(event)
        self.status.buffered = len(self._pending)
        self._idle.clear()
        self._wake.set()

    async def claim(self) -> None:
        """Mark this Redis as written by us, so a restart that empties it is noticed."""
        await self.redis.set(MARKER_KEY, self._marker)
        self.status.connected = True

    async def run(self, check_interval: float = 2.0) -> None:
        """Write what is appended; every `check_interval` also check Redis kept our data."""
        while True:
            with contextlib.suppress(TimeoutError):
                # not wait_for: on 3.11 it can swallow a cancel racing a wake (gh-86296)
                async with asyncio.timeout(check_interval):
                    await self._wake.wait()
            self._wake.clear()
            while True:
                try:
                    async with self._lock:
                        await self._write_some()
                except _FAILURES as error:
                    await asyncio.sleep(self.failed(error))
                    continue
                self._answered()
                if not self._pending and not self._rewrite:
                    break
            self.status.buffered = len(self._pending)
            self._idle.set()

    async def flushed(self) -> None:
        """Wait until everything appended so far is written (tests, shutdown)."""
        await self._idle.wait()

    def _answered(self) -> None:
        self.status.connected = True
        self.outage.succeeded()

    def failed(self, error: Exception) -> float:
        """A write failed: the state, and the delay before the next attempt."""
        self.status.connected = False
        delay = self.outage.failed(error)
        self.status.last_error = self.outage.last_error
        return delay

    async def write_pending(self) -> None:
        """Write everything appended so far, now; raises when Redis does not take it (the
        background loop keeps retrying). A checkpoint saved after this names only logged
        events."""
        async with self._lock:
            while self._pending or self._rewrite:
                await self._write_some()
                self._answered()
        if not self._pending:
            self._idle.set()

    async def _write_some(self) -> None:
        if await self.redis.get(MARKER_KEY) != self._marker.encode():
            if self.status.written:
                log.warning("event log: Redis lost our data (restarted?); rewriting it")
            self._rewrite = True
        if self._rewrite:
            await self._rewrite_all()
            return
        if not self._pending:
            return
        batch = [self._pending[i] for i in range(min(WRITE_BATCH, len(self._pending)))]
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in batch:
                pipe.xadd(
                    stream_key(event.symbol),
                    {"e": _encoder.encode(event)},
                    maxlen=self.max_events,
                    approximate=True,
                )
            await pipe.execute()
        for _ in batch:
            self._pending.popleft()
        self.status.written += len(batch)
        self.status.buffered = len(self._pending)

    async def _rewrite_all(self) -> None:
        holdings = self.holdings()
        self._pending.clear()  # every pending event still held is in `holdings`
        for symbol, events in holdings.items():
            held = list(events)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(stream_key(symbol))
                for event in held:
                    pipe.xadd(stream_key(symbol), {"e": _encoder.encode(event)})
                await pipe.execute()
            self.status.written += len(held)
        await self.redis.set(MARKER_KEY, self._marker)
        self._rewrite = False
        self.status.rewrites += 1

    async def trim(self, symbols: Iterable[str], oldest_ms: int) -> None:
        """Drop entries older than retention; IDs start with their write time in ms."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for symbol in symbols:
                pipe.xtrim(stream_key(symbol), minid=oldest_ms, approximate=False)
            await pipe.execute()


async def read_events(redis: Redis, symbol: str) -> list[LiquidationEvent]:
    """The whole log of `symbol`, oldest first (a restart rebuilds from it)."""
    return _decode(stream_key(symbol), await redis.xrange(stream_key(symbol)))


async def read_window(
    redis: Redis, symbol: str, since: int, side: str | None, limit: int | None = None
) -> list[LiquidationEvent]:
    """Events with time >= since (and `side`), newest first, at most `limit`, reading the
    stream backwards a page at a time and only as far as needed.

    An entry's ID is the time it was written (ms), which is at or after its event's time
    up to the exchange's clock running ahead (CLOCK_SLACK_MS). So the read stops at IDs
    older than `since` (nothing older can be in the window), and, with a limit, once the
    IDs read are older than the limit-th newest event found (nothing older can be newer
    than it, although a late arrival is written after newer events). A `web` process fed
    by a replay, whose trade times lie long before their write times, may read the whole
    stream, as every read did before.
    """
    key = stream_key(symbol)
    found: list[LiquidationEvent] = []
    floor = max(0, since - CLOCK_SLACK_MS)
    page = READ_PAGE if limit is None else max(2 * limit, 100)
    upper = "+"
    while True:
        entries = await redis.xrevrange(key, max=upper, min=floor, count=page)
        found.extend(
            e for e in _decode(key, entries) if e.time >= since and (side is None or e.side == side)
        )
        if len(entries) < page:
            break
        oldest = int(entries[-1][0].split(b"-")[0])
        if limit is not None and len(found) >= limit:
            found.sort(key=_newest_first)
            if oldest < found[limit - 1].time - CLOCK_SLACK_MS:
                break
        upper = f"({entries[-1][0].decode()}"  # exclusive: continue below the last entry
    found.sort(key=_newest_first)
    return found if limit is None else found[:limit]


def _newest_first(event: LiquidationEvent) -> int:
    return -event.time


def _decode(key: str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[LiquidationEvent]:
    events = []
    for _entry_id, fields in entries:
        try:
            events.append(_decoder.decode(fields[b"e"]))
        except (KeyError, msgspec.DecodeError):
            log.warning("event log %s: skipped an unreadable entry", key)
    return events
