"""Redis Cluster, with real processes (issue 26's acceptance).

Three masters with a replica each, on loopback, quick to fail over (hub/tests/redis_server
.py: a master unreachable for 1 s is failed). The processes are given one node's plain
`redis://` URL and find out it is a cluster. First the keys: a symbol's topic, event
stream, archive, checkpoint and token copy share one hash slot, and a flush over many
symbols lands on every shard. Then an `ingest` fed by the Binance look-alike and two `web`
processes with a WebSocket client each: while the source keeps sending, the master that
owns BTCUSDT's slot is paused (SIGSTOP) for 6 s, twice, then killed. After each fault
every `web` is subscribed on the slot's new owner and the clients get liquidations sent
after it; once the source stops, each client's heatmap equals what `ingest` published and
no client saw a silent seq gap or a repeat (a snapshot resets a gap, a liquidation
published while the slot had no master is lost as documented, as a seq jump)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from hub.config import load_settings
from hub.errors import ConfigError, Fenced
from hub.fanout.broker import topic_for
from hub.fanout.broker_redis import RESYNC_TOPIC, RedisBroker
from hub.service.leadership import Lease
from hub.storage.layout import (
    GLOBAL,
    Layout,
    archive_key,
    stamp_fences,
    state_key,
    stream_key,
    tagged,
)
from tests.conftest import eventually
from tests.fakes.binance_server import FakeBinance
from tests.redis_server import ClusterNode, ClusterServers
from tests.test_e2e_scale_out import Client, Cluster, Injector, clients, settle
from tests.test_e2e_scale_out import two_webs_with_a_client_each as webs_with_clients
from tests.test_e2e_sentinel_faults import (
    assert_losses_show,
    check_channels,
    published_again,
    source,
    strike,
)
from tests.test_e2e_standby import warm_takeover

__all__ = ["clients"]  # a fixture
pytestmark = pytest.mark.timeout(300)
SYMBOL_TOPIC = topic_for("heatmap:BTCUSDT")
HOLD = 6.0  # seconds a master stays paused: well past the cluster's 1 s node timeout


@pytest.fixture
def servers() -> Iterator[ClusterServers]:
    try:
        cluster = ClusterServers()
        cluster.start()
    except (RuntimeError, OSError) as error:
        pytest.fail(f"cannot start a Redis Cluster: {error}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def client(servers: ClusterServers) -> AsyncIterator[RedisCluster]:
    redis = RedisCluster.from_url(servers.url)
    await redis.initialize()
    yield redis
    await redis.aclose()


@pytest.mark.parametrize("url", ["redis+cluster://10.0.0.1:7000", "rediss+cluster://h:7000/0"])
def test_a_url_may_say_it_names_a_cluster(url: str) -> None:
    assert load_settings({"REDIS_URL": url}).redis_url == url
    with pytest.raises(ConfigError, match="redis\\+cluster://"):
        load_settings({"REDIS_URL": "cluster://10.0.0.1:7000"})


def test_a_symbol_s_keys_share_one_slot() -> None:
    for symbol in ("BTCUSDT", "1000PEPEUSDT", GLOBAL):
        names = [stream_key(symbol), archive_key(symbol), state_key(symbol)]
        topic = topic_for(f"heatmap:{symbol}:1h")
        slots = {key_slot(name.encode()) for name in [*names, topic]}
        assert len(slots) == 1, f"expected one slot for {symbol}'s {[*names, topic]}, seen {slots}"


async def test_a_fenced_flush_over_many_symbols_reaches_every_shard(
    servers: ClusterServers, client: RedisCluster
) -> None:
    symbols = [f"S{i}USDT" for i in range(60)]
    publisher = RedisBroker(servers.url)
    listener = RedisBroker(servers.url.replace("redis://", "redis+cluster://"))
    try:
        assert publisher.layout.cluster, "expected the plain URL of a node taken for a cluster"
        assert listener.layout.cluster, "expected redis+cluster:// taken for a cluster"
        await listener.subscribe(topic_for(f"x:{s}") for s in symbols)
        got: list[tuple[str, bytes]] = []

        async def listen() -> None:
            async for item in listener.messages():
                got.append(item)

        reading = asyncio.create_task(listen())
        await eventually(lambda: listener.status().connected, within=20)
        lease = Lease(publisher.redis)
        fence = await lease.take()
        assert fence is not None, "expected the lease free"
        publisher.fence = fence
        messages = [(topic_for(f"x:{s}"), s.encode()) for s in symbols]
        state = {s: f"at {s}".encode() for s in symbols} | {"~coverage": b"{}"}
        await publisher.publish_many(messages, state)
        await eventually(lambda: len(got) >= len(symbols), seen=lambda: len(got))
        assert sorted(got) == sorted(messages), "expected each topic's message once"
        owners = {owner_of(servers, state_key(s)).port for s in symbols}
        assert len(owners) == servers.masters, f"expected every shard written, seen {owners}"
        for symbol in symbols:
            held = await client.hget(state_key(symbol), symbol)
            assert held == f"at {symbol}".encode(), f"{symbol}'s checkpoint: {held!r}"
        assert await client.hget(state_key(GLOBAL), "~coverage") == b"{}"

        # A newer token raised on every slot (as a new holder does before it reads the
        # history): the old holder's flush is refused on all of them, and nothing lands.
        await client.delete("hub:{ingest}:lease")
        newer = await Lease(client).take()
        assert newer is not None and newer.token > fence.token
        await stamp_fences(client, Layout(cluster=True), symbols, newer.token)
        with pytest.raises(Fenced):
            await publisher.publish_many(messages, {s: b"stale" for s in symbols})
        # Two symbols of one slot stamped together, then written apart: refused too.
        first, second = same_slot_pair()
        await stamp_fences(client, Layout(cluster=True), [first, second], newer.token)
        for alone in (first, second):
            with pytest.raises(Fenced):
                await publisher.publish_many([], {alone: b"stale"})
            assert await client.hget(state_key(alone), alone) is None
        for symbol in symbols:
            assert await client.hget(state_key(symbol), symbol) == f"at {symbol}".encode()
        assert len(got) == len(symbols), "expected nothing published by the deposed holder"
        assert RESYNC_TOPIC not in [topic for topic, _ in got]
        reading.cancel()
    finally:
        await publisher.close()
        await listener.close()


def same_slot_pair() -> tuple[str, str]:
    """Two symbols whose keys share a hash slot."""
    seen: dict[int, str] = {}
    for n in itertools.count():
        symbol = f"P{n}USDT"
        slot = key_slot(tagged(symbol).encode())
        if slot in seen:
            return seen[slot], symbol
        seen[slot] = symbol
    raise AssertionError("unreachable")


# -- the deployment under faults ----------------------------------------------------------


@pytest.fixture
async def hub(
    tmp_path: Path, servers: ClusterServers, fake_binance: FakeBinance
) -> AsyncIterator[Cluster]:
    deployment = Cluster(tmp_path, servers.nodes[0], fake_binance)
    try:
        yield deployment
    finally:
        await deployment.close()
        deployment.print_logs()


async def subscribers_on(node: ClusterNode, topic: str) -> int:
    redis = Redis(port=node.port)
    try:
        reply = await redis.execute_command("PUBSUB", "SHARDNUMSUB", topic)
        return int(reply[1])
    except (OSError, Exception):
        return 0
    finally:
        await redis.aclose()


async def fault(
    servers: ClusterServers,
    events: Injector,
    clients: list[Client],
    label: str,
    hold: float | None,
) -> None:
    """Pause BTCUSDT's slot owner for `hold` seconds (None: kill it); wait until another
    node owns the slot, every `web` is subscribed there, and both clients received a
    liquidation sent after the fault."""
    owner = servers.owner(SYMBOL_TOPIC)
    assert owner is not None, "expected a settled cluster before the fault"
    last = events.times[-1]
    started = time.monotonic()
    resumed = await strike(owner, hold)
    try:
        seen: list[int] = []

        async def moved() -> bool:
            new = await asyncio.to_thread(servers.owner, SYMBOL_TOPIC)
            seen.append(0 if new is None else new.port)
            return seen[-1] not in (0, owner.port)

        await eventually(moved, within=60, seen=lambda: seen[-3:])
        new_owner = next(node for node in servers.nodes if node.port == seen[-1])
        promoted = time.monotonic() - started
        counts: list[int] = []

        async def webs_subscribed() -> bool:
            # Both webs: the count is theirs (ingest subscribes to no symbol's topic).
            counts.append(await subscribers_on(new_owner, SYMBOL_TOPIC))
            return counts[-1] >= 2

        await eventually(webs_subscribed, within=60, seen=lambda: counts[-3:])
        subscribed = time.monotonic() - started
        await published_again(clients, last)
        print(
            f"{label}: slot owner {owner.port} -> {new_owner.port} after {promoted:.2f} s, "
            f"both webs subscribed there after {subscribed:.2f} s, clients got a new "
            f"liquidation after {time.monotonic() - started:.2f} s"
        )
        for one in clients:
            check_channels(one)
    finally:
        if resumed is not None:
            await resumed
        else:  # back as the new master's replica (its nodes.conf remembers the cluster)
            await asyncio.to_thread(owner.start)
        await eventually(lambda: asyncio.to_thread(_all_ok, servers), within=60)


def owner_of(servers: ClusterServers, key: str) -> ClusterNode:
    owner = servers.owner(key)
    assert owner is not None, f"expected a master serving {key}"
    return owner


def _all_ok(servers: ClusterServers) -> bool:
    """Every node answers and sees the cluster whole again (a paused master back, as a
    replica): the next fault starts from a settled cluster."""
    return all(node.running for node in servers.nodes) and all(
        ClusterServers.state_ok(node) for node in servers.nodes
    )


async def test_a_slot_owner_paused_or_killed_repeats_nothing_and_loses_nothing_silently(
    servers: ClusterServers, hub: Cluster, clients: list[Client], fake_binance: FakeBinance
) -> None:
    await hub.start_ingest()
    webs, a, b = await webs_with_clients(hub, clients)
    events = Injector(fake_binance)
    await events.inject(10, pause=0.01)
    hub.redis_server = owner_of(servers, stream_key("BTCUSDT"))
    for one, web in ((a, webs[0]), (b, webs[1])):
        await settle(hub, web, one, len(events.times))
    stop = asyncio.Event()
    sending = asyncio.create_task(source(events, stop))
    try:
        for round_ in range(2):
            await fault(servers, events, [a, b], f"pause {round_ + 1}", HOLD)
        await fault(servers, events, [a, b], "kill", None)
    finally:
        stop.set()
        await sending
    stopped = time.monotonic()
    hub.redis_server = owner_of(servers, stream_key("BTCUSDT"))  # where the log is read back
    for one, web in ((a, webs[0]), (b, webs[1])):
        await settle(hub, web, one, len(events.times), within=60)
        check_channels(one)
    print(
        f"{len(events.times)} liquidations; every client settled "
        f"{time.monotonic() - stopped:.2f} s after the source stopped"
    )
    # Both show ingest's heatmap (a diff may still follow the last event: clusters are
    # found again at their own pace, so one client may hold it a moment before the other).
    await eventually(
        lambda: a.heatmap.view() == b.heatmap.view(), seen=lambda: (a.heatmap.seq, b.heatmap.seq)
    )
    for one in (a, b):
        assert_losses_show(one, events.times)
    logged = await hub.log_rows()
    times = Counter(logged.time.tolist())
    assert times == Counter(events.times), (
        f"expected the event log to hold the {len(events.times)} liquidations once each, "
        f"seen {len(logged)}: repeated {[t for t, n in times.items() if n > 1]}, "
        f"missing {sorted(set(events.times) - set(times))}"
    )


async def test_a_standby_follows_the_leader_over_the_shards_and_takes_over_warm(
    servers: ClusterServers, hub: Cluster, clients: list[Client], fake_binance: FakeBinance
) -> None:
    # The standby reads every symbol's checkpoint and log tail from the shard owning it.
    hub.redis_server = owner_of(servers, stream_key("BTCUSDT"))  # where the log is read
    await warm_takeover(hub, clients, fake_binance)
