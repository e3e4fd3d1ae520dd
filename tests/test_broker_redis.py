"""The Redis broker against a real redis-server: round trips, sharded pub/sub, late
subscriptions, and what happens when Redis is killed, paused or restarted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.errors import BrokerUnavailable
from hub.fanout.broker import Broker
from hub.fanout.broker_memory import MemoryBroker
from hub.fanout.broker_redis import RESYNC_TOPIC, RedisBroker
from hub.feeds.backoff import Backoff
from tests.conftest import eventually
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(20)

PAYLOADS = [b"{}", b"\xff\xfe\x00\x80 not utf-8 \xc3\x28", b"", bytes(range(256)) * 256]


class Collector:
    """Drains `broker.messages()` in a task, as the fan-out does."""

    def __init__(self, broker: Broker) -> None:
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(broker))

    async def _run(self, broker: Broker) -> None:
        async for item in broker.messages():
            self.queue.put_nowait(item)

    async def next(self, within: float = 3.0) -> tuple[str, bytes]:
        return await asyncio.wait_for(self.queue.get(), within)

    async def nothing_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.get(), seconds)
            return False
        return True

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


BrokerFactory = Callable[..., RedisBroker]


@pytest.fixture
async def make_broker(redis_server: RedisServer) -> AsyncIterator[BrokerFactory]:
    brokers: list[RedisBroker] = []

    def make(**kwargs: Any) -> RedisBroker:
        kwargs.setdefault("backoff", Backoff(base=0.05, cap=0.2, healthy_after=5))
        broker = RedisBroker(redis_server.url, **kwargs)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        await broker.close()


@pytest.fixture
async def observer(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client for looking at the server from outside the broker."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def shard_subscribers(client: Redis, topic: str) -> int:
    reply = await client.execute_command("PUBSUB", "SHARDNUMSUB", topic)
    return int(reply[1])


def subscribed(client: Redis, topic: str, count: int = 1) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        with contextlib.suppress(OSError, RedisError):
            return await shard_subscribers(client, topic) == count
        return False

    return check


@pytest.fixture(params=["memory", "redis"])
async def pair(
    request: pytest.FixtureRequest, make_broker: BrokerFactory, observer: Redis
) -> AsyncIterator[tuple[Broker, Collector]]:
    """(publisher, collector of a subscriber to `hub:BTCUSDT`) for each backend.

    The memory case starts an unused redis-server too: pytest-asyncio cannot request an
    async fixture conditionally, and a spare server costs a few milliseconds."""
    if request.param == "memory":
        publisher: Broker = MemoryBroker()
        collector = Collector(publisher)
    else:
        publisher, subscriber = make_broker(), make_broker()
        await subscriber.subscribe(["hub:{BTCUSDT}"])
        collector = Collector(subscriber)
        await eventually(subscribed(observer, "hub:{BTCUSDT}"))
    yield publisher, collector
    await collector.stop()


async def test_round_trip_keeps_bytes_intact(pair: tuple[Broker, Collector]) -> None:
    publisher, collector = pair
    for payload in PAYLOADS:
        await publisher.publish("hub:{BTCUSDT}", payload)
    received = [await collector.next() for _ in PAYLOADS]
    assert received == [("hub:{BTCUSDT}", payload) for payload in PAYLOADS]
    assert publisher.status().published == len(PAYLOADS)


async def test_two_brokers_count_and_report_redis(
    make_broker: BrokerFactory, observer: Redis
) -> None:
    publisher, subscriber = make_broker(), make_broker()
    await subscriber.subscribe(["hub:{ETHUSDT}"])
    collector = Collector(subscriber)
    await eventually(subscribed(observer, "hub:{ETHUSDT}"))
    for n in range(5):
        await publisher.publish("hub:{ETHUSDT}", b"%d" % n)
    assert [await collector.next() for _ in range(5)] == [
        ("hub:{ETHUSDT}", b"%d" % n) for n in range(5)
    ]
    sent, got = publisher.status(), subscriber.status()
    assert (sent.kind, sent.connected, sent.published) == ("redis", True, 5)
    assert (got.kind, got.connected, got.delivered) == ("redis", True, 5)
    assert got.lag_ms is not None and got.lag_ms >= 0
    await collector.stop()


async def test_topics_subscribed_later_receive_later_messages(
    make_broker: BrokerFactory, observer: Redis
) -> None:
    publisher, subscriber = make_broker(), make_broker()
    await subscriber.subscribe(["hub:{BTCUSDT}"])
    collector = Collector(subscriber)
    await eventually(subscribed(observer, "hub:{BTCUSDT}"))
    await publisher.publish("hub:{SOLUSDT}", b"before")
    await publisher.publish("hub:{BTCUSDT}", b"marker")
    assert await collector.next() == ("hub:{BTCUSDT}", b"marker")

    await subscriber.subscribe(["hub:{SOLUSDT}", "hub:{BTCUSDT}"])
    await eventually(subscribed(observer, "hub:{SOLUSDT}"))
    await publisher.publish("hub:{SOLUSDT}", b"after")
    await publisher.publish("hub:{BTCUSDT}", b"still")
    assert [await collector.next(), await collector.next()] == [
        ("hub:{SOLUSDT}", b"after"),
        ("hub:{BTCUSDT}", b"still"),
    ]
    assert await collector.nothing_within(0.2)
    await collector.stop()


async def test_resubscribe_renews_the_link_and_says_resync(
    make_broker: BrokerFactory, observer: Redis
) -> None:
    publisher, subscriber = make_broker(), make_broker()
    await subscriber.subscribe(["hub:{BTCUSDT}"])
    collector = Collector(subscriber)
    await eventually(subscribed(observer, "hub:{BTCUSDT}"))
    before = await observer.client_list(_type="pubsub")
    assert len(before) == 1, before

    await subscriber.resubscribe()
    assert await collector.next() == (RESYNC_TOPIC, b"")
    after = await observer.client_list(_type="pubsub")
    assert {c["id"] for c in after}.isdisjoint({c["id"] for c in before}), (
        f"expected a new pub/sub connection, seen {before} then {after}"
    )
    await publisher.publish("hub:{BTCUSDT}", b"still here")
    assert await collector.next() == ("hub:{BTCUSDT}", b"still here")
    await collector.stop()


async def test_resubscribing_loses_no_message_published_meanwhile(
    make_broker: BrokerFactory, observer: Redis
) -> None:
    """A relay renews its link when ingest goes quiet, which is also when a new ingest
    starts publishing (a takeover): the new link is subscribed before the old one goes,
    and the old one read to its end, so every message arrives (twice at most: the fan-out
    drops a repeated seq)."""
    publisher, subscriber = make_broker(), make_broker()
    await subscriber.subscribe(["hub:{BTCUSDT}"])
    collector = Collector(subscriber)
    await eventually(subscribed(observer, "hub:{BTCUSDT}"))
    sent = [str(n).encode() for n in range(600)]

    async def publish() -> None:
        for payload in sent:
            await publisher.publish("hub:{BTCUSDT}", payload)
            await asyncio.sleep(0.001)

    publishing = asyncio.create_task(publish())
    renewals = 0
    while not publishing.done():
        await subscriber.resubscribe()
        renewals += 1
        await asyncio.sleep(0.05)
    await publishing
    seen: list[bytes] = []
    with contextlib.suppress(TimeoutError):  # the assertions below say what is missing
        while sent[-1] not in seen:
            topic, payload = await collector.next(within=10.0)
            if topic != RESYNC_TOPIC:
                seen.append(payload)
    firsts = list(dict.fromkeys(seen))
    held = set(seen)
    missing = [p for p in sent if p not in held]
    assert not missing, (
        f"expected all {len(sent)} after {renewals} renewals; lost {len(missing)}: {missing[:10]}"
    )
    assert firsts == sent, "expected the messages in the order published"
    await collector.stop()


async def test_redis7_uses_sharded_pubsub(make_broker: BrokerFactory, observer: Redis) -> None:
    publisher, subscriber = make_broker(), make_broker()
    await subscriber.subscribe(["hub:{BNBUSDT}"])
    collector = Collector(subscriber)
    await eventually(subscribed(observer, "hub:{BNBUSDT}"))
    plain = observer.pubsub(ignore_subscribe_messages=True)
    await plain.subscribe("hub:{BNBUSDT}")
    assert await observer.execute_command("PUBSUB", "NUMSUB", "hub:{BNBUSDT}") == [
        b"hub:{BNBUSDT}",
        1,
    ]

    await publisher.publish("hub:{BNBUSDT}", b"sharded")
    assert await collector.next() == ("hub:{BNBUSDT}", b"sharded")
    assert publisher.sharded is True and subscriber.sharded is True
    # SPUBLISH reaches shard subscribers only: the plain SUBSCRIBE sees nothing.
    assert await plain.get_message(timeout=0.3) is None
    await plain.aclose()
    await collector.stop()


async def test_servers_before_7_get_plain_pubsub(
    make_broker: BrokerFactory, observer: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    publisher, subscriber = make_broker(), make_broker()

    async def redis_6_info(*args: object) -> dict[str, str]:
        return {"redis_version": "6.2.14"}

    for broker in (publisher, subscriber):
        monkeypatch.setattr(broker.redis, "info", redis_6_info)
    await subscriber.subscribe(["hub:{ADAUSDT}"])
    collector = Collector(subscriber)

    async def plain_subscriber() -> bool:
        reply = await observer.execute_command("PUBSUB", "NUMSUB", "hub:{ADAUSDT}")
        return int(reply[1]) == 1

    await eventually(plain_subscriber)
    assert await shard_subscribers(observer, "hub:{ADAUSDT}") == 0
    await publisher.publish("hub:{ADAUSDT}", b"\x00plain")
    assert await collector.next() == ("hub:{ADAUSDT}", b"\x00plain")
    assert publisher.sharded is False
    await collector.stop()


async def test_killed_redis_restarts_then_resync_and_new_messages(
    redis_server: RedisServer, make_broker: BrokerFactory, observer: Redis
) -> None:
    publisher, subscriber = make_broker(), make_broker()
    await subscriber.subscribe(["hub:{BTCUSDT}"])
    collector = Collector(subscriber)
    await eventually(subscribed(observer, "hub:{BTCUSDT}"))
    await publisher.publish("hub:{BTCUSDT}", b"one")
    assert await collector.next() == ("hub:{BTCUSDT}", b"one")

    redis_server.kill()
    await eventually(lambda: not subscriber.status().connected)
    await subscriber.subscribe(["hub:{ETHUSDT}"])  # added while down: subscribed on reconnect
    redis_server.start()

    # RESYNC comes once the re-subscriptions are live, so what follows is not lost.
    assert await collector.next(within=5) == (RESYNC_TOPIC, b"")
    assert subscriber.status().connected
    await publisher.publish("hub:{BTCUSDT}", b"two")
    await publisher.publish("hub:{ETHUSDT}", b"three")
    assert [await collector.next(), await collector.next()] == [
        ("hub:{BTCUSDT}", b"two"),
        ("hub:{ETHUSDT}", b"three"),
    ]
    assert await collector.nothing_within(0.2)  # exactly one RESYNC per outage
    await collector.stop()


async def test_publish_while_down_raises_quickly_and_recovers(
    redis_server: RedisServer, make_broker: BrokerFactory
) -> None:
    publisher = make_broker()
    await publisher.publish("hub:{BTCUSDT}", b"up")
    redis_server.kill()
    for _ in range(2):  # the stale pooled connection, then a refused one
        with pytest.raises(BrokerUnavailable) as failed:
            await publisher.publish("hub:{BTCUSDT}", b"down")
        # Quickly means from the closed or refused connection, not after a timeout.
        assert "timeout" not in str(failed.value).lower(), f"failed by timing out: {failed.value}"
    assert not publisher.status().connected
    assert publisher.status().published == 1

    redis_server.start()
    await publisher.publish("hub:{BTCUSDT}", b"back")
    assert publisher.status().connected and publisher.status().published == 2


async def test_silent_redis_is_detected_by_ping_and_resynced(
    redis_server: RedisServer, make_broker: BrokerFactory, observer: Redis
) -> None:
    publisher = make_broker()
    subscriber = make_broker(ping_interval=0.1, pong_timeout=0.4, command_timeout=0.5)
    await subscriber.subscribe(["hub:{SOLUSDT}"])
    collector = Collector(subscriber)
    await eventually(lambda: subscriber.status().connected)

    redis_server.pause()  # TCP stays up, nothing answers: only the PING watchdog can tell
    try:
        await eventually(lambda: not subscriber.status().connected)
    finally:
        redis_server.resume()
    assert await collector.next(within=5) == (RESYNC_TOPIC, b"")
    await publisher.publish("hub:{SOLUSDT}", b"alive")
    assert await collector.next() == ("hub:{SOLUSDT}", b"alive")
    await collector.stop()


async def test_close_ends_messages(make_broker: BrokerFactory) -> None:
    subscriber = make_broker()
    await subscriber.subscribe(["hub:{BTCUSDT}"])
    collector = Collector(subscriber)
    await eventually(lambda: subscriber.status().connected)
    await subscriber.close()
    await asyncio.wait_for(collector.task, 10)
    assert not subscriber.status().connected
