"""The event log's archive: old one-row entries moved into large batches, read back whole,
once each, by every reader, and trimmed by time like the stream."""

from __future__ import annotations

import random

import numpy as np
import pytest
from redis.asyncio import Redis

from hub.analytics.rows import Named, in_log_order, rows_of
from hub.models import LiquidationEvent
from hub.storage.event_log import (
    ARCHIVE_ROWS,
    RedisEventLog,
    archive_key,
    read_all,
    read_window,
    stream_key,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)
HOUR = 3_600_000
T0 = 1_796_000_000_000


def event(time: int, rng: random.Random) -> LiquidationEvent:
    side = rng.choice(("long", "short"))
    return LiquidationEvent(
        rng.choice(("binance", "bybit", "okx")), "BTCUSDT", side, 60_000.0, 0.5, 30_000.0, time
    )


@pytest.fixture
async def redis(redis_server: RedisServer) -> Redis:
    client = Redis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


class Logged:
    """A log written one small entry at a time, as ingest writes it at real rates."""

    def __init__(self, redis: Redis) -> None:
        self.log = RedisEventLog(redis, lambda: {})
        self.rng = random.Random(7)
        self.events: list[tuple[int, LiquidationEvent]] = []

    async def write(self, start: int, end: int, every: int) -> None:
        await self.log.claim()
        for time in range(start, end, every):
            arrival = len(self.events) + 1
            self.events.append((arrival, event(time, self.rng)))
            self.log.append(arrival, self.events[-1][1])
            if arrival % 7 == 0:  # a few rows an entry
                await self.log.write_pending()
        await self.log.write_pending()

    def since(self, oldest: int) -> Named:
        return rows_of([(a, e) for a, e in self.events if e.time >= oldest])


async def entries(redis: Redis, key: str) -> int:
    return int(await redis.xlen(key))


def arrivals(named: Named) -> list[int]:
    return named.rows.arrival.tolist()


async def test_compaction_moves_old_entries_and_readers_see_each_event_once(redis: Redis) -> None:
    logged = Logged(redis)
    await logged.write(T0, T0 + 8 * HOUR, 10_000)  # 2,880 events
    stream_before = await entries(redis, stream_key("BTCUSDT"))
    log = logged.log

    assert await log.compact({"BTCUSDT"}, T0 + 5 * HOUR) == 0, "nothing is 6 h old yet"
    assert await log.compact({"BTCUSDT"}, T0 + 8 * HOUR) == 1
    archived = await entries(redis, archive_key("BTCUSDT"))
    assert 0 < archived <= 2_880 // ARCHIVE_ROWS + 1, f"{archived} archive entries"
    # Archived entries stay in the stream until the next compaction: a reader that saw the
    # previous mark still finds them.
    assert await entries(redis, stream_key("BTCUSDT")) == stream_before

    everything = in_log_order(await read_all(redis, "BTCUSDT"))
    assert arrivals(everything) == list(range(1, 2_881)), "every event once, in log order"

    await logged.write(T0 + 8 * HOUR, T0 + 15 * HOUR, 10_000)
    assert await log.compact({"BTCUSDT"}, T0 + 15 * HOUR) == 1
    left = await entries(redis, stream_key("BTCUSDT"))
    assert left < stream_before, f"the stream keeps {left} entries after a second compaction"
    merged = await read_all(redis, "BTCUSDT")
    assert arrivals(merged) == list(range(1, len(logged.events) + 1)), "log order, once each"

    since = T0 + 7 * HOUR + 123
    part = await read_all(redis, "BTCUSDT", since)
    wanted = logged.since(since)
    assert set(arrivals(wanted)) <= set(arrivals(part)), "a partial read misses nothing"
    assert len(np.unique(part.rows.arrival)) == len(part.rows), "and doubles nothing"


async def test_read_window_spans_the_archive_and_the_stream(redis: Redis) -> None:
    logged = Logged(redis)
    await logged.write(T0, T0 + 14 * HOUR, 20_000)
    await logged.log.compact({"BTCUSDT"}, T0 + 14 * HOUR)
    for since in (T0, T0 + 3 * HOUR + 1, T0 + 13 * HOUR):
        got = await read_window(redis, "BTCUSDT", since, None)
        times = sorted((e.time for _, e in logged.events if e.time >= since), reverse=True)
        assert [e.time for e in got] == times, f"since {since - T0} ms after the start"
        newest = await read_window(redis, "BTCUSDT", since, "short", limit=50)
        shorts = [e.time for _, e in logged.events if e.time >= since and e.side == "short"]
        assert [e.time for e in newest] == sorted(shorts, reverse=True)[:50]


async def test_retention_trims_the_archive_by_time(redis: Redis) -> None:
    logged = Logged(redis)
    await logged.write(T0, T0 + 7 * HOUR, 60_000)
    await logged.log.compact({"BTCUSDT"}, T0 + 7 * HOUR)
    await logged.write(T0 + 7 * HOUR, T0 + 14 * HOUR, 60_000)
    await logged.log.compact({"BTCUSDT"}, T0 + 14 * HOUR)
    assert await entries(redis, archive_key("BTCUSDT")) == 2
    oldest = T0 + 8 * HOUR
    await logged.log.trim({"BTCUSDT"}, oldest)
    # An archive entry goes once all its events are past retention: its id is its newest.
    assert await entries(redis, archive_key("BTCUSDT")) == 1
    kept = await read_all(redis, "BTCUSDT")
    assert set(arrivals(logged.since(oldest))) <= set(arrivals(kept)), "the retention is kept"
    assert int(kept.rows.time.min()) >= T0 + 7 * HOUR - 60_000, "the first 7 h are gone"
