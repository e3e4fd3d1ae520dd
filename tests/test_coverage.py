"""Coverage: every window says how much of its span it shows, in snapshots and diffs; and
the past is not news (no alert for a liquidation older than the bound at arrival)."""

from __future__ import annotations

import itertools

import pytest

from hub.analytics.coverage import Coverage
from hub.analytics.processor import LiquidationProcessor, ProcessorConfig
from hub.analytics.window import refresh_ms
from hub.channels import WINDOWS
from hub.models import Alert, HeatmapDiff, LiquidationEvent, WindowCoverage

MINUTE = 60_000
HOUR = 60 * MINUTE
START = 1_795_176_000_000


def liquidation(time: int, notional: float = 50_000.0, price: float = 60_000.0) -> LiquidationEvent:
    return LiquidationEvent("binance", "BTCUSDT", "long", price, notional / price, notional, time)


def tracked(**config: object) -> LiquidationProcessor:
    processor = LiquidationProcessor(ProcessorConfig(**config), epoch="e")  # type: ignore[arg-type]
    processor.track("BTCUSDT", START)
    return processor


def test_a_window_is_complete_once_the_hub_has_covered_its_span() -> None:
    coverage = Coverage(since=1_000)
    assert coverage.of(500, 5_000) == WindowCoverage(1_000, False)
    assert coverage.of(1_000, 5_000) == WindowCoverage(1_000, True)
    assert coverage.of(2_000, 5_000) == WindowCoverage(2_000, True)


def test_a_gap_makes_every_window_it_touches_incomplete() -> None:
    coverage = Coverage(since=0)
    coverage.add_gap(10 * MINUTE, 20 * MINUTE)
    assert not coverage.of(5 * MINUTE, 30 * MINUTE).complete
    assert coverage.of(21 * MINUTE, 30 * MINUTE).complete
    coverage.add_gap(40 * MINUTE, 40 * MINUTE + 1_000)  # a quick restart is no gap
    assert coverage.of(35 * MINUTE, 45 * MINUTE).complete
    coverage.lose_before(25 * MINUTE)  # the gap is before what is held now: forgotten
    assert coverage.gaps == [] and coverage.since == 25 * MINUTE


def test_snapshots_and_diffs_say_what_each_window_covers() -> None:
    processor = tracked()
    processor.apply(liquidation(START), START)
    processor.flush(START)
    book = processor.books["BTCUSDT"]
    first = {name: window.snapshot().coverage for name, window in book.windows.items()}
    assert all(c == WindowCoverage(START, False) for c in first.values()), first

    # Five minutes on, the 5m window covers its whole span: a diff says so, though no
    # event came, while the 1h window still covers five minutes of its hour.
    now = START + 5 * MINUTE
    messages = processor.flush(now)
    diffs = {m.ch.split(":")[2]: m.data for m in messages if m.type == "diff"}
    assert isinstance(diffs["5m"], HeatmapDiff)
    assert diffs["5m"].coverage == WindowCoverage(START, True)
    assert book.windows["1h"].snapshot().coverage == WindowCoverage(START, False)
    assert book.windows["5m"].snapshot().coverage.complete


def test_the_cap_leaves_a_window_incomplete_and_says_from_where() -> None:
    processor = tracked(max_events=3)
    for i in range(5):
        now = START + HOUR + i * MINUTE
        processor.apply(liquidation(now, price=60_000.0 + i), now)
    now = START + HOUR + 4 * MINUTE
    processor.flush(now + 2 * HOUR)
    book = processor.books["BTCUSDT"]
    # The two oldest were pushed out: nothing before the newest of them is known.
    assert book.coverage.since == START + HOUR + MINUTE + 1
    snapshot = book.windows["24h"].snapshot()
    assert snapshot.coverage == WindowCoverage(START + HOUR + MINUTE + 1, False)


def test_an_old_liquidation_is_held_and_sent_but_never_alerted() -> None:
    processor = tracked()
    now = START + HOUR
    old = liquidation(now - 61_000, notional=5_000_000.0)  # large, but old news
    applied = processor.apply(old, now)
    assert applied.event is not None, "an old liquidation is still held"
    assert [m.type for m in applied.messages] == ["liquidation", "liquidation"]
    assert not [m for m in processor.flush(now) if isinstance(m.data, Alert)], (
        "no cluster alert either: the flush's events were all old"
    )
    fresh = processor.apply(liquidation(now - 1_000, notional=5_000_000.0, price=60_100.0), now)
    kinds = {m.data.kind for m in fresh.messages if isinstance(m.data, Alert)}
    assert "large_liquidation" in kinds, kinds


def test_the_alert_bound_is_configurable() -> None:
    processor = tracked(alert_max_age_ms=5 * MINUTE)
    now = START + HOUR
    applied = processor.apply(liquidation(now - 4 * MINUTE, notional=5_000_000.0), now)
    assert any(isinstance(m.data, Alert) for m in applied.messages)


def test_every_window_has_a_pace_that_fits_its_length() -> None:
    processor = tracked()
    processor.apply(liquidation(START), START)
    paces = {name: w.refresh_ms for name, w in processor.books["BTCUSDT"].windows.items()}
    assert paces["5m"] == paces["15m"] == paces["1h"] == 0, "every flush"
    assert paces["24h"] == 1_500 and paces["30d"] == WINDOWS["30d"] // 57_600 == 45_000
    # A quiet symbol's long windows fall due together: each pace is a multiple of every
    # shorter one up to the day's.
    longer = [pace for pace in paces.values() if pace]
    assert all(b % a == 0 for a, b in itertools.combinations(longer, 2) if a <= paces["24h"]), (
        f"expected each long window's pace a multiple of the shorter ones to 24h's, saw {longer}"
    )
    assert sorted(paces.values()) == list(paces.values()), "longer windows never faster"


@pytest.mark.timeout(180)  # CPU-bound: 30 s of analytics on a slow machine
def test_many_symbols_long_windows_spread_over_the_flushes() -> None:
    """Each symbol's `3d` window sends once in each 4.5 s period, but the symbols' periods
    start apart: restored together, 100 symbols would otherwise all send in one flush."""
    symbols = [f"ALT{i:03d}USDT" for i in range(100)]
    processor = LiquidationProcessor(ProcessorConfig(), epoch="e")
    for symbol in symbols:
        processor.track(symbol, START)
    pace = refresh_ms(WINDOWS["3d"])
    sends: dict[str, list[int]] = {symbol: [] for symbol in symbols}
    per_flush: list[int] = []
    for step in range(1, 3 * pace // 50 + 1):
        now = START + step * 50
        for number, symbol in enumerate(symbols):
            event = LiquidationEvent("binance", symbol, "long", 5.0 + number, 10.0, 50.0, now)
            processor.apply(event, now)
        flushed = processor.flush(now)
        sent = [m.ch.split(":")[1] for m in flushed if m.ch.endswith(":3d") and m.type == "diff"]
        for symbol in sent:
            sends[symbol].append(now)
        per_flush.append(len(sent))
    assert max(per_flush) <= len(symbols) // 10, (
        f"expected the 3d sends spread over the flushes, saw up to {max(per_flush)} of "
        f"{len(symbols)} symbols in one flush"
    )
    for symbol, times in sends.items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # A busy symbol sends at the first flush of each period: a pace apart, to a flush.
        assert len(times) >= 2 and all(pace - 50 <= gap <= pace + 50 for gap in gaps), (
            f"{symbol}: expected one send per {pace} ms period, saw sends at {times}"
        )
