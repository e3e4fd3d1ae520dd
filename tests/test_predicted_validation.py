"""Validation of predicted levels against realized liquidations, and its random baseline."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.analytics.predicted_validation import LevelSpan, Realized, chances, validate

W = 10.0


def test_a_liquidation_within_k_bins_of_an_open_level_is_a_hit() -> None:
    levels = [LevelSpan(1_000.0, 0, None), LevelSpan(2_000.0, 0, None)]
    realized = [
        Realized(10, 1_015.0, 100.0),  # bin 101, level bin 100: one bin away
        Realized(10, 1_500.0, 300.0),  # far from both
    ]
    one = validate(levels, realized, W, k=1)
    assert (one.hit_notional, one.notional, one.hit_share) == (100.0, 400.0, 0.25)
    assert validate(levels, realized, W, k=0).hit_notional == 0.0
    assert one.covered_share == 1.0


def test_a_level_counts_from_its_opening_until_the_grace_after_its_consumption() -> None:
    levels = [LevelSpan(1_000.0, 100, 200)]
    at = [Realized(t, 1_000.0, 1.0) for t in (50, 150, 200 + 60_000, 200 + 60_001)]
    result = validate(levels, at, W, k=0, grace_ms=60_000)
    assert result.hit_notional == 2.0  # at 150, and 60 s after consumption; not before opening
    assert result.covered_share == 0.5


def test_the_baseline_draws_converge_to_their_expectation() -> None:
    levels = [LevelSpan(1_000.0 + 30 * i, 0, None) for i in range(8)]  # bins 100..310
    realized = [Realized(1, 1_000.0 + 7.0 * i, 1_000.0 + i) for i in range(40)]
    result = validate(levels, realized, W, k=1, draws=4_000, seed=7)
    assert result.baseline_share == pytest.approx(result.expected_baseline_share, abs=0.01)
    assert result.lift == pytest.approx(result.hit_share / result.expected_baseline_share, rel=1e-3)
    again = validate(levels, realized, W, k=1, draws=4_000, seed=7)
    assert again == result, "seeded: the same draws give the same baseline"


def test_nothing_to_validate_gives_zeros_not_errors() -> None:
    empty = validate([], [], W)
    assert (empty.notional, empty.hit_share, empty.baseline_share, empty.lift) == (0, 0, 0, None)
    no_levels = validate([], [Realized(1, 1_000.0, 5.0)], W)
    assert (no_levels.hit_share, no_levels.covered_share, no_levels.lift) == (0.0, 0.0, None)
    with pytest.raises(ValueError):
        validate([], [], 0.0)


@settings(max_examples=200, deadline=None)
@given(span=st.integers(1, 60), near=st.integers(0, 60), count=st.integers(0, 60))
def test_the_expectation_is_the_hypergeometric_chance(span: int, near: int, count: int) -> None:
    near, count = min(near, span), min(count, span)
    misses = math.comb(span - near, count) / math.comb(span, count)
    [chance] = chances([near], [span], [count])
    assert chance == pytest.approx(1 - misses if near and count else 0.0, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    bins=st.lists(st.integers(0, 200), min_size=1, max_size=20, unique=True),
    prices=st.lists(st.floats(0, 2_000), min_size=1, max_size=20),
    k=st.integers(0, 3),
)
def test_levels_on_every_liquidation_catch_everything_and_beat_or_match_chance(
    bins: list[int], prices: list[float], k: int
) -> None:
    levels = [LevelSpan(b * W, 0, None) for b in bins]
    levels += [LevelSpan(math.floor(p / W + 1e-9) * W, 0, None) for p in prices]
    realized = [Realized(1, p, 1.0) for p in prices]
    result = validate(levels, realized, W, k=k, draws=50)
    assert result.hit_share == 1.0
    assert result.expected_baseline_share <= 1.0 + 1e-9


def naive(
    levels: list[LevelSpan], event: Realized, k: int, grace: int
) -> tuple[bool, int, int, int]:
    """hit, m, M, n for one liquidation, straight from the definition."""
    bins = sorted(
        {
            math.floor(lv.price / W + 0.5)
            for lv in levels
            if lv.opened <= event.time
            and (lv.consumed is None or lv.consumed + grace >= event.time)
        }
    )
    if not bins:
        return False, 0, 1, 0
    target = math.floor(event.price / W + 1e-9)
    near = [b for b in range(bins[0], bins[-1] + 1) if abs(b - target) <= k]
    return any(abs(b - target) <= k for b in bins), len(near), bins[-1] - bins[0] + 1, len(bins)


@settings(max_examples=150, deadline=None)
@given(
    spans=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 50), st.one_of(st.none(), st.integers(0, 60))),
        max_size=25,
    ),
    events=st.lists(st.tuples(st.integers(0, 80), st.floats(0, 500)), min_size=1, max_size=25),
    k=st.integers(0, 3),
    grace=st.integers(0, 10),
)
def test_the_vectorized_match_is_the_definition(
    spans: list[tuple[int, int, int | None]],
    events: list[tuple[int, float]],
    k: int,
    grace: int,
) -> None:
    levels = [
        LevelSpan(b * W, opened, None if end is None else opened + end) for b, opened, end in spans
    ]
    realized = [Realized(t, p, 1.0) for t, p in events]
    result = validate(levels, realized, W, k=k, draws=10, grace_ms=grace)
    expected = [naive(levels, event, k, grace) for event in realized]
    assert result.hit_notional == sum(hit for hit, *_ in expected)
    covered = sum(n > 0 for *_, n in expected) / len(events)
    assert result.covered_share == pytest.approx(covered, abs=1e-6)  # rounded to 6 places
    chance = chances(*zip(*[(m, big, n) for _, m, big, n in expected], strict=True))
    assert result.expected_baseline_share == pytest.approx(sum(chance) / len(events), abs=1e-6)
