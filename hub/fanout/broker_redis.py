"""Redis broker: topics between `ingest` and any number of `web` processes.

Owns one redis-py asyncio client (also exposed as `.redis`, for streams and keys) and,
while `messages()` is iterated, one pub/sub connection for the subscribed topics.

Sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis >= 7) is used when the server has it: a shard
channel belongs to the hash slot of its name, so in a Redis Cluster each `hub:{SYMBOL}`
topic is carried by one shard instead of being broadcast to every node, and the load
spreads by symbol. On a single server it behaves like plain pub/sub. In a cluster, the
client is redis-py's RedisCluster (hub.fanout.redis_connect) and its sharded pub/sub
(`ClusterPubSub`: a link to each shard that owns a subscribed topic); a flush is one
fenced script per slot (hub.storage.layout). Older servers get
PUBLISH/SUBSCRIBE; both ends read the version from the same server, so they agree.

`url` may name the master of a Sentinel deployment (hub.fanout.redis_connect): each new
connection then goes to the master the sentinels name, so the reconnect after a failover
reaches the new one. While `fence` is set (this process holds the ingest lease), a flush
is one script that checks the fencing token before it stores the checkpoint and publishes
(hub.storage.fence): a deposed ingest's flush is refused whole, as `Fenced`.

On disconnect: redis-py's own retries are off, so no reconnect happens behind our back
and hides a gap. `publish` raises `BrokerUnavailable` at once and buffers nothing (the
caller owns what must not be lost). `messages()` never ends: it reconnects with full-jitter
backoff, re-subscribes every topic, then yields `(RESYNC_TOPIC, b"")`, because pub/sub
does not replay what was published meanwhile. A periodic PING on the subscriber connection
detects a half-open connection, and its round trip (queued behind undelivered messages)
is `lag_ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.maint_notifications import MaintNotificationsConfig

from hub.errors import BrokerUnavailable, Fenced
from hub.fanout.broker import RESYNC_TOPIC, Broker, BrokerStatus, topic_tag
from hub.fanout.redis_connect import connect
from hub.feeds.backoff import Backoff
from hub.storage.fence import Fence, raise_fenced
from hub.storage.layout import (
    FENCE_CHECK,
    AnyRedis,
    GroupedScript,
    layout_of,
    state_key,
    state_owner,
)

__all__ = ["RESYNC_TOPIC", "RedisBroker"]


_FAILURES = (RedisError, OSError)
_LAST_PING = b"last"  # ends what a renewed link held (`_read_to_end`)
# A fenced flush (of the symbols of one slot): the tokens checked, the checkpoint's fields
# set, the messages published, all or nothing. KEYS: the tokens, then the state hashes;
# ARGV[3] the command, then for each state hash its field count and pairs, then the
# (topic, payload) pairs.
_FENCED_PUBLISH = (
    FENCE_CHECK
    + """
local a = 4
for k = fences + 1, #KEYS do
  for _ = 1, tonumber(ARGV[a]) do
    redis.call('HSET', KEYS[k], ARGV[a + 1], ARGV[a + 2])
    a = a + 2
  end
  a = a + 1
end
for j = a, #ARGV, 2 do
  redis.call(ARGV[3], ARGV[j], ARGV[j + 1])
end
return 1
"""
)


class RedisBroker(Broker):
    def __init__(
        self,
        url: str,
        *,
        backoff: Backoff | None = None,
        connect_timeout: float = 1.0,
        command_timeout: float = 2.0,
        ping_interval: float = 5.0,
        pong_timeout: float = 5.0,
    ) -> None:
        # Retry(…, 0): every failure reaches us at once; reconnecting is this class's job.
        # Maintenance notifications (on by default, "auto") make redis-py 8 skip its check
        # of pooled connections, so the first command after a Redis restart would fail.
        self._connection = connect(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=command_timeout,
            retry=Retry(NoBackoff(), 0),
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
            # RESP2: redis-py 8.1 formats every RESP3 push message into a debug string
            # (redis/redis-py#4230), about 50 us per 14 KB message whatever the log level.
            protocol=2,
        )
        self.redis: AnyRedis = self._connection.redis
        self.layout = layout_of(self.redis)
        self.sharded_topics = self.layout.cluster
        # A subscriber retries at least every 2 s: after a failover its clients wait for
        # it, and one connection attempt every 2 s while Redis is away costs nothing.
        self._backoff = backoff or Backoff(base=0.2, cap=2.0, healthy_after=30.0)
        self._ping_interval = ping_interval
        self._pong_timeout = pong_timeout
        self._topics: set[str] = set()
        self._pubsub: PubSub | ClusterPubSub | None = None
        self._unconfirmed: set[str] = set()  # cluster: subscriptions not yet acknowledged
        self._subscribe_lock = asyncio.Lock()  # a topic added mid-reconnect is not lost
        self._sharded: bool | None = None
        self._closed = asyncio.Event()
        self._renew = False
        self._status = BrokerStatus(kind="redis", connected=False)
        # Set while this process holds the ingest lease: its publishes carry the token.
        self.fence: Fence | None = None
        self._fenced_publish = GroupedScript(self.redis, _FENCED_PUBLISH)

    @property
    def sharded(self) -> bool | None:
        """Whether SPUBLISH/SSUBSCRIBE are in use; None until the server was asked."""
        return self._sharded

    async def publish(self, topic: str, payload: bytes) -> None:
        if self.fence is not None:
            await self.publish_many([(topic, payload)])
            return
        loop = asyncio.get_running_loop()
        try:
            command = "SPUBLISH" if await self._use_sharded() else "PUBLISH"
            started = loop.time()
            await self.redis.execute_command(command, topic, payload)
        except _FAILURES as error:
            self._status.connected = False
            raise BrokerUnavailable(f"Redis unavailable, {topic} not published: {error}") from error
        self._status.connected = True
        self._status.lag_ms = (loop.time() - started) * 1000
        self._status.published += 1

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes]], state: Mapping[str, bytes] | None = None
    ) -> None:
        """One pipelined round trip for a flush's worth of messages, in order, the state
        first (commands of one pipeline run in order on the server)."""
        if not messages and not state:
            return
        loop = asyncio.get_running_loop()
        try:
            command = "SPUBLISH" if await self._use_sharded() else "PUBLISH"
            started = loop.time()
            if self.fence is not None:
                await self._publish_fenced(self.fence, command, messages, state or {})
            else:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for owner, fields in _per_owner(state or {}).items():
                        pipe.hset(state_key(owner), mapping=fields)
                    for topic, payload in messages:
                        pipe.execute_command(command, topic, payload)
                    await pipe.execute()
        except Fenced as error:
            raise Fenced(f"{len(messages)} messages refused: {error}") from error
        except _FAILURES as error:
            self._status.connected = False
            raise BrokerUnavailable(
                f"Redis unavailable, {len(messages)} messages not published: {error}"
            ) from error
        self._status.connected = True
        self._status.lag_ms = (loop.time() - started) * 1000
        self._status.published += len(messages)

    async def _publish_fenced(
        self,
        fence: Fence,
        command: str,
        messages: Sequence[tuple[str, bytes]],
        state: Mapping[str, bytes],
    ) -> None:
        """One script per slot (one in all on a single server): see `_FENCED_PUBLISH`."""
        per_owner = _per_owner(state)
        per_tag: dict[str, list[tuple[str, bytes]]] = {}
        for topic, payload in messages:
            per_tag.setdefault(topic_tag(topic), []).append((topic, payload))
        calls = []
        for group in self.layout.groups([*per_owner, *per_tag]):
            owners = [tag for tag in group if tag in per_owner]
            fences = self.layout.fence_keys(group)
            args: list[str | bytes | int] = [fence.token, len(fences), command]
            for owner in owners:
                args.append(len(per_owner[owner]))
                for field, value in per_owner[owner].items():
                    args += [field, value]
            for tag in group:
                for topic, payload in per_tag.get(tag, ()):
                    args += [topic, payload]
            keys = [*fences, *(state_key(o) for o in owners)]
            calls.append((keys, args))
        raise_fenced(await self._fenced_publish(calls))

    async def subscribe(self, topics: Iterable[str]) -> None:
        """Add topics, at any time; while Redis is down they are subscribed on reconnect."""
        async with self._subscribe_lock:
            new = sorted(set(topics) - self._topics)
            self._topics.update(new)
            if new and self._pubsub is not None:
                # On failure the reader sees the same broken connection and re-subscribes all.
                with contextlib.suppress(*_FAILURES):
                    await self._send_subscribe(self._pubsub, new)

    async def resubscribe(self) -> None:
        """Reconnect the pub/sub link and subscribe afresh, within a second (while it is
        down, the reconnect under way does that anyway)."""
        self._renew = self._pubsub is not None

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        """(topic, payload) for subscribed topics; one consumer at a time; ends on close()."""
        resync = False
        while not self._closed.is_set():
            connected_at = asyncio.get_running_loop().time()
            try:
                pubsub = await self._open_pubsub()
                while True:
                    try:
                        reader = (
                            self._read_cluster(pubsub, resync)
                            if isinstance(pubsub, ClusterPubSub)
                            else self._read(pubsub, resync)
                        )
                        async for item in reader:
                            yield item
                        if self._closed.is_set() or isinstance(pubsub, ClusterPubSub):
                            break
                        # Renewing (`resubscribe`): the next link is subscribed before this
                        # one goes, and this one is read to its end, so nothing published
                        # meanwhile is lost (what comes on both, the fan-out drops by seq).
                        # A relay renews when ingest falls silent, which is also when a
                        # new ingest starts publishing.
                        fresh = await self._open_pubsub()
                        try:
                            async for item in self._read_to_end(pubsub):
                                yield item
                        except BaseException:
                            await self._close_pubsub(fresh)
                            raise
                    finally:
                        await self._close_pubsub(pubsub)
                    pubsub, resync = fresh, True
            except _FAILURES:
                self._status.connected = False
                resync = True
            if self._closed.is_set():
                return
            self._backoff.connection_lasted(asyncio.get_running_loop().time() - connected_at)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._backoff.next_delay()):  # cancel-safe on 3.11
                    await self._closed.wait()

    def status(self) -> BrokerStatus:
        return self._status

    async def close(self) -> None:
        self._closed.set()
        self._status.connected = False
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self.redis.aclose()
        if self._connection.sentinel is not None:
            await self._connection.sentinel.aclose()

    async def _use_sharded(self) -> bool:
        if self._sharded is None and self.layout.cluster:
            self._sharded = True  # a cluster is Redis 7 or newer: its pub/sub is sharded
        if self._sharded is None:
            try:
                info: dict[str, Any] = await self.redis.info("server")
                major = int(str(info.get("redis_version", "0")).split(".")[0])
            except ResponseError:  # INFO disabled (some managed services): plain pub/sub
                major = 0
            self._sharded = major >= 7
        return self._sharded

    async def _send_subscribe(self, pubsub: PubSub | ClusterPubSub, topics: Iterable[str]) -> None:
        if self._sharded:
            await pubsub.ssubscribe(*topics)
        else:
            await pubsub.subscribe(*topics)

    async def _open_pubsub(self) -> PubSub | ClusterPubSub:
        await self._use_sharded()
        if isinstance(self.redis, RedisCluster):
            return await self._open_cluster_pubsub(self.redis)
        pubsub = self.redis.pubsub()
        try:
            async with self._subscribe_lock:
                await pubsub.connect()
                if self._topics:
                    await self._send_subscribe(pubsub, sorted(self._topics))
                # Replies come in order: this PING's pong proves the subscriptions are live.
                await pubsub.ping()
                self._pubsub = pubsub
                self._renew = False  # a new link's subscriptions are fresh
        except BaseException:
            await pubsub.aclose()
            raise
        return pubsub

    async def _open_cluster_pubsub(self, cluster: RedisCluster) -> ClusterPubSub:
        """A link per shard that owns a subscribed topic, as the cluster says now (its
        slots read again: this may follow a failover or a moved slot). Live once every
        subscription is acknowledged (`_read_cluster`): no PING reaches every shard's
        link."""
        await cluster.nodes_manager.initialize()
        pubsub = cluster.pubsub()
        try:
            async with self._subscribe_lock:
                self._unconfirmed = set(self._topics)
                if self._topics:
                    await pubsub.ssubscribe(*sorted(self._topics))
                self._pubsub = pubsub
                self._renew = False
        except BaseException:
            await pubsub.aclose()
            raise
        return pubsub

    async def _close_pubsub(self, pubsub: PubSub | ClusterPubSub) -> None:
        async with self._subscribe_lock:
            if self._pubsub is pubsub:
                self._pubsub = None
        await pubsub.aclose()

    async def _read(self, pubsub: PubSub, resync: bool) -> AsyncIterator[tuple[str, bytes]]:
        """Messages from one connection until it fails (raises) or the broker closes."""
        loop = asyncio.get_running_loop()
        ping_sent: float | None = loop.time()  # the one sent by _open_pubsub
        next_ping = 0.0
        while not self._closed.is_set():
            if self._renew:
                self._renew = False
                return  # `messages` opens the next link, then reads this one to its end
            if ping_sent is None and loop.time() >= next_ping:
                await pubsub.ping()
                ping_sent = loop.time()
            deadline = next_ping if ping_sent is None else ping_sent + self._pong_timeout
            # Never 0: a zero timeout can give up before reading what is already buffered.
            wait = min(max(deadline - loop.time(), 0.1), 1.0)  # 1.0: a renewal is noticed
            message = await pubsub.get_message(timeout=wait)
            if message is None:
                # Only silence counts: time spent suspended at a yield is not Redis's fault.
                if ping_sent is not None and loop.time() - ping_sent >= self._pong_timeout:
                    raise RedisConnectionError("Redis did not answer PING on the pub/sub link")
                continue
            kind = message["type"]
            if kind in ("message", "smessage"):
                self._status.delivered += 1
                yield message["channel"].decode(), message["data"]
            elif kind == "pong" and ping_sent is not None:
                self._status.lag_ms = (loop.time() - ping_sent) * 1000
                self._status.connected = True
                ping_sent, next_ping = None, loop.time() + self._ping_interval
                if resync:
                    resync = False
                    yield RESYNC_TOPIC, b""

    async def _read_to_end(self, pubsub: PubSub) -> AsyncIterator[tuple[str, bytes]]:
        """The messages `pubsub` holds up to a PING sent now: Redis answers in order, so
        that is everything it pushed to this link before the link replacing it was
        subscribed. A link that fails or does not answer within the pong timeout is given
        up: what it held is lost, as with any broken link (the resync after a renewal
        has the relay ask for snapshots)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._pong_timeout
        with contextlib.suppress(*_FAILURES):
            await pubsub.ping(_LAST_PING.decode())
            while loop.time() < deadline:
                message = await pubsub.get_message(timeout=max(deadline - loop.time(), 0.1))
                if message is None:
                    continue
                kind = message["type"]
                if kind in ("message", "smessage"):
                    self._status.delivered += 1
                    yield message["channel"].decode(), message["data"]
                elif kind == "pong" and message["data"] == _LAST_PING:
                    return

    async def _read_cluster(
        self, pubsub: ClusterPubSub, resync: bool
    ) -> AsyncIterator[tuple[str, bytes]]:
        """Messages from a cluster's shard links until a subscription is lost (raises) or
        the broker closes. A shard that fails over drops its subscribers, and a slot that
        moves has its subscriptions dropped by the server (`sunsubscribe`): either way
        every topic is subscribed afresh on the owners the cluster names then, and the
        messages carry RESYNC_TOPIC. A shard that only goes silent (paused) is noticed by
        the topics' heartbeats, which ask for the same (`resubscribe`)."""
        loop = asyncio.get_running_loop()
        opened = loop.time()
        if not self._unconfirmed:  # nothing to wait for
            self._status.connected = True
            if resync:
                resync = False
                yield RESYNC_TOPIC, b""
        while not self._closed.is_set():
            if self._renew:
                self._renew = False
                raise RedisConnectionError("renewing the subscriptions")
            if self._unconfirmed and loop.time() - opened >= self._pong_timeout:
                raise RedisConnectionError(
                    f"{len(self._unconfirmed)} subscriptions not acknowledged, e.g. "
                    f"{min(self._unconfirmed)}"
                )
            message = await pubsub.get_sharded_message(timeout=1.0)
            if message is None:
                continue
            kind, topic = message["type"], message["channel"].decode()
            if kind == "smessage":
                self._status.delivered += 1
                yield topic, message["data"]
            elif kind == "ssubscribe" and self._unconfirmed:
                self._unconfirmed.discard(topic)
                if not self._unconfirmed:
                    self._status.connected = True
                    self._status.lag_ms = (loop.time() - opened) * 1000
                    if resync:
                        resync = False
                        yield RESYNC_TOPIC, b""
            elif kind == "sunsubscribe" and topic in self._topics:
                raise RedisConnectionError(f"Redis dropped the subscription to {topic}")


def _per_owner(state: Mapping[str, bytes]) -> dict[str, dict[str, bytes]]:
    """The checkpoint's fields by the state hash they go in (hub.storage.layout)."""
    owners: dict[str, dict[str, bytes]] = {}
    for field, value in state.items():
        owners.setdefault(state_owner(field), {})[field] = value
    return owners
