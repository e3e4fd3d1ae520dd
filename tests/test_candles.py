"""Mark-price candles and predicted levels over time, pure: the rings against the raw
prices they were made of, the timeline's candles against a brute-force computation, the
choice of source, a restart's read-back; the predicted matrix against its definition."""

from __future__ import annotations

import math
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.analytics.candles import (
    HISTORY_BYTES,
    STALE_MS,
    TIERS,
    Candle,
    MarkHistory,
    MarkPrices,
    bucket_candles,
    tier_for,
)
from hub.analytics.predicted_timeline import predicted_timeline
from hub.channels import WINDOWS
from hub.models import ConsumedLevel, MarkPrice, MarkPriceUpdate, PredictedLevel

NOW = 1_800_000_000_000
# The page's bucket counts (hub/web/heatmap.html, BUCKETS)
PAGE_BUCKETS = {
    "5m": 100, "15m": 90, "1h": 120, "4h": 120, "12h": 144, "24h": 144, "3d": 144, "7d": 168,
    "30d": 180,
}  # fmt: skip


def brute_force(
    prices: list[tuple[int, float]], step: int, slots: int, now: int, span: int, buckets: int
) -> list[Candle | None]:
    """From the definitions: the base candles of `step` (those the ring still holds: the
    last `slots` periods up to the newest price), grouped by the bucket their start is in;
    bucket i starts at now - span + ceil(i * span / buckets)."""
    newest = max(t for t, _ in prices) // step
    base: dict[int, list[float]] = defaultdict(list)
    for t, p in sorted(prices, key=lambda item: item[0]):
        if t // step > newest - slots:
            base[t - t % step].append(p)
    cutoff = now - span
    starts = [cutoff + math.ceil(Fraction(i * span, buckets)) for i in range(buckets)]
    grouped: dict[int, list[list[float]]] = defaultdict(list)
    for start in sorted(base):
        if start >= cutoff:
            bucket = max(i for i, s in enumerate(starts) if s <= start)
            grouped[bucket].append(base[start])
    candles: list[Candle | None] = [None] * buckets
    for bucket, runs in grouped.items():
        flat = [p for run in runs for p in run]
        candles[bucket] = (starts[bucket], runs[0][0], max(flat), min(flat), runs[-1][-1])
    return candles


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 40_000), min_size=1, max_size=120),
    moves=st.lists(st.floats(-0.01, 0.01), min_size=120, max_size=120),
    window=st.sampled_from(["5m", "15m", "1h"]),
    buckets=st.integers(1, 400),
    ahead=st.integers(0, 120_000),
)
def test_the_timelines_candles_are_those_of_the_raw_prices(
    gaps: list[int], moves: list[float], window: str, buckets: int, ahead: int
) -> None:
    history = MarkHistory()
    time, price, prices = NOW - 4_000_000, 60_000.0, []
    for gap, move in zip(gaps, moves, strict=False):
        time += gap
        price = round(price * (1 + move), 1)
        history.add(time, price)
        prices.append((time, price))
    span = WINDOWS[window]
    tier = tier_for(span, buckets)
    now = time + ahead - 60_000  # the newest price may be after `now`: the last bucket
    got = bucket_candles(history.ring(tier), now, span, buckets)
    assert got == brute_force(prices, tier.step_ms, tier.slots, now, span, buckets)


@pytest.mark.parametrize("window", list(PAGE_BUCKETS))
def test_every_bucket_of_every_page_window_gets_a_candle(window: str) -> None:
    """The rings are fine and long enough for the page's windows: a price every base step
    over the whole window gives a candle in every bucket."""
    span, buckets = WINDOWS[window], PAGE_BUCKETS[window]
    tier = tier_for(span, buckets)
    assert tier.step_ms <= span / buckets and tier.reach_ms >= span, tier
    history = MarkHistory()
    for time in range(NOW - span - tier.step_ms, NOW + 1, tier.step_ms):
        history.add(time, 100.0 + time % 7)
    candles = bucket_candles(history.ring(tier), NOW, span, buckets)
    assert None not in candles, [i for i, c in enumerate(candles) if c is None]


def test_a_bucket_finer_than_every_ring_gets_a_candle_only_where_one_starts() -> None:
    history = MarkHistory()
    for time in range(NOW - 300_000, NOW + 1, 250):
        history.add(time, 100.0)
    candles = bucket_candles(history.ring(tier_for(300_000, 1000)), NOW, 300_000, 1000)
    # a candle a second, the one starting at `now` in the last bucket: one in 3.3 buckets
    assert sum(c is not None for c in candles) == 301


def test_each_ring_holds_its_own_resolution_and_forgets_what_it_outlived() -> None:
    history = MarkHistory()
    for second in range(2 * 3_600):  # two hours, a price a second, rising by 1 a second
        history.add(NOW + 1_000 * second, 1_000.0 + second)
    end = NOW + 2 * 3_600_000
    for tier in TIERS:
        ring = history.ring(tier)
        starts = ring[:, 0]
        assert (starts % tier.step_ms == 0).all()
        assert starts.min() >= end - tier.slots * tier.step_ms, "a stale slot was read"
        # each candle: the first and last second of its step, rising
        first = (starts - NOW) // 1_000
        inside = first >= 0
        np.testing.assert_array_equal(ring[inside, 1], 1_000.0 + first[inside])
        np.testing.assert_array_equal(ring[:, 2], ring[:, 4])
        np.testing.assert_array_equal(ring[:, 3], ring[:, 1])
    assert len(history.values) * 8 == HISTORY_BYTES == 142_560


def test_binance_first_then_bybit_while_binance_is_silent_then_binance_again() -> None:
    marks = MarkPrices()
    marks.track("BTCUSDT")

    def send(exchange: str, time: int, price: float) -> bool:
        return marks.apply(MarkPriceUpdate(exchange, "BTCUSDT", time, price), time)

    assert send("bybit", NOW, 60_100.0), "the only source so far"
    assert send("binance", NOW + 100, 60_000.0), "a preferred source takes over at once"
    assert not send("bybit", NOW + 200, 60_900.0), "Binance is alive"
    assert not send("okx", NOW + STALE_MS, 60_900.0)
    assert send("bybit", NOW + 100 + STALE_MS, 60_050.0), "Binance silent for STALE_MS"
    assert send("binance", NOW + 200 + STALE_MS, 60_020.0)
    assert marks.latest["BTCUSDT"] == MarkPrice(NOW + 200 + STALE_MS, 60_020.0, "binance")
    assert not marks.apply(MarkPriceUpdate("binance", "ETHUSDT", NOW, 3_000.0), NOW), "untracked"
    assert marks.rejected == 0
    assert not send("binance", NOW, 60_000.0), "older than the last taken"
    assert not marks.apply(MarkPriceUpdate("binance", "BTCUSDT", NOW + 10**9, 1.0), NOW)
    assert not send("binance", NOW + 300 + STALE_MS, 0.0)
    assert marks.rejected == 3
    ring = marks.ring("BTCUSDT", TIERS[3])
    assert ring is not None and ring[:, 1:].tolist() == [
        [60_100.0, 60_100.0, 60_000.0, 60_020.0]  # one minute: bybit, binance, bybit, binance
    ]


def test_a_restart_carries_its_candles_on() -> None:
    before = MarkHistory()
    for second in range(120):
        before.add(NOW + 1_000 * second, 100.0 + second)
    kept = before.values.tobytes()
    after = MarkHistory()
    after.add(NOW + 119_500, 90.0)  # the same second and minute as the last before
    after.add(NOW + 119_800, 95.0)
    after.take_changes()
    after.merge(kept)
    minute = after.ring(TIERS[3])
    assert minute[:, 1:].tolist() == [
        [100.0, 159.0, 100.0, 159.0],
        [160.0, 219.0, 90.0, 95.0],  # joined: its open from before, its close from after
    ]
    second = after.ring(TIERS[0])
    assert second[-1, 1:].tolist() == [219.0, 219.0, 90.0, 95.0]
    assert after.changed, "what was read back is written again"
    after.merge(b"\0" * 10)  # another layout: ignored
    assert after.ring(TIERS[3]).tolist() == minute.tolist()


# -- predicted levels over time ---------------------------------------------------------


def level(price: float, side: str, notional: float, opened: int) -> PredictedLevel:
    return PredictedLevel(price, side, notional, 10.0, opened)  # type: ignore[arg-type]


def consumed(price: float, side: str, notional: float, opened: int, at: int) -> ConsumedLevel:
    return ConsumedLevel(price, side, notional, 10.0, opened, at)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    spans=st.lists(
        st.tuples(
            st.integers(0, 40),  # bin
            st.booleans(),  # long
            st.integers(1, 10**8),  # cents
            st.integers(-4_000_000, 200_000),  # opened, from now
            st.one_of(st.none(), st.integers(0, 4_000_000)),  # consumed after opened
        ),
        max_size=30,
    ),
    buckets=st.integers(1, 200),
)
def test_the_predicted_matrix_is_each_level_over_the_buckets_it_was_open(
    spans: list[tuple[int, bool, int, int, int | None]], buckets: int
) -> None:
    width, span = 20.0, 3_600_000
    open_levels, crossed = [], []
    for index, is_long, cents, opened, lasted in spans:
        side = "long" if is_long else "short"
        if lasted is None:
            open_levels.append(level(index * width, side, cents / 100, NOW + opened))
        else:
            ended = NOW + opened + lasted
            crossed.append(consumed(index * width, side, cents / 100, NOW + opened, ended))
    got = predicted_timeline(open_levels, crossed, width, NOW, span, buckets)
    cutoff = NOW - span
    starts = [cutoff + math.ceil(Fraction(i * span, buckets)) for i in range(buckets)]
    ends = [*starts[1:], math.inf]
    want: dict[tuple[int, float, str], int] = defaultdict(int)
    shown = [(lv, math.inf) for lv in open_levels]
    shown += [(lv, lv.consumed) for lv in crossed if lv.consumed >= cutoff]
    for lv, until in shown:
        for i in range(buckets):
            # open at some time of the bucket (what is stamped after `now` is in the last)
            if lv.opened < ends[i] and min(until, NOW) >= starts[i]:
                want[(i, lv.price, lv.side)] += round(lv.notional * 100)
    seen: dict[tuple[int, float, str], int] = {}
    axis = got.prices
    for side, matrix in (("long", got.long), ("short", got.short)):
        for i, row in enumerate(matrix):
            assert len(row) == axis.count
            for j, value in enumerate(row):
                if value:
                    seen[(i, round(axis.start + j * width, 2), side)] = round(value * 100)
    assert seen == {k: v for k, v in want.items() if v}
    assert got.levels == len(shown) and got.times == starts


def test_a_consumed_level_ends_in_the_bucket_it_was_crossed_in() -> None:
    minute = 60_000
    got = predicted_timeline(
        [level(60_020.0, "short", 500.0, NOW - 50 * minute)],
        [
            consumed(59_700.0, "long", 1_000.0, NOW - 30 * minute, NOW - 10 * minute + 1),
            consumed(59_000.0, "long", 9.0, NOW - 90 * minute, NOW - 61 * minute),  # before
        ],
        20.0,
        NOW,
        3_600_000,
        60,
    )
    assert got.prices.start == 59_700.0 and got.prices.count == 17 and got.levels == 2
    long = [row[0] for row in got.long]
    assert long == [0.0] * 30 + [1_000.0] * 21 + [0.0] * 9
    short = [row[16] for row in got.short]
    assert short == [0.0] * 10 + [500.0] * 50
    empty = predicted_timeline([], [], 20.0, NOW, 3_600_000, 3)
    assert (empty.prices.count, empty.long, empty.levels) == (0, [[], [], []], 0)
