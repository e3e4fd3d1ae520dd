"""In-process broker: a bounded queue between the processor and the fan-out.

Bounded, and a full queue makes the publisher wait rather than drop: a dropped diff would
be a seq gap. The fan-out consumer never blocks on clients, so the wait is short.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hub.fanout.broker import Broker, BrokerStatus


class MemoryBroker(Broker):
    def __init__(self, max_pending: int = 100_000) -> None:
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(max_pending)
        self._status = BrokerStatus(kind="memory", connected=True, lag_ms=0.0)

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._queue.put((topic, payload))
        self._status.published += 1

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        while True:
            item = await self._queue.get()
            self._status.delivered += 1
            yield item

    def status(self) -> BrokerStatus:
        return self._status
