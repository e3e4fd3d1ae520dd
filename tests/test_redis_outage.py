"""An unreachable Redis: retries back off, and the log says lost and back once each."""

from __future__ import annotations

import logging
import socket
from collections import Counter

import pytest

from hub.config import Settings
from hub.feeds.backoff import Backoff
from hub.service.history import RedisHistory
from hub.storage.outage import Outage
from tests.conftest import HubFactory, eventually
from tests.redis_server import RedisServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_outage_backs_off_and_logs_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    backoff = Backoff(base=1.0, cap=8.0, uniform=lambda low, high: high)  # no jitter
    outage = Outage("tester", logging.getLogger("hub.test"), backoff, clock)
    caplog.set_level(logging.INFO, logger="hub.test")
    assert outage.up and outage.due()
    delays = [outage.failed(ConnectionError("refused")) for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert not outage.due(), "the next attempt waits for the last delay"
    clock.now += 7.9
    assert not outage.due()
    clock.now += 0.2
    assert outage.due()
    assert outage.last_error == "ConnectionError: refused"
    outage.succeeded()
    outage.succeeded()
    assert outage.up and outage.due()
    assert outage.failed(ConnectionError("again")) == 1.0, "backoff starts over after a return"
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(":")[1].strip().split(" (")[0] for line in lines] == [
        "Redis unreachable",
        "Redis is back after 8.1 s",
        "Redis unreachable",
    ], lines


def test_a_failure_older_than_a_success_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """Two loops share one state: one's attempt began while Redis was away and failed after
    the other's succeeded. Redis is back: that failure is stale."""
    clock = FakeClock()
    outage = Outage("tester", logging.getLogger("hub.test"), clock=clock)
    caplog.set_level(logging.INFO, logger="hub.test")
    outage.failed(ConnectionError("refused"))
    began = clock.now
    clock.now += 1.0
    outage.succeeded()
    clock.now += 0.1
    assert outage.failed(ConnectionError("refused, long ago"), began) == 0.0
    assert outage.up and outage.due() and outage.failures == 0
    outage.failed(ConnectionError("refused, now"), clock.now)
    assert not outage.up, "a failure that began after the success counts"
    lines = [r.getMessage().split(" (")[0] for r in caplog.records]
    expected = [
        "tester: Redis unreachable",
        "tester: Redis is back after 1.0 s",
        "tester: Redis unreachable",
    ]
    assert lines == expected, f"expected {expected}, saw {lines}"


def said(caplog: pytest.LogCaptureFixture, words: str) -> Counter[str]:
    """How many lines with `words` each user of Redis ("ingest", "event log") logged."""
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("hub")]
    return Counter(line.split(":")[0] for line in lines if words in line)


async def test_unreachable_redis_is_logged_once_and_retried_with_backoff(
    start_hub: HubFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # A port held bound but not listening: connecting is refused, and no other server (a
    # parallel test's) can take it while Redis is meant to be down.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    redis = RedisServer(port=holder.getsockname()[1])
    caplog.set_level(logging.INFO, logger="hub")
    running = await start_hub(Settings(redis_url=redis.url, flush_ms=20), demo=True)
    state = running.hub.ingest.redis_state
    history = running.hub.ingest.history
    assert isinstance(history, RedisHistory)
    event_log = history.log
    try:
        # The demo keeps the outbox busy: before, every 20 ms flush tried Redis and logged.
        await eventually(lambda: state.failures >= 4, seen=lambda: state.failures)
        hub_lines = [r.getMessage() for r in caplog.records if r.name.startswith("hub")]
        lost = said(caplog, "Redis unreachable")
        # publishing (ingest) says it once; the event log waits to read the history back
        # before it writes, and says it is waiting once
        assert lost["ingest"] == 1 and set(lost.values()) == {1}, hub_lines
        assert said(caplog, "cannot read the history yet") == {"ingest": 1}, hub_lines
        assert len(hub_lines) <= 4, f"expected a quiet log while Redis is down, saw {hub_lines}"
        status = (await running.get("/api/heatmap/status")).json()["data"]
        assert status["history"]["connected"] is False, status["history"]
        assert not running.hub.ingest.restored

        holder.close()
        redis.start()
        await eventually(lambda: state.up and event_log.outage.up, seen=lambda: state.last_error)

        async def all_back() -> bool:
            # The request limiter tries Redis on a request: this one.
            await running.get("/api/heatmap/status")
            return said(caplog, "Redis is back") == said(caplog, "Redis unreachable")

        await eventually(all_back)
        lost = said(caplog, "Redis unreachable")
        back = said(caplog, "Redis is back")
        assert back == lost and set(back.values()) == {1}, f"lost {lost}, back {back}"
        # Then the history is read back (here: empty), and the log written from then on.
        await eventually(lambda: running.hub.ingest.restored)
        await eventually(lambda: event_log.status.connected and event_log.status.written > 0)
    finally:
        holder.close()
        redis.stop()
