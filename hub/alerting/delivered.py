"""Which alert ids each sink already has, so that none is sent to a sink twice, also across
an `ingest` restart.

Three backings, chosen by what the process has: Redis (REDIS_URL: a sorted set per sink,
`hub:alerts:delivered:{sink}`, shared by a standby that takes over), else a small file per
sink under HEATMAP_DATA_DIR (`alerts-delivered/{sink}.txt`, one id a line), else memory only
(HEATMAP_DATA_DIR=off: a restart may send an alert of its last minute again). Each keeps the
last `KEEP` ids per sink: alerts are news for a minute (HEATMAP_ALERT_MAX_AGE_MS), so an id
older than thousands of alerts never comes back. An id is recorded once the sink took it
(2xx): a crash between the two can send it again, never lose it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("hub.alerts")
KEEP = 10_000
REDIS_KEY = "hub:alerts:delivered:{sink}"


class DeliveredIds:
    """In memory; the other backings add persistence on top of it."""

    kind = "memory"

    def __init__(self) -> None:
        self._ids: dict[str, OrderedDict[str, None]] = {}

    def _of(self, sink: str) -> OrderedDict[str, None]:
        return self._ids.setdefault(sink, OrderedDict())

    async def seen(self, sink: str, alert_id: str) -> bool:
        return alert_id in self._of(sink)

    async def add(self, sink: str, alert_id: str, time_ms: int) -> None:
        ids = self._of(sink)
        ids[alert_id] = None
        while len(ids) > KEEP:
            ids.popitem(last=False)


class FileDeliveredIds(DeliveredIds):
    kind = "file"

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = os.path.join(directory, "alerts-delivered")
        self._lines: dict[str, int] = {}

    def _path(self, sink: str) -> str:
        return os.path.join(self.directory, f"{sink}.txt")

    def _of(self, sink: str) -> OrderedDict[str, None]:
        if sink not in self._ids:
            ids: OrderedDict[str, None] = OrderedDict()
            try:
                with open(self._path(sink), encoding="utf-8") as file:
                    lines = file.read().splitlines()
            except FileNotFoundError:
                lines = []
            for line in lines[-KEEP:]:
                ids[line] = None
            self._ids[sink] = ids
            self._lines[sink] = len(lines)
        return self._ids[sink]

    async def add(self, sink: str, alert_id: str, time_ms: int) -> None:
        await super().add(sink, alert_id, time_ms)
        await asyncio.to_thread(self._write, sink, alert_id)

    def _write(self, sink: str, alert_id: str) -> None:
        try:
            os.makedirs(self.directory, exist_ok=True)
            if self._lines[sink] >= 2 * KEEP:  # compact: the file keeps what memory keeps
                temporary = self._path(sink) + ".new"
                with open(temporary, "w", encoding="utf-8") as file:
                    file.write("".join(f"{i}\n" for i in self._ids[sink]))
                os.replace(temporary, self._path(sink))
                self._lines[sink] = len(self._ids[sink])
            else:
                with open(self._path(sink), "a", encoding="utf-8") as file:
                    file.write(f"{alert_id}\n")
                self._lines[sink] += 1
        except OSError as error:
            log.warning("alerts: cannot record a delivery in %s: %s", self.directory, error)


class RedisDeliveredIds(DeliveredIds):
    kind = "redis"

    def __init__(self, redis: Redis) -> None:
        super().__init__()
        self.redis = redis

    async def seen(self, sink: str, alert_id: str) -> bool:
        if await super().seen(sink, alert_id):
            return True
        try:
            return await self.redis.zscore(REDIS_KEY.format(sink=sink), alert_id) is not None
        except (RedisError, OSError):
            return False  # Redis down: memory knows this process's deliveries

    async def add(self, sink: str, alert_id: str, time_ms: int) -> None:
        await super().add(sink, alert_id, time_ms)
        key = REDIS_KEY.format(sink=sink)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(key, {alert_id: time_ms})
                pipe.zremrangebyrank(key, 0, -KEEP - 1)
                await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("alerts: cannot record a delivery in Redis: %s", error)
