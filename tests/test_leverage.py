"""Leverage estimate on synthetic price paths, tier labels, and the tier distribution."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.analytics.leverage import TIERS, LeverageEstimator, TierDistribution, tier_of

HOUR = 3_600_000
MM = 0.004


def path(*prices: float, start: int = 0, step: int = 1_000) -> LeverageEstimator:
    estimator = LeverageEstimator()
    for i, price in enumerate(prices):
        estimator.observe(price, start + i * step)
    return estimator


@pytest.mark.parametrize(
    ("leverage", "tier"),
    [
        (0.5, "1-5x"),
        (1.0, "1-5x"),
        (4.99, "1-5x"),
        (5.0, "5-10x"),
        (9.99, "5-10x"),
        (10.0, "10-25x"),
        (25.0, "25-50x"),
        (49.9, "25-50x"),
        (50.0, "50-100x"),
        (99.99, "50-100x"),
        (100.0, "100x+"),
        (125.0, "100x+"),
    ],
)
def test_tier_of_bounds(leverage: float, tier: str) -> None:
    assert tier_of(leverage) == tier


def test_long_ten_percent_below_path_max_is_about_9_6x() -> None:
    estimator = path(95.0, 100.0, 97.0, 92.0)
    leverage = estimator.estimate("long", 90.0, 10_000)
    assert leverage == pytest.approx(1 / (0.1 + MM))
    assert leverage == pytest.approx(9.615, abs=1e-3)
    assert tier_of(leverage) == "5-10x"


def test_short_half_percent_above_path_min_is_100x_plus() -> None:
    estimator = path(101.0, 100.0, 100.3)
    leverage = estimator.estimate("short", 100.5, 10_000)
    assert leverage == pytest.approx(1 / (0.005 + MM))
    assert tier_of(leverage) == "100x+"


@pytest.mark.parametrize(
    ("side", "price", "tier"),
    [
        ("long", 80.0, "1-5x"),  # 20% down from the max of 100
        ("long", 94.0, "10-25x"),  # 6%: 1 / 0.064 = 15.6x
        ("long", 97.0, "25-50x"),  # 3%: 1 / 0.034 = 29.4x
        ("long", 98.8, "50-100x"),  # 1.2%: 1 / 0.016 = 62.5x
        ("short", 66.0, "1-5x"),  # 32% up from the min of 50
        ("short", 52.0, "10-25x"),  # 4%: 1 / 0.044 = 22.7x
    ],
)
def test_tiers_on_known_moves(side: str, price: float, tier: str) -> None:
    estimator = path(70.0, 100.0, 50.0, 60.0)
    leverage = estimator.estimate(side, price, 10_000)  # type: ignore[arg-type]
    assert leverage is not None
    assert tier_of(leverage) == tier


def test_no_adverse_move_clamps_to_125x_and_huge_move_to_1x() -> None:
    estimator = path(100.0, 101.0)
    assert estimator.estimate("long", 105.0, 5_000) == 125.0  # above every recent price
    assert estimator.estimate("short", 99.0, 5_000) == 125.0  # below every recent price
    assert estimator.estimate("short", 1_000.0, 5_000) == 1.0  # a 900% move


def test_none_until_the_path_has_min_points() -> None:
    estimator = LeverageEstimator(min_path_points=3)
    assert estimator.estimate("long", 90.0, 0) is None
    estimator.observe(100.0, 0)
    estimator.observe(99.0, 1_000)
    assert estimator.estimate("long", 90.0, 2_000) is None
    estimator.observe(98.0, 2_000)
    assert estimator.estimate("long", 90.0, 3_000) == pytest.approx(1 / (0.1 + MM))


def test_lookback_expiry_drops_old_extremes() -> None:
    estimator = LeverageEstimator(lookback_ms=HOUR)
    estimator.observe(200.0, 0)  # a high that must not count an hour later
    estimator.observe(100.0, 30 * 60_000)
    estimator.observe(101.0, 40 * 60_000)
    # At t = 1h the point at 0 is exactly at the edge: still inside.
    assert estimator.estimate("long", 90.0, HOUR) == pytest.approx(1 / (0.55 + MM))
    # Just past it, the max is 101.
    assert estimator.estimate("long", 90.0, HOUR + 1) == pytest.approx(
        1 / ((101.0 - 90.0) / 101.0 + MM)
    )


def test_whole_path_expired_gives_none() -> None:
    estimator = LeverageEstimator(lookback_ms=HOUR)
    estimator.observe(100.0, 0)
    estimator.observe(101.0, 1_000)
    assert estimator.estimate("long", 90.0, HOUR) is not None
    assert estimator.estimate("long", 90.0, HOUR + 1_001) is None
    # One fresh point is not enough on its own: the old ones are gone.
    estimator.observe(95.0, HOUR + 2_000)
    assert estimator.estimate("long", 90.0, HOUR + 3_000) is None
    estimator.observe(96.0, HOUR + 3_000)
    assert estimator.estimate("long", 90.0, HOUR + 4_000) == pytest.approx(
        1 / ((96.0 - 90.0) / 96.0 + MM)
    )


def test_bad_prices_are_ignored() -> None:
    estimator = path(100.0, 0.0, -5.0, math.nan, math.inf, 99.0)
    assert estimator.estimate("short", 101.0, 10_000) == pytest.approx(1 / (2 / 99 + MM))
    assert estimator.estimate("long", math.nan, 10_000) is None
    assert estimator.estimate("long", 0.0, 10_000) is None


def test_out_of_order_time_keeps_the_deques_ordered() -> None:
    estimator = LeverageEstimator(lookback_ms=10_000, min_path_points=1)
    estimator.observe(100.0, 5_000)
    estimator.observe(110.0, 4_000)  # late: counted at 5_000
    estimator.observe(105.0, 6_000)
    assert estimator.estimate("long", 99.0, 14_999) == pytest.approx(1 / (0.1 + MM))
    # 110 lives until its clamped time, 5_000, leaves the lookback.
    assert estimator.estimate("long", 99.0, 15_001) == pytest.approx(
        1 / ((105.0 - 99.0) / 105.0 + MM)
    )


def test_memory_stays_small_on_a_rising_path() -> None:
    estimator = LeverageEstimator()
    for i in range(10_000):
        estimator.observe(100.0 + i, i * 1_000)
    # White-box on purpose: the point of the monotonic deque is that a rising path keeps
    # one candidate max, not the whole lookback.
    assert len(estimator._highs) == 1
    assert estimator.estimate("long", 10_000.0, 10_000_000) == pytest.approx(1 / (99 / 10_099 + MM))


@pytest.mark.parametrize(
    "kwargs",
    [{"lookback_ms": 0}, {"maintenance_margin": 0.0}, {"min_path_points": 0}],
)
def test_rejects_bad_parameters(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        LeverageEstimator(**kwargs)


@given(
    st.lists(
        st.tuples(st.floats(1.0, 1e6), st.integers(0, 20 * HOUR)),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from(["long", "short"]),
    st.floats(1.0, 1e6),
)
def test_matches_brute_force_over_the_window(
    points: list[tuple[float, int]], side: str, price: float
) -> None:
    points.sort(key=lambda point: point[1])
    estimator = LeverageEstimator(lookback_ms=HOUR, min_path_points=1)
    for p, t in points:
        estimator.observe(p, t)
    now = points[-1][1] + 1
    inside = [p for p, t in points if t >= now - HOUR]
    leverage = estimator.estimate(side, price, now)  # type: ignore[arg-type]
    entry = max(inside) if side == "long" else min(inside)
    move = (entry - price) / entry if side == "long" else (price - entry) / entry
    assert leverage == pytest.approx(min(max(1 / (max(move, 0) + MM), 1.0), 125.0))


# -- TierDistribution -------------------------------------------------------------------

events = st.lists(
    st.tuples(
        st.sampled_from([*TIERS, None]),
        st.floats(0.0, 1e9, allow_nan=False, allow_infinity=False),
    ),
    max_size=50,
)


def test_empty_distribution_has_every_tier_at_zero() -> None:
    rows = TierDistribution().rows()
    assert [row["tier"] for row in rows] == list(TIERS)
    assert all(row["count"] == 0 and row["notional"] == 0 and row["share"] == 0 for row in rows)


def test_share_is_by_notional_over_known_tiers() -> None:
    tiers = TierDistribution()
    tiers.add("5-10x", 300.0)
    tiers.add("5-10x", 100.0)
    tiers.add("100x+", 600.0)
    tiers.add(None, 5_000.0)  # unknown tier: no row, no share
    rows = {row["tier"]: row for row in tiers.rows()}
    assert rows["5-10x"] == {"tier": "5-10x", "count": 2, "notional": 400.0, "share": 0.4}
    assert rows["100x+"]["share"] == pytest.approx(0.6)
    assert rows["1-5x"] == {"tier": "1-5x", "count": 0, "notional": 0.0, "share": 0.0}


def test_zero_notional_falls_back_to_count_share() -> None:
    tiers = TierDistribution()
    tiers.add("1-5x", 0.0)
    tiers.add("1-5x", 0.0)
    tiers.add("10-25x", 0.0)
    shares = {row["tier"]: row["share"] for row in tiers.rows()}
    assert shares["1-5x"] == pytest.approx(2 / 3)
    assert shares["10-25x"] == pytest.approx(1 / 3)


def test_unknown_tier_label_is_an_error() -> None:
    with pytest.raises(ValueError):
        TierDistribution().add("200x", 1.0)


@given(events)
def test_shares_sum_to_one_when_any_tier_is_known(items: list[tuple[str | None, float]]) -> None:
    tiers = TierDistribution()
    for tier, notional in items:
        tiers.add(tier, notional)
    rows = tiers.rows()
    total = sum(row["share"] for row in rows)
    if any(tier is not None for tier, _ in items):
        assert total == pytest.approx(1.0)
    else:
        assert total == 0.0
    assert all(row["share"] >= 0 for row in rows)


@given(events, events, st.randoms())
def test_remove_undoes_add_exactly(
    kept: list[tuple[str | None, float]],
    passing: list[tuple[str | None, float]],
    rnd: random.Random,
) -> None:
    tiers = TierDistribution()
    for tier, notional in kept:
        tiers.add(tier, notional)
    before = tiers.rows()
    mixed = list(passing)
    for tier, notional in mixed:
        tiers.add(tier, notional)
    rnd.shuffle(mixed)
    for tier, notional in mixed:
        tiers.remove(tier, notional)
    assert tiers.rows() == before
