"""The ingest lease and its fencing token against a real redis-server: one holder at a
time, renewal, loss, taking back a lapsed lease nobody took, and a deposed holder's
publishes, checkpoint and event log writes refused by Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from redis.asyncio import Redis

from hub.errors import Fenced
from hub.fanout.broker_redis import RedisBroker
from hub.models import LiquidationEvent
from hub.service.leadership import Lease
from hub.storage.event_log import RedisEventLog, stream_key
from hub.storage.layout import FENCE_KEY, LEASE_KEY, state_key
from hub.tasks import cancel_and_wait
from tests.conftest import eventually
from tests.redis_server import RedisServer
from tests.test_broker_redis import Collector, subscribed

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_one_holder_at_a_time_and_each_holder_a_larger_token(redis: Redis) -> None:
    first, second = Lease(redis, 5_000), Lease(redis, 5_000)
    fence = await first.take()
    assert fence is not None and fence.token == 1
    assert await second.take() is None, "expected the lease held by the first"
    assert await redis.get(LEASE_KEY) == first.holder.encode()

    await first.give_back()
    taken = await second.take()
    assert taken is not None and taken.token == 2, f"expected token 2, seen {taken}"
    await first.give_back()  # not its lease any more: nothing happens
    assert await redis.get(LEASE_KEY) == second.holder.encode()


async def test_a_holder_keeps_the_lease_by_renewing_it(redis: Redis) -> None:
    holder, standby = Lease(redis, 300), Lease(redis, 300)
    await holder.take()
    holding = asyncio.create_task(holder.hold())
    try:
        for _ in range(5):  # five lease periods
            await asyncio.sleep(0.3)
            assert await standby.take() is None, "expected the renewed lease still held"
        assert not holding.done()
    finally:
        await cancel_and_wait([holding])


async def test_a_lease_taken_over_is_lost(redis: Redis) -> None:
    holder, usurper = Lease(redis, 300), Lease(redis, 300)
    await holder.take()
    await asyncio.sleep(0.5)  # lapsed without renewal
    assert await usurper.take() is not None
    await asyncio.wait_for(holder.hold(), 5)  # returns: lost


async def test_a_lapsed_lease_nobody_took_is_taken_back_with_its_token(redis: Redis) -> None:
    holder, standby = Lease(redis, 300), Lease(redis, 300)
    fence = await holder.take()
    assert fence is not None
    await asyncio.sleep(0.5)  # lapsed (Redis unreachable for longer than the lease, say)
    assert not await redis.exists(LEASE_KEY)
    holding = asyncio.create_task(holder.hold())
    try:
        await eventually(lambda: redis.exists(LEASE_KEY))
        assert await redis.get(FENCE_KEY) == str(fence.token).encode(), "the same token"
        assert await standby.take() is None
        assert not holding.done(), "expected the lease kept, not lost"
    finally:
        await cancel_and_wait([holding])


async def test_a_deposed_holder_publishes_nothing_and_moves_no_checkpoint(
    redis_server: RedisServer, redis: Redis
) -> None:
    old, new = RedisBroker(redis_server.url), RedisBroker(redis_server.url)
    listener = RedisBroker(redis_server.url)
    await listener.subscribe(["hub:{BTCUSDT}"])
    collector = Collector(listener)
    try:
        await eventually(subscribed(redis, "hub:{BTCUSDT}"))
        old.fence = await Lease(old.redis, 300).take()
        await old.publish_many([("hub:{BTCUSDT}", b"old 1")], {"pos": b"1"})
        assert await collector.next() == ("hub:{BTCUSDT}", b"old 1")
        assert await redis.hget(state_key("pos"), "pos") == b"1"

        await asyncio.sleep(0.5)  # the old holder paused past its lease; another took it
        new.fence = await Lease(new.redis, 300).take()
        assert new.fence is not None
        with pytest.raises(Fenced):
            await old.publish_many([("hub:{BTCUSDT}", b"old 2")], {"pos": b"2"})
        with pytest.raises(Fenced):
            await old.publish("hub:{BTCUSDT}", b"old 3")
        await new.publish_many([("hub:{BTCUSDT}", b"new 1")], {"pos": b"7"})
        assert await collector.next() == ("hub:{BTCUSDT}", b"new 1"), "expected no old message"
        assert await redis.hget(state_key("pos"), "pos") == b"7"
    finally:
        await collector.stop()
        for broker in (old, new, listener):
            await broker.close()


async def test_a_deposed_holder_writes_nothing_to_the_event_log(redis: Redis) -> None:
    log = RedisEventLog(redis, dict)
    log.fence = await Lease(redis, 300).take()
    await log.claim()
    event = LiquidationEvent("binance", "BTCUSDT", "long", 100.0, 1.0, 100.0, 1_700_000_000_000)
    log.append(1, event)
    await log.write_pending()
    assert await redis.xlen(stream_key("BTCUSDT")) == 1

    await asyncio.sleep(0.5)
    assert await Lease(redis, 300).take() is not None  # another ingest took over
    log.append(2, msgspec.structs.replace(event, price=101.0, time=event.time + 1))
    with pytest.raises(Fenced):
        await log.write_pending()
    assert await redis.xlen(stream_key("BTCUSDT")) == 1, "expected the deposed write refused"
    await redis.delete("hub:instance")  # as if Redis lost the data: the log would rewrite
    with pytest.raises(Fenced):
        await log.write_pending()
    assert await redis.xlen(stream_key("BTCUSDT")) == 1, "expected no rewrite by the deposed"
