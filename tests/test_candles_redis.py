"""Mark-price candles on a real Redis: what `ingest` writes is what a `web` process reads,
a restarted `ingest` carries its candles on, and an outage loses no candle."""

from __future__ import annotations

from redis.asyncio import Redis

from hub.analytics.candles import TIERS, MarkPrices
from hub.models import MarkPriceUpdate
from hub.storage.candles import KEEP_MS, CandleWriter, candles_key, read_ring
from tests.redis_server import RedisServer

NOW = 1_800_000_000_000


def marks_with(prices: list[tuple[int, float]]) -> MarkPrices:
    marks = MarkPrices()
    marks.track("BTCUSDT")
    for time, price in prices:
        assert marks.apply(MarkPriceUpdate("binance", "BTCUSDT", time, price), time)
    return marks


async def same_rings(redis: Redis, marks: MarkPrices) -> None:
    for tier in TIERS:
        held = marks.ring("BTCUSDT", tier)
        read = await read_ring(redis, "BTCUSDT", tier)
        assert held is not None and read is not None
        assert read.tolist() == held.tolist(), tier


async def test_what_ingest_writes_web_reads_and_a_restart_carries_on(
    redis_server: RedisServer,
) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        assert await read_ring(redis, "BTCUSDT", TIERS[0]) is None, "nothing written yet"
        marks = marks_with([(NOW + 1_000 * s, 100.0 + s) for s in range(90)])
        writer = CandleWriter(redis, marks)
        await writer.write()  # the first round: read back (nothing), then the whole buffer
        await same_rings(redis, marks)
        assert 0 < await redis.pttl(candles_key("BTCUSDT")) <= KEEP_MS
        for s in range(90, 100):  # later rounds: the slots that changed
            marks.apply(MarkPriceUpdate("binance", "BTCUSDT", NOW + 1_000 * s, 50.0), NOW)
        await writer.write()
        await same_rings(redis, marks)

        # A restart: a new ingest's candles start empty, and take the kept ones back.
        restarted = marks_with([(NOW + 100_500, 70.0)])
        await CandleWriter(redis, restarted).write()
        minute = restarted.ring("BTCUSDT", TIERS[3])
        assert minute is not None and minute[:, 1:].tolist() == [
            [100.0, 159.0, 100.0, 159.0],
            [160.0, 189.0, 50.0, 70.0],
        ]
        await same_rings(redis, restarted)
    finally:
        await redis.aclose()


async def test_an_outage_keeps_the_changes_until_redis_answers(redis_server: RedisServer) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        marks = marks_with([(NOW, 100.0)])
        writer = CandleWriter(redis, marks)
        await writer.write()
        redis_server.kill()
        marks.apply(MarkPriceUpdate("binance", "BTCUSDT", NOW + 5_000, 101.0), NOW)
        await writer.write()
        assert not writer.state.up and writer.state.last_error, "the failure is on record"
        redis_server.start()  # empty: no persistence
        await writer.write()
        assert writer.state.up
        await same_rings(redis, marks)  # the whole buffer, not only the slots changed
        second = await read_ring(redis, "BTCUSDT", TIERS[0])
        assert second is not None and second[:, 4].tolist() == [100.0, 101.0]
    finally:
        await redis.aclose()
