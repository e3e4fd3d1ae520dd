"""`Alerting`: what `ingest` (or `serve`) does with the alerts it publishes: keep them in
the history and hand them to the sinks. One call per publish (`take`), one loop (`run`)
that writes the history, the sinks' lanes, and a status entry; the conductor needs no more.

Where things are kept follows the process: Redis when REDIS_URL is set, else files beside
the event history under HEATMAP_DATA_DIR (`live/` or `demo/`), else memory
(HEATMAP_DATA_DIR=off, or a replay).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from hub.alerting.delivered import DeliveredIds, FileDeliveredIds, RedisDeliveredIds
from hub.alerting.delivery import AlertDelivery
from hub.alerting.history import AlertHistory, FileAlertHistory, RedisAlertHistory
from hub.channels import ANY_SYMBOL
from hub.config import Settings
from hub.models import Alert, ChannelMessage

ALL_ALERTS = f"alerts:{ANY_SYMBOL}"  # every alert once (each also goes to its symbol's)
STORE_EVERY = 0.5  # seconds between history writes


class Alerting:
    def __init__(
        self, settings: Settings, directory: Path | None, redis: Redis | None, now_ms: int
    ) -> None:
        self.settings = settings
        record: DeliveredIds
        if redis is not None:
            self.history: AlertHistory = RedisAlertHistory(redis)
            record = RedisDeliveredIds(redis)
        elif directory is not None:
            self.history = FileAlertHistory(str(directory), now_ms - settings.retention_ms)
            record = FileDeliveredIds(str(directory))
        else:
            self.history = AlertHistory()
            record = DeliveredIds()
        self.delivery = AlertDelivery(settings.alerts.sinks, record, settings.public_url)

    def take(self, messages: Iterable[ChannelMessage]) -> None:
        """The alerts among messages about to be published: kept, and queued for sinks."""
        for message in messages:
            if message.type == "alert" and message.ch == ALL_ALERTS:
                alert: Alert = message.data
                self.history.append(alert)
                self.delivery.offer(alert)

    async def run(self, clock_ms: Callable[[], int], restored: Callable[[], bool]) -> None:
        """Deliver from the start; write the history once the process's history is read
        back (`restored`), as the event log does: alerts wait in memory until then."""
        self.delivery.start()
        try:
            while True:
                if restored():
                    await self.history.store(clock_ms() - self.settings.retention_ms)
                await asyncio.sleep(STORE_EVERY)
        finally:
            await self.delivery.close()

    async def close(self, oldest_ms: int) -> None:
        await self.history.store(oldest_ms)

    def status(self) -> dict[str, Any]:
        return {
            "history": self.history.kind,
            "record": self.delivery.record.kind,
            "sinks": self.delivery.status(),
        }
