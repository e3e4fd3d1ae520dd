from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import gaussian_kde

from hub.analytics.density import KernelDensity

# BTC-like: +-15% around 60,000 in steps of 20, bandwidth 0.3% of price (9 steps).
BTC = {"start": 51_000.0, "step": 20.0, "size": 901, "bandwidth": 180.0}
# ADA-like: same shape at a price of 0.45 (bandwidth 6 steps).
ADA = {"start": 0.3825, "step": 0.000225, "size": 601, "bandwidth": 0.00135}


def grid(params: dict) -> np.ndarray:
    return params["start"] + params["step"] * np.arange(params["size"])


def reference(prices: np.ndarray, weights: np.ndarray, params: dict) -> np.ndarray:
    """scipy's weighted KDE with sigma = bandwidth, as notional per grid step."""
    sigma = params["bandwidth"]
    kde = gaussian_kde(
        prices, weights=weights, bw_method=sigma / math.sqrt(np.cov(prices, aweights=weights))
    )
    assert kde.covariance[0, 0] == pytest.approx(sigma**2, rel=1e-9)
    return kde(grid(params)) * weights.sum() * params["step"]


def liquidations(rng: np.random.Generator, n: int, centre: float) -> tuple[np.ndarray, np.ndarray]:
    """Clumps around a few prices over a uniform background, some of it off the grid."""
    clumps = rng.choice(centre * np.array([0.93, 0.98, 1.0, 1.04]), size=n // 2)
    prices = np.concatenate(
        (
            rng.normal(clumps, centre * 0.004),
            rng.uniform(centre * 0.82, centre * 1.18, size=n - n // 2),
        )
    )
    weights = rng.lognormal(mean=8.0, sigma=1.5, size=n)
    return prices, weights


@pytest.mark.parametrize(
    ("params", "centre", "seed", "n"),
    [
        (BTC, 60_000.0, 0, 300),
        (BTC, 60_000.0, 1, 2_000),
        (BTC, 60_000.0, 2, 10_000),
        (BTC, 60_000.0, 3, 10_000),
        (ADA, 0.45, 4, 500),
        (ADA, 0.45, 5, 10_000),
    ],
)
def test_matches_scipy_gaussian_kde(params: dict, centre: float, seed: int, n: int) -> None:
    prices, weights = liquidations(np.random.default_rng(seed), n, centre)
    density = KernelDensity(**params)
    density.add_many(prices, weights)

    expected = reference(prices, weights, params)
    assert np.abs(density.values() - expected).max() <= 1e-3 * expected.max()


def test_single_adds_match_add_many_and_removes_restore() -> None:
    rng = np.random.default_rng(7)
    prices, weights = liquidations(rng, 3_000, 60_000.0)
    batch = KernelDensity(**BTC)
    batch.add_many(prices, weights)

    single = KernelDensity(**BTC)
    for price, weight in zip(prices.tolist(), weights.tolist(), strict=True):
        single.add(price, weight)
    before = single.values().copy()
    np.testing.assert_allclose(before, batch.values(), rtol=0, atol=1e-9 * before.max())

    extra_prices, extra_weights = liquidations(rng, 1_000, 61_000.0)
    single.add_many(extra_prices, extra_weights)
    grown = single.values().copy()
    assert np.abs(grown - before).max() > 0.01 * before.max()

    for price, weight in zip(extra_prices.tolist(), extra_weights.tolist(), strict=True):
        single.add(price, -weight)
    np.testing.assert_allclose(single.values(), before, rtol=0, atol=1e-9 * before.max())
    assert np.abs(single.values() - reference(prices, weights, BTC)).max() <= 1e-3 * before.max()


def one_point(price: float, weight: float, params: dict) -> np.ndarray:
    h = params["bandwidth"]
    z = (grid(params) - price) / h
    return weight * np.exp(-0.5 * z**2) / (h * math.sqrt(2 * math.pi)) * params["step"]


def test_single_point_within_documented_bound() -> None:
    density = KernelDensity(**BTC)
    density.add(60_007.3, 1_000.0)
    h, step = BTC["bandwidth"], BTC["step"]
    own_peak = 1_000.0 / (h * math.sqrt(2 * math.pi)) * step
    bound = (step / 4 / h) ** 2 / 8 * own_peak
    assert np.abs(density.values() - one_point(60_007.3, 1_000.0, BTC)).max() <= bound


def test_values_cached_read_only_and_invalidated() -> None:
    density = KernelDensity(**BTC)
    density.add(60_000.0, 5.0)
    first = density.values()
    assert density.values() is first
    assert first.dtype == np.float64 and first.shape == (BTC["size"],)
    with pytest.raises(ValueError):
        first[0] = 1.0
    density.add(60_000.0, 5.0)
    assert density.values() is not first
    assert density.values().max() == pytest.approx(2 * first.max())


def test_points_beyond_padded_grid_and_non_finite_are_ignored() -> None:
    density = KernelDensity(**BTC)
    end = BTC["start"] + BTC["step"] * (BTC["size"] - 1)
    for price in (
        BTC["start"] - 6 * BTC["bandwidth"],
        end + 6 * BTC["bandwidth"],
        math.nan,
        math.inf,
    ):
        density.add(price, 1e9)
    density.add(60_000.0, math.nan)
    assert not density.values().any()


def test_points_just_off_the_grid_still_count() -> None:
    density = KernelDensity(**BTC)
    price = BTC["start"] - 2 * BTC["bandwidth"]
    density.add(price, 1e6)
    expected = one_point(price, 1e6, BTC)
    # Within 3 bandwidths of the point; beyond 5 the kernel is truncated.
    np.testing.assert_allclose(density.values()[:27], expected[:27], rtol=1e-3)


def test_clear() -> None:
    density = KernelDensity(**BTC)
    density.add_many(np.array([59_000.0, 61_000.0]), np.array([1.0, 2.0]))
    density.add(60_000.0, 3.0)
    assert density.values().any()
    density.clear()
    assert not density.values().any()
    density.add(60_000.0, 3.0)
    assert density.values().argmax() == 450


@pytest.mark.parametrize(
    "kwargs",
    [
        {"step": 0.0},
        {"bandwidth": -1.0},
        {"size": 0},
        {"oversample": 0},
    ],
)
def test_rejects_bad_grid(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        KernelDensity(**(BTC | kwargs))


SMALL = {"start": 100.0, "step": 1.0, "size": 120, "bandwidth": 6.0}
points = st.lists(
    st.tuples(
        st.floats(min_value=60.0, max_value=260.0),
        st.floats(min_value=1e-3, max_value=1e7),
        st.booleans(),
    ),
    max_size=60,
)


@settings(deadline=None)
@given(points)
def test_never_negative_and_removal_matches_never_added(
    drawn: list[tuple[float, float, bool]],
) -> None:
    density = KernelDensity(**SMALL)
    kept = KernelDensity(**SMALL)
    for price, weight, _ in drawn:
        density.add(price, weight)
    assert (density.values() >= 0).all()
    for price, weight, remove in drawn:
        if remove:
            density.add(price, -weight)
        else:
            kept.add(price, weight)
    values = density.values()
    assert (values >= 0).all()
    # Cancellation error scales with everything that ever went through the grid.
    scale = sum(weight for _, weight, _ in drawn) * SMALL["step"] / SMALL["bandwidth"]
    np.testing.assert_allclose(values, kept.values(), rtol=0, atol=1e-12 * scale)


@settings(deadline=None)
@given(points)
def test_add_then_remove_everything_is_empty(drawn: list[tuple[float, float, bool]]) -> None:
    density = KernelDensity(**SMALL)
    prices = np.array([price for price, _, _ in drawn])
    weights = np.array([weight for _, weight, _ in drawn])
    density.add_many(prices, weights)
    density.values()
    density.add_many(prices, -weights)
    scale = weights.sum() * SMALL["step"] / SMALL["bandwidth"]
    assert density.values().max(initial=0.0) <= 1e-12 * scale
