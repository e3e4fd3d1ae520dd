"""History that outlives the process: the on-disk log of `serve` (its files, torn and
corrupt ones, retention, one writer per directory), a restart of `serve --demo` that
restores every event and carries the demo's clock on, and coverage across it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import numpy as np
import pytest

from hub.analytics.rows import rows_of
from hub.config import Settings
from hub.errors import ConfigError
from hub.feeds.replay import ReplayFeed
from hub.models import LiquidationEvent
from hub.service.history import DiskHistory, Meta
from hub.service.hubs import ServeHub
from hub.service.sources import Source
from hub.storage.disk_log import DiskEventLog
from tests.conftest import eventually

HOUR = 3_600_000
T0 = 1_796_000_000_000


def event(symbol: str, time: int, price: float, side: str = "long") -> LiquidationEvent:
    return LiquidationEvent("bybit", symbol, side, price, 0.5, price * 0.5, time)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def files(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern))


def tear(segment: Path) -> None:
    """A crash in the middle of a batch: its first bytes, and nothing after."""
    with segment.open("ab") as torn:
        torn.write(b"\xff\xff\xff\xff\x90\x00\x00\x00\x10\x00")


async def written(log: DiskEventLog, items: list[tuple[int, LiquidationEvent]]) -> None:
    for arrival, item in items:
        log.append(arrival, item)
    await log.write_pending()


async def test_the_log_reads_back_what_it_took_sealed_as_parquet(tmp_path: Path) -> None:
    clock = Clock()
    log = DiskEventLog(tmp_path, clock)
    btc = [
        (i + 1, event("BTCUSDT", T0 + i, 60_000.0 + i, "short" if i % 2 else "long"))
        for i in range(5)
    ]
    eth = [(7, event("ETHUSDT", T0 + 3, 3_000.0))]
    await written(log, btc[:3])
    await written(log, btc[3:] + eth)
    await log.close()

    again = DiskEventLog(tmp_path, clock)
    held = again.read_all(0)
    assert sorted(held) == ["BTCUSDT", "ETHUSDT"]
    expected = rows_of(btc).rows
    got = held["BTCUSDT"].rows
    for name in ("time", "price", "quantity", "notional", "short", "arrival"):
        assert getattr(got, name).tolist() == getattr(expected, name).tolist(), name
    assert held["BTCUSDT"].exchanges[got.exchange[0]] == "bybit"
    names = [p.name for p in files(tmp_path, "events-*")]
    assert len(names) == 1 and names[0].endswith(".parquet"), names  # the segment, sealed
    await again.close()


async def test_a_segment_cut_short_keeps_every_whole_batch(tmp_path: Path) -> None:
    log = DiskEventLog(tmp_path, Clock())
    await written(log, [(1, event("BTCUSDT", T0, 60_000.0))])
    await written(log, [(2, event("BTCUSDT", T0 + 1, 60_001.0))])
    tear(files(tmp_path, "events-*.arrows")[0])  # a crash in the middle of a third batch
    # the process died: its lock went with it
    log._lock_file.close()

    held = DiskEventLog(tmp_path, Clock()).read_all(0)
    assert held["BTCUSDT"].rows.arrival.tolist() == [1, 2]


async def test_an_unreadable_file_is_skipped_reported_and_is_a_gap(tmp_path: Path) -> None:
    clock = Clock()
    log = DiskEventLog(tmp_path, clock, segment_ms=HOUR)
    await written(log, [(1, event("BTCUSDT", T0 - 2 * HOUR, 60_000.0))])
    clock.now += HOUR  # the next write opens a new segment, sealing this one
    await written(log, [(2, event("BTCUSDT", T0 - HOUR, 61_000.0))])
    clock.now += HOUR
    await written(log, [(3, event("BTCUSDT", T0, 62_000.0))])
    await log.close()
    first = files(tmp_path, "events-*.parquet")[0]
    first.write_bytes(b"PAR1 this is not parquet")

    history = DiskHistory(tmp_path, 30 * 24 * HOUR, clock)
    state = {"since": T0 - 3 * HOUR, "gaps": []}
    history.log.write_state(msgspec.json.encode({"alive": T0, "coverage": {"BTCUSDT": state}}))
    kept = await history.read({"BTCUSDT"}, False, T0)
    assert kept.rows["BTCUSDT"].rows.arrival.tolist() == [2, 3], "the rest is read"
    skipped = history.status().skipped
    assert [s.file for s in skipped] == [first.name], skipped
    gaps = kept.meta.coverage["BTCUSDT"].gaps
    assert [(g.start, g.end) for g in gaps] == [(T0 - 2 * HOUR, T0 - 2 * HOUR + 1)], gaps
    await history.log.close()


async def test_retention_deletes_whole_files_past_it(tmp_path: Path) -> None:
    clock = Clock()
    log = DiskEventLog(tmp_path, clock, segment_ms=HOUR)
    for hours in (3, 2, 1):
        await written(log, [(4 - hours, event("BTCUSDT", T0 - hours * HOUR, 60_000.0))])
        clock.now += HOUR
    await written(log, [(9, event("BTCUSDT", T0, 60_000.0))])  # seals the last one
    log.trim(T0 - HOUR - HOUR // 2)
    await log.close()
    again = DiskEventLog(tmp_path, clock)
    assert again.read_all(0)["BTCUSDT"].rows.arrival.tolist() == [3, 9]
    assert again.read_all(T0 - 10)["BTCUSDT"].rows.arrival.tolist() == [9], "older rows dropped"
    await again.close()


async def test_a_second_process_may_not_write_the_same_directory(tmp_path: Path) -> None:
    first = DiskEventLog(tmp_path, Clock())
    with pytest.raises(ConfigError, match=r"HEATMAP_DATA_DIR: .* in use by another"):
        DiskEventLog(tmp_path, Clock())
    await first.close()
    DiskEventLog(tmp_path, Clock())  # once let go, it is free


async def demo_hub(data_dir: Path) -> ServeHub:
    hub = ServeHub(
        Settings(flush_ms=50, liquidity="off", data_dir=str(data_dir)),
        Source(demo=True, speed=1, open_interest=False),
    )
    await hub.start()
    return hub


async def test_a_restart_of_the_demo_restores_every_event_and_carries_its_clock_on(
    tmp_path: Path,
) -> None:
    first = await demo_hub(tmp_path)
    feed = first.feed
    assert isinstance(feed, ReplayFeed) and feed.timeline is not None
    try:
        await eventually(lambda: feed.status.frames > len(feed.lines), within=60)
        await first.flush_now()
    finally:
        await first.stop()
    book = first.processor.books["BTCUSDT"]
    before = book.store.rows()
    origin, covered = feed.timeline.origin, book.coverage.since

    second = await demo_hub(tmp_path)
    again = second.feed
    assert isinstance(again, ReplayFeed) and again.timeline is not None
    try:
        restored = second.processor.books["BTCUSDT"]
        held = restored.store.rows()
        assert len(held) >= len(before), f"restored {len(held)} of {len(before)} events"
        kept = np.isin(held.arrival, before.arrival)
        assert kept.sum() == len(before), "every event held before is held again"
        assert again.timeline.origin == origin, "the demo's timeline carries on"
        assert restored.coverage.since == covered
        newest = int(before.time.max())
        await eventually(lambda: again.status.frames > 50, within=60)
        new = restored.store.rows()
        later = new.time[~np.isin(new.arrival, before.arrival)]
        # What it plays is what came after the stop (an exchange's trade times run a little
        # behind the order frames arrive in), never the session laid again as new.
        assert (later > newest - 10_000).all(), "the demo laid again what it had laid before"
        assert len(later) < len(before) // 10, f"{len(later)} new events after a restart"
    finally:
        await second.stop()


def test_the_kept_state_names_no_symbol_it_does_not_hold() -> None:
    # What the state file holds decodes with defaults for anything an older one lacks.
    meta = msgspec.json.decode(b'{"alive": 5}', type=Meta)
    assert (meta.alive, meta.coverage, meta.source) == (5, {}, None)


async def test_serve_keeps_history_off_without_a_directory() -> None:
    hub = ServeHub(Settings(flush_ms=50, liquidity="off"), Source(demo=True, open_interest=False))
    assert hub.ingest.history is None
    await asyncio.sleep(0)
