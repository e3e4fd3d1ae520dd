"""A standby `ingest` stays warm: while another holds the lease, it follows the leader
from Redis, so that taking over costs what changed since it last looked, not a restore.

Every `POLL_S` it reads each tracked symbol's checkpoint and then the event log's new
entries (in that order: the leader writes a flush's events before its checkpoint, so
every checkpoint read names rows read), and moves its processor's books to the
checkpoints (hub.analytics.follow). A symbol it has not seen before (the leader tracks
one more) is read whole first. Redis failures are retried with backoff: the follower
keeps what it holds and carries on from where it read.

When the lease comes to this process, `Ingest.restore` reads the checkpoints once more
after raising the fencing token (nothing older can be written after that), calls
`catch_up` for the log's last entries, and has the follower finish each book
(`Follower.take_over`). A standby that has not finished its first read by then is
dropped and the history is read as a restarted `ingest` reads it.

A follow stalled for longer than `STALE_AFTER_S` starts over from the whole log: the
leader's compaction may have moved entries it had not read out of the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

from hub.analytics.follow import Follower
from hub.analytics.processor import ProcessorConfig
from hub.config import Settings
from hub.feeds.backoff import Backoff
from hub.service.control import SYMBOLS_KEY
from hub.service.sources import wall_clock_ms
from hub.storage.event_log import CLOCK_SLACK_MS, newest_ids, read_all, read_tails
from hub.storage.layout import AnyRedis, state_key
from hub.tasks import cancel_and_wait

log = logging.getLogger("hub.standby")
POLL_S = 0.25
STALE_AFTER_S = 3_600.0  # well inside the log's COMPACT_AFTER_MS


class Standby:
    def __init__(self, redis: AnyRedis, settings: Settings, config: ProcessorConfig) -> None:
        self.redis = redis
        self.settings = settings
        self.config = config
        self.follower = Follower(config, epoch="standby")
        self.ready = False  # the first read is done: the follower can take over
        self._cursors: dict[str, bytes | None] = {}  # per symbol, the last entry id read
        self._polled = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="standby")

    async def stop(self) -> bool:
        """Stop following; whether the follower can take over."""
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        return self.ready

    async def run(self) -> None:
        backoff = Backoff(base=0.5, cap=10.0, healthy_after=0.0)
        while True:
            try:
                if time.monotonic() - self._polled > STALE_AFTER_S:
                    log.warning("standby: stalled too long; reading the whole log again")
                    self.follower = Follower(self.config, epoch="standby")
                    self._cursors, self.ready = {}, False
                began = time.monotonic()
                await self.catch_up(await self._symbols())
            except (RedisError, OSError) as error:
                log.warning("standby: cannot read from Redis (%s); retrying", error)
                await asyncio.sleep(backoff.next_delay())
                continue
            except Exception:
                # What it holds may be half moved: a takeover reads the history instead.
                log.exception("standby: following failed; a takeover will read the history")
                self.ready = False
                return
            if not self.ready:
                self.ready = True
                log.info(
                    "standby: following %d symbols (%d events) after reading for %.1f s",
                    len(self._cursors),
                    self.follower.held(),
                    time.monotonic() - began,
                )
            backoff.attempt = 0
            await asyncio.sleep(POLL_S)

    async def catch_up(self, symbols: set[str]) -> None:
        """Read what the leader wrote for `symbols` since the last read (a new symbol's
        whole log), and move the follower to their checkpoints."""
        follower = self.follower
        new = sorted(symbols - self._cursors.keys())
        if new:
            cursors = await newest_ids(self.redis, new)
            since = wall_clock_ms() - self.config.retention_ms - CLOCK_SLACK_MS
            for symbol in new:
                follower.take(symbol, await read_all(self.redis, symbol, since))
                self._cursors[symbol] = cursors[symbol]
        for gone in self._cursors.keys() - symbols:
            del self._cursors[gone]
        follower.keep_only(set(self._cursors))
        names = sorted(self._cursors)
        async with self.redis.pipeline(transaction=False) as pipe:
            for symbol in names:
                pipe.hget(state_key(symbol), symbol)
            positions = await pipe.execute()
        tails = await read_tails(self.redis, self._cursors)
        for symbol, position in zip(names, positions, strict=True):
            cursor, batches = tails[symbol]
            for named in batches:
                follower.take(symbol, named)
            self._cursors[symbol] = cursor
            follower.move(symbol, position)
            await asyncio.sleep(0)  # a book started again is a restore's work: let others run
        self._polled = time.monotonic()

    async def _symbols(self) -> set[str]:
        """What the leader tracks (it announces them); the configured ones in any case."""
        announced = {m.decode() for m in await self.redis.smembers(SYMBOLS_KEY)}
        return announced | set(self.settings.named_symbols)
