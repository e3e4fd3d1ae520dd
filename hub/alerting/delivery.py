"""Delivery: every configured sink gets the alerts its filter admits, on its own lane.

A lane is a bounded queue and one worker with its own HTTP client, so a sink that is down,
slow or rate limited holds up only its own alerts, never another sink's and never the
analytics (`offer` only queues). A failed attempt (a connection error, a timeout, an answer
the sink's rules call worth retrying) is retried after an exponential backoff with full
jitter, or after the `Retry-After` the service asked for; after `max_attempts` the alert is
given up for that sink and counted as failed. A full queue drops the oldest alert (the
freshest matters most) and counts it. Before sending, the lane asks the delivered-ids
record (`hub.alerting.delivered`), so an id is sent to a sink once.

Nothing secret is logged or shown: reasons are HTTP statuses, the services' own error
text with the token masked, and exception class names (whose messages may quote a URL).
httpx logs every request's URL at INFO, and a sink's URL is its secret (Discord's and
Slack's webhook paths, Telegram's token): `MaskedSecrets` rewrites those lines.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from hub.alerting.config import SinkConfig
from hub.alerting.delivered import DeliveredIds
from hub.alerting.sinks import make_sink
from hub.alerting.sinks.base import Answer, Sink
from hub.models import Alert
from hub.tasks import cancel_and_wait

log = logging.getLogger("hub.alerts")
HTTP_LOG = logging.getLogger("httpx")
QUEUE = 1_000  # alerts waiting per sink
BACKOFF_BASE = 0.5  # seconds before the second attempt, doubled each time ...
BACKOFF_CAP = 60.0  # ... up to this
RETRY_AFTER_CAP = 600.0  # a longer Retry-After is taken as this


class Lane:
    """One sink's queue, worker and counters."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.queue: deque[Alert] = deque()
        self.ready = asyncio.Event()
        self.delivered = 0
        self.retried = 0
        self.failed = 0
        self.dropped = 0
        self.duplicates = 0
        self.last_error: str | None = None
        self.last_delivered_ms: int | None = None

    def status(self) -> dict[str, Any]:
        return {
            "kind": self.sink.config.kind,
            "delivered": self.delivered,
            "retried": self.retried,
            "failed": self.failed,
            "dropped": self.dropped,
            "duplicates": self.duplicates,
            "queued": len(self.queue),
            "last_error": self.last_error,
            "last_delivered": self.last_delivered_ms,
        }


class MaskedSecrets(logging.Filter):
    """Rewrites a log line that quotes a sink's URL, token or secret."""

    def __init__(self, sinks: Sequence[SinkConfig]) -> None:
        super().__init__()
        self.replacements: list[tuple[str, str]] = []
        for config in sinks:
            if config.url:
                parts = urlsplit(config.url)
                self.replacements.append((config.url, f"{parts.scheme}://{parts.netloc}/***"))
            self.replacements += [(s, "***") for s in (config.token, config.secret) if s]

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = text
        for secret, shown in self.replacements:
            masked = masked.replace(secret, shown)
        if masked != text:
            record.msg, record.args = masked, ()
        return True


class AlertDelivery:
    def __init__(
        self,
        sinks: Sequence[SinkConfig],
        record: DeliveredIds,
        public_url: str | None,
    ) -> None:
        self.lanes = [Lane(make_sink(config, public_url)) for config in sinks]
        self.record = record
        self._tasks: list[asyncio.Task[None]] = []
        self._masked = MaskedSecrets(sinks)

    def offer(self, alert: Alert) -> None:
        """Queue `alert` for every sink whose filter admits it; never waits."""
        for lane in self.lanes:
            if not lane.sink.config.filter.admits(alert):
                continue
            if len(lane.queue) >= QUEUE:
                lane.queue.popleft()
                lane.dropped += 1
            lane.queue.append(alert)
            lane.ready.set()

    def start(self) -> None:
        HTTP_LOG.addFilter(self._masked)
        self._tasks = [
            asyncio.create_task(self._work(lane), name=f"alerts:{lane.sink.name}")
            for lane in self.lanes
        ]

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        HTTP_LOG.removeFilter(self._masked)

    def status(self) -> dict[str, dict[str, Any]]:
        return {lane.sink.name: lane.status() for lane in self.lanes}

    async def _work(self, lane: Lane) -> None:
        timeout = lane.sink.config.timeout_seconds
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            while True:
                while not lane.queue:
                    lane.ready.clear()
                    await lane.ready.wait()
                alert = lane.queue.popleft()
                try:
                    await self._deliver(lane, client, alert)
                except Exception as error:  # a bug must not stop the lane for good
                    lane.failed += 1
                    lane.last_error = type(error).__name__
                    log.exception("alerts: sink %s failed on %s", lane.sink.name, alert.id)

    async def _deliver(self, lane: Lane, client: httpx.AsyncClient, alert: Alert) -> None:
        sink = lane.sink
        if await self.record.seen(sink.name, alert.id):
            lane.duplicates += 1
            return
        attempts = sink.config.max_attempts
        for attempt in range(1, attempts + 1):
            answer = await self._attempt(client, sink, alert)
            if answer.delivered:
                lane.delivered += 1
                lane.last_delivered_ms = int(time.time() * 1000)
                await self.record.add(sink.name, alert.id, alert.time)
                return
            lane.last_error = answer.reason
            if not answer.retry or attempt == attempts:
                lane.failed += 1
                log.warning(
                    "alerts: sink %s gave up on %s after %d attempt(s): %s",
                    sink.name, alert.id, attempt, answer.reason,
                )  # fmt: skip
                return
            lane.retried += 1
            await asyncio.sleep(delay(attempt, answer.retry_after))

    async def _attempt(self, client: httpx.AsyncClient, sink: Sink, alert: Alert) -> Answer:
        post = sink.post(alert, time.time())
        try:
            response = await client.post(post.url, content=post.body, headers=post.headers)
        except httpx.HTTPError as error:  # the URL may hold a token: the class name only
            return Answer(False, True, None, type(error).__name__)
        return sink.answer(response.status_code, response.headers, response.content)


def delay(attempt: int, retry_after: float | None) -> float:
    """Seconds before attempt `attempt + 1`: what the service asked (and a little jitter,
    so sinks told the same do not come back in step), else full-jitter backoff."""
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_CAP) + random.uniform(0, 0.1)
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))
