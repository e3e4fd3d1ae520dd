"""The recent alerts, for `GET /api/heatmap/alerts` and the page's first paint.

Kept as long as the events (HEATMAP_RETENTION_DAYS), in one of three places: a Redis
stream `hub:alerts` (with REDIS_URL: `web` processes read it; trimmed by the retention on
every append, approximately, as Redis does cheaply), else a JSON Lines file under
HEATMAP_DATA_DIR (`alerts.jsonl`, trimmed when it is read back at start), else memory.
Memory always holds the newest `KEPT` for this process's answers; at real rates (a few
dozen alerts an hour per symbol) that is days of alerts, and it bounds a flood.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Iterable

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.models import Alert
from hub.storage.outage import Outage

log = logging.getLogger("hub.alerts")
KEPT = 20_000
STREAM = "hub:alerts"
_FIELD = b"a"
_PAGE = 500  # stream entries read at a time when a filter skips some
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Alert)


def select(
    alerts: Iterable[Alert], symbol: str | None, kind: str | None, since: int, limit: int
) -> list[Alert]:
    """The first `limit` of `alerts` (newest first) that match."""
    chosen = []
    for alert in alerts:
        if alert.time < since or (symbol and alert.symbol != symbol):
            continue
        if kind and alert.kind != kind:
            continue
        chosen.append(alert)
        if len(chosen) == limit:
            break
    return chosen


class AlertHistory:
    """In memory (the other backings write through it)."""

    kind = "memory"

    def __init__(self) -> None:
        self.recent: deque[Alert] = deque(maxlen=KEPT)
        self._pending: list[Alert] = []

    def append(self, alert: Alert) -> None:
        self.recent.append(alert)
        self._pending.append(alert)

    async def store(self, oldest_ms: int) -> None:
        """Write what was appended since the last call (nothing to do in memory)."""
        self._pending.clear()

    async def read(
        self, symbol: str | None, kind: str | None, since: int, limit: int
    ) -> list[Alert]:
        return select(reversed(self.recent), symbol, kind, since, limit)


class FileAlertHistory(AlertHistory):
    kind = "file"

    def __init__(self, directory: str, oldest_ms: int) -> None:
        super().__init__()
        self.path = os.path.join(directory, "alerts.jsonl")
        kept: list[bytes] = []
        try:
            with open(self.path, "rb") as file:
                for line in file:
                    try:
                        alert = _decoder.decode(line)
                    except msgspec.DecodeError:
                        continue  # a line cut short by a crash
                    if alert.time >= oldest_ms:
                        self.recent.append(alert)
                        kept.append(line if line.endswith(b"\n") else line + b"\n")
        except FileNotFoundError:
            return
        try:  # rewritten with what is still kept: the file stays within the retention
            with open(self.path + ".new", "wb") as file:
                file.writelines(kept[-KEPT:])
            os.replace(self.path + ".new", self.path)
        except OSError as error:
            log.warning("alerts: cannot trim %s: %s", self.path, error)

    async def store(self, oldest_ms: int) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.to_thread(self._write, pending)

    def _write(self, pending: list[Alert]) -> None:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path, "ab") as file:
                file.writelines(_encoder.encode(a) + b"\n" for a in pending)
        except OSError as error:
            log.warning("alerts: cannot append to %s: %s", self.path, error)


class RedisAlertHistory(AlertHistory):
    kind = "redis"

    def __init__(self, redis: Redis) -> None:
        super().__init__()
        self.redis = redis
        self.outage = Outage("alerts", log)  # lost and back said once each, with backoff

    async def store(self, oldest_ms: int) -> None:
        pending = self._pending
        if not pending or not self.outage.due():
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for alert in pending:
                    pipe.xadd(
                        STREAM, {_FIELD: _encoder.encode(alert)}, minid=oldest_ms, approximate=True
                    )
                await pipe.execute()
        except (RedisError, OSError) as error:
            self.outage.failed(error)
            return  # kept pending: the next call due tries again
        self.outage.succeeded()
        self._pending = []

    async def read(
        self, symbol: str | None, kind: str | None, since: int, limit: int
    ) -> list[Alert]:
        return await read_stream(self.redis, symbol, kind, since, limit)


async def read_stream(
    redis: Redis, symbol: str | None, kind: str | None, since: int, limit: int
) -> list[Alert]:
    """From the Redis stream, newest first (a `web` process's answer)."""
    chosen: list[Alert] = []
    upper = "+"
    while len(chosen) < limit:
        entries = await redis.xrevrange(STREAM, upper, "-", count=_PAGE)
        alerts = []
        for entry_id, fields in entries:
            upper = "(" + entry_id.decode()
            try:
                alerts.append(_decoder.decode(fields[_FIELD]))
            except (KeyError, msgspec.DecodeError):
                continue
        chosen += select(alerts, symbol, kind, since, limit - len(chosen))
        if len(entries) < _PAGE or (alerts and alerts[-1].time < since):
            break
    return chosen
