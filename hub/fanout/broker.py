"""The broker interface: topics of encoded messages between processors and fan-out.

A backend carries opaque bytes; it never decodes or re-encodes them. `serve` uses the
in-memory backend, `ingest`/`web` (or `serve` with REDIS_URL) the Redis one.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

import msgspec

TOPIC_PREFIX = "hub:"
RESYNC_TOPIC = "hub:~resync"
"""Yielded by `messages()` after a reconnect: messages may have been missed before it."""


def topic_for(channel: str) -> str:
    """One topic per symbol (and one for `*` channels), named with the symbol as a hash
    tag, so a Redis Cluster shards by symbol and keeps the topic with the symbol's keys
    (hub.storage.layout)."""
    symbol = channel.split(":", 2)[1]
    return f"{TOPIC_PREFIX}{{{symbol}}}"


def topic_tag(topic: str) -> str:
    """The hash tag of a topic: the symbol (or `*`) whose topic it is, or the name of a
    service topic (`~control` …)."""
    return topic[topic.index("{") + 1 : topic.index("}")]


class BrokerStatus(msgspec.Struct):
    kind: str
    connected: bool
    lag_ms: float | None = None
    published: int = 0
    delivered: int = 0


class Broker(abc.ABC):
    # Whether topics may reach a subscriber over separate links (a sharded Redis Cluster):
    # one topic heard then proves nothing about another, so liveness is proven per topic.
    sharded_topics = False

    @abc.abstractmethod
    async def publish(self, topic: str, payload: bytes) -> None: ...

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes]], state: Mapping[str, bytes] | None = None
    ) -> None:
        """Publish in order; a backend may batch them into one round trip. `state` (the
        processor's checkpoint) is stored, where the backend can store, before the
        messages and with them, so it never lags behind what subscribers have seen."""
        for topic, payload in messages:
            await self.publish(topic, payload)

    async def subscribe(self, topics: Iterable[str]) -> None:
        """Receive these topics too (a backend that delivers every topic ignores this)."""
        return None

    async def resubscribe(self) -> None:
        """Renew the subscriptions (a backend that cannot lose them ignores this); the
        messages then carry RESYNC_TOPIC, as after a reconnect."""
        return None

    @abc.abstractmethod
    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        """Every message published on any topic, in publish order per topic."""

    @abc.abstractmethod
    def status(self) -> BrokerStatus: ...

    async def close(self) -> None:
        return None
