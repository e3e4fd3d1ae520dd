"""The event log repairs what Redis acknowledged and then lost, against a real
redis-server: a failover to a replica that had not yet received the last writes is
played as an entry gone from the end of a stream, followed by an outage (the server
paused); once Redis answers again the log writes the lost liquidations again, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from hub.analytics.processor import LiquidationProcessor, ProcessorConfig
from hub.analytics.rows import Named, rows_of
from hub.models import LiquidationEvent
from hub.service.history import ALIVE_FIELD, RedisHistory
from hub.storage.event_log import RedisEventLog, read_all, stream_key
from hub.tasks import cancel_and_wait
from tests.conftest import eventually
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)
SYMBOL = "BTCUSDT"
FIRST = LiquidationEvent("binance", SYMBOL, "long", 100.0, 1.0, 100.0, 1_700_000_000_000)


def event(n: int) -> LiquidationEvent:
    return msgspec.structs.replace(FIRST, price=100.0 + n, time=FIRST.time + n)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    # As the hub's own clients: a paused server is a timeout, never a wait for ever.
    client = Redis.from_url(redis_server.url, socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
    yield client
    await client.aclose()


async def test_liquidations_redis_lost_in_a_failover_are_written_again(
    redis: Redis, redis_server: RedisServer
) -> None:
    held: list[tuple[int, LiquidationEvent]] = []

    def holdings() -> dict[str, Named]:
        return {SYMBOL: rows_of(held)}

    log = RedisEventLog(redis, holdings)
    await log.claim()
    writer = asyncio.create_task(log.run(check_interval=0.1))
    key = stream_key(SYMBOL)
    try:
        for batch in ((1, 2, 3), (4, 5)):
            for n in batch:
                held.append((n, event(n)))
                log.append(n, event(n))
            await asyncio.wait_for(log.flushed(), 5)
        entries = await redis.xrange(key)
        assert len(entries) == 2, entries
        # Acknowledged, then lost with the old master: the replica never had it.
        await redis.xdel(key, entries[-1][0])
        await redis.execute_command("XSETID", key, entries[0][0])

        await asyncio.to_thread(redis_server.pause)
        try:
            held.append((6, event(6)))
            log.append(6, event(6))
            await eventually(lambda: not log.status.connected, within=10)
        finally:
            await asyncio.to_thread(redis_server.resume)
        await eventually(lambda: log.status.connected and log.status.buffered == 0, within=10)

        logged = await read_all(redis, SYMBOL)
        assert sorted(logged.rows.arrival.tolist()) == [1, 2, 3, 4, 5, 6], "each once"
        assert log.status.repaired == 2, f"expected 2 written again, seen {log.status.repaired}"
    finally:
        await cancel_and_wait([writer])


async def test_a_failed_write_retried_with_later_rows_after_a_repair_writes_each_once(
    redis: Redis,
) -> None:
    """The repair writes again up to the last row a failed write tried; the retry of that
    write, which took in what arrived meanwhile, must not write those rows a second time.
    The write fails on the stream itself (as on a dead shard while the rest answers):
    the stream is set aside and a string put in its place."""
    held: list[tuple[int, LiquidationEvent]] = []
    log = RedisEventLog(redis, lambda: {SYMBOL: rows_of(held)})
    await log.claim()
    writer = asyncio.create_task(log.run(check_interval=0.1))
    key = stream_key(SYMBOL)
    try:
        for n in (1, 2, 3):
            held.append((n, event(n)))
            log.append(n, event(n))
            await asyncio.wait_for(log.flushed(), 5)
        await redis.rename(key, "aside")
        await redis.set(key, "not a stream")
        held.append((4, event(4)))
        log.append(4, event(4))  # its write fails
        await eventually(lambda: not log.status.connected, within=10)
        held.append((5, event(5)))
        log.append(5, event(5))  # buffered behind it
        await redis.delete(key)
        await redis.rename("aside", key)
        await eventually(lambda: log.status.connected and log.status.buffered == 0, within=10)

        logged = sorted((await read_all(redis, SYMBOL)).rows.arrival.tolist())
        assert logged == [1, 2, 3, 4, 5], f"expected each once, seen {logged}"
        assert log.status.repaired == 1, f"expected 4 written again, seen {log.status.repaired}"
    finally:
        await cancel_and_wait([writer])


async def test_the_whole_checkpoint_is_written_again_after_an_outage(redis: Redis) -> None:
    """What the checkpoint stored before an outage may be gone with a failover: the
    next checkpoint carries every field, not only those that changed since."""
    processor = LiquidationProcessor(ProcessorConfig(), epoch="e1")
    now = FIRST.time + 1_000
    processor.track(SYMBOL, FIRST.time)
    history = RedisHistory(redis, 86_400_000, dict)
    await history.start()
    for n in range(3):
        accepted, _, arrival = processor.apply(event(n), now)
        assert accepted is not None
        history.append(arrival, accepted)
    first = await history.checkpoint(processor, now)
    assert first, "expected a first checkpoint"
    history.stored(first)
    unchanged = await history.checkpoint(processor, now)
    assert unchanged == {}, f"expected nothing new, seen {sorted(unchanged or {})}"

    history.log.failed(ConnectionError("a failover"))  # as the writer records an outage
    again = await eventually_checkpoint(history, processor, now)
    expected = set(first) - {ALIVE_FIELD}  # written on its own schedule
    assert expected <= set(again), f"expected {sorted(expected)} again, seen {sorted(again)}"


async def eventually_checkpoint(
    history: RedisHistory, processor: LiquidationProcessor, now: int
) -> dict[str, bytes]:
    """The next checkpoint once the outage's backoff lets it be tried."""
    found: dict[str, bytes] = {}

    async def taken() -> bool:
        fields = await history.checkpoint(processor, now)
        found.update(fields or {})
        return bool(fields)

    await eventually(taken, within=10)
    return found
