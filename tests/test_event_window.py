"""`read_window`: a `web` process reads only the part of the event log a request needs."""

from __future__ import annotations

import random

import msgspec
import pytest
from redis.asyncio import Redis

from hub.models import LiquidationEvent, Side
from hub.storage.event_log import CLOCK_SLACK_MS, read_window, stream_key
from tests.redis_server import RedisServer

NOW = 1_796_000_000_000
MINUTE = 60_000


def event(time: int, side: Side, notional: float) -> LiquidationEvent:
    return LiquidationEvent(
        "binance", "BTCUSDT", side, 60_000.0, notional / 60_000.0, notional, time
    )


async def write(redis: Redis, rows: list[tuple[int, LiquidationEvent]]) -> None:
    """Entries with explicit IDs: (write time ms, event)."""
    async with redis.pipeline(transaction=False) as pipe:
        for seq, (written, item) in enumerate(rows):
            pipe.xadd(
                stream_key("BTCUSDT"), {"e": msgspec.json.encode(item)}, id=f"{written}-{seq}"
            )
        await pipe.execute()


async def xrevrange_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_xrevrange", {}).get("calls", 0))


@pytest.fixture
async def redis(redis_server: RedisServer) -> Redis:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_window_matches_the_whole_log_filtered(redis: Redis) -> None:
    rng = random.Random(3)
    rows = []
    for i in range(6_000):
        time = NOW - 120 * MINUTE + i * MINUTE // 50
        # written shortly after the trade; one in fifty arrives late, after newer ones
        late = rng.random() < 0.02
        rows.append(
            (
                time + (rng.randrange(5_000, 50_000) if late else rng.randrange(200)),
                event(time, rng.choice(("long", "short")), float(rng.randrange(1, 10**6))),
            )
        )
    rows.sort(key=lambda row: row[0])
    await write(redis, rows)
    everything = sorted((e for _, e in rows), key=lambda e: -e.time)
    for since in (NOW - 60 * MINUTE, NOW - 5 * MINUTE, NOW - 500 * MINUTE, NOW + MINUTE):
        for side in (None, "long"):
            expected = [e for e in everything if e.time >= since and side in (None, e.side)]
            got = await read_window(redis, "BTCUSDT", since, side)
            assert got == expected, (since, side, len(got), len(expected))
            for limit in (1, 100, 10_000):
                got = await read_window(redis, "BTCUSDT", since, side, limit)
                assert got == expected[:limit], (since, side, limit)


async def test_a_limited_read_stops_early_and_a_window_read_stops_at_its_start(
    redis: Redis,
) -> None:
    rows = [(NOW - 600 * MINUTE + i * 3_000, event(NOW - 600 * MINUTE + i * 3_000, "long", 1.0))
            for i in range(12_000)]  # fmt: skip
    await write(redis, rows)
    before = await xrevrange_calls(redis)
    newest = await read_window(redis, "BTCUSDT", NOW - 600 * MINUTE, None, limit=100)
    assert [e.time for e in newest] == [t for t, _ in rows[::-1][:100]]
    # Each read looks up the archive's mark (one XREVRANGE) before it reads the stream.
    assert await xrevrange_calls(redis) - before == 2, "100 newest: one page of the stream"
    recent = await read_window(redis, "BTCUSDT", NOW - 5 * MINUTE, None)
    assert len(recent) == 5 * MINUTE // 3_000
    assert await xrevrange_calls(redis) - before == 4, "5 minutes: one short page"
    assert CLOCK_SLACK_MS // 3_000 < 2_000, "the slack read stays within that page"
