"""The broker interface: topics of encoded messages between processors and fan-out.

A backend carries opaque bytes; it never decodes or re-encodes them. `serve` uses the
in-memory backend, `ingest`/`web` (or `serve` with REDIS_URL) the Redis one.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator

import msgspec

TOPIC_PREFIX = "hub:"


def topic_for(channel: str) -> str:
    """One topic per symbol (and one for `*` channels), so a cluster can shard by symbol."""
    symbol = channel.split(":", 2)[1]
    return f"{TOPIC_PREFIX}{symbol}"


class BrokerStatus(msgspec.Struct):
    kind: str
    connected: bool
    lag_ms: float | None = None
    published: int = 0
    delivered: int = 0


class Broker(abc.ABC):
    @abc.abstractmethod
    async def publish(self, topic: str, payload: bytes) -> None: ...

    @abc.abstractmethod
    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        """Every message published on any topic, in publish order per topic."""

    @abc.abstractmethod
    def status(self) -> BrokerStatus: ...

    async def close(self) -> None:
        return None
