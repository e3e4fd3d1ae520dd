"""The alert history behind `GET /api/heatmap/alerts`: newest first, filtered, bounded by
the retention, and read back from disk by a restarted `serve`."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from hub.alerting.history import AlertHistory, FileAlertHistory
from hub.alerting.service import Alerting
from hub.config import Settings
from hub.models import Alert
from tests.test_alert_sinks import alert

pytestmark = pytest.mark.timeout(30)


def at(number: int, time: int, symbol: str = "BTCUSDT", kind: str = "large_liquidation") -> Alert:
    return msgspec.structs.replace(alert(number, symbol, kind), time=time)


async def test_newest_first_filtered_and_limited() -> None:
    history = AlertHistory()
    for number, (symbol, kind) in enumerate(
        [("BTCUSDT", "cascade"), ("ETHUSDT", "cascade"), ("BTCUSDT", "large_liquidation")]
    ):
        history.append(at(number, 1_000 * (number + 1), symbol, kind))
    everything = await history.read(None, None, 0, 100)
    assert [a.time for a in everything] == [3_000, 2_000, 1_000]
    assert [a.symbol for a in await history.read("ETHUSDT", None, 0, 100)] == ["ETHUSDT"]
    assert [a.time for a in await history.read("BTCUSDT", "cascade", 0, 100)] == [1_000]
    assert [a.time for a in await history.read(None, None, 2_000, 100)] == [3_000, 2_000]
    assert [a.time for a in await history.read(None, None, 0, 1)] == [3_000]


async def test_a_restarted_serve_reads_its_alerts_back_within_the_retention(
    tmp_path: Path,
) -> None:
    before = FileAlertHistory(str(tmp_path), oldest_ms=0)
    for number in range(3):
        before.append(at(number, 1_000 * (number + 1)))
    await before.store(oldest_ms=0)
    # Restarted with a retention that has left the first alert behind.
    after = FileAlertHistory(str(tmp_path), oldest_ms=1_500)
    assert [a.time for a in await after.read(None, None, 0, 100)] == [3_000, 2_000]
    lines = (tmp_path / "alerts.jsonl").read_bytes().splitlines()
    assert len(lines) == 2, "the file keeps only what is within the retention"


def test_where_alerts_are_kept_follows_the_process(tmp_path: Path) -> None:
    """Redis when there is one, else beside the event history on disk, else memory."""
    settings = Settings()
    kept = {
        "memory": Alerting(settings, None, None, 0),
        "file": Alerting(settings, tmp_path, None, 0),
        "redis": Alerting(settings, tmp_path, Redis.from_url("redis://127.0.0.1:1/0"), 0),
    }
    for kind, alerting in kept.items():
        status = alerting.status()
        assert (status["history"], status["record"], status["sinks"]) == (kind, kind, {}), status
