from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import fftconvolve

from hub.analytics.clusters import ClusterShape, ClusterTracker, find_clusters, risk_level
from hub.analytics.density import KernelDensity
from hub.models import Cluster

START, STEP, SIZE, H = 51_000.0, 20.0, 901, 180.0
GRID = START + STEP * np.arange(SIZE)
HALF_WIDTH = math.sqrt(2 * math.log(2))  # half-height half-width of a Gaussian, in sigmas


def heatmap_bins(
    prices: np.ndarray, notionals: np.ndarray, long: np.ndarray, width: float = STEP
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The hub's bins: index k covers [k * width, (k + 1) * width)."""
    index = np.floor(prices / width).astype(np.int64)
    first = index.min()
    slot = index - first
    return (
        (np.arange(slot.max() + 1) + first) * width,
        np.bincount(slot, np.where(long, notionals, 0.0)),
        np.bincount(slot, np.where(long, 0.0, notionals)),
        np.bincount(slot),
    )


def clusters_of(prices: np.ndarray, notionals: np.ndarray, long: np.ndarray, **kwargs):
    density = KernelDensity(START, STEP, SIZE, H)
    density.add_many(prices, notionals)
    return find_clusters(
        density.values(), START, STEP, H, *heatmap_bins(prices, notionals, long), STEP, **kwargs
    )


def gaussian(centre: float, sigma: float, height: float = 1.0) -> np.ndarray:
    return height * np.exp(-0.5 * ((GRID - centre) / sigma) ** 2)


def shapes_of(density: np.ndarray, bandwidth: float = H, **kwargs) -> list[ClusterShape]:
    empty = np.zeros(0)
    return find_clusters(
        density, START, STEP, bandwidth, empty, empty, empty, empty, STEP, **kwargs
    )


# (centre, events, mean notional, long fraction): 4.0M, 9.0M and 2.1M of notional, sized so
# that the three z-scores land mid-way in three different risk levels.
PLANTED = [
    (58_000.0, 1_000, 4_000.0, 0.2),
    (61_000.0, 3_000, 3_000.0, 0.7),
    (64_500.0, 700, 3_000.0, 0.5),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_clusters(seed: int) -> None:
    rng = np.random.default_rng(seed)
    clumps = [
        (centre, rng.normal(centre, 60.0, n), rng.exponential(mean, n), rng.random(n) < share)
        for centre, n, mean, share in PLANTED
    ]
    # A thin uniform background: many small liquidations, no cluster of their own.
    n = 2_000
    background = (rng.uniform(52_000, 68_000, n), rng.exponential(100.0, n), rng.random(n) < 0.5)
    prices, notionals, long = (
        np.concatenate([clump[column + 1] for clump in clumps] + [background[column]])
        for column in range(3)
    )

    shapes = clusters_of(prices, notionals, long)

    planted = sorted(clumps, key=lambda clump: -clump[2].sum())
    assert [c[0] for c in planted] == [61_000.0, 58_000.0, 64_500.0]
    assert len(shapes) == len(planted)
    for shape, (centre, _, planted_notional, planted_long) in zip(shapes, planted, strict=True):
        assert abs(shape.price - centre) <= STEP
        assert shape.low < shape.price < shape.high
        # Nearly all of a planted clump (sigma 60) lies inside its half-height bounds (~220).
        assert shape.notional == pytest.approx(planted_notional.sum(), rel=0.03)
        inside = (background[0] >= shape.low - STEP) & (background[0] <= shape.high + STEP)
        assert len(planted_notional) <= shape.count <= len(planted_notional) + inside.sum()
        expected_share = planted_notional[planted_long].sum() / planted_notional.sum()
        assert shape.long_share == pytest.approx(expected_share, abs=0.02)
    # Same spread, so the biggest clump is also the highest peak and the most unusual.
    assert shapes[0].z_score > shapes[1].z_score > shapes[2].z_score
    assert [s.risk for s in shapes] == ["extreme", "high", "moderate"]


def test_half_height_bounds_of_one_gaussian() -> None:
    density = KernelDensity(START, STEP, SIZE, H)
    density.add(60_007.0, 1e6)
    (shape,) = shapes_of(density.values())
    assert shape.price == 60_000.0
    assert shape.low == pytest.approx(60_007.0 - HALF_WIDTH * H, abs=0.25 * STEP)
    assert shape.high == pytest.approx(60_007.0 + HALF_WIDTH * H, abs=0.25 * STEP)
    assert shape.peak_density == density.values().max()


def test_peaks_closer_than_a_bandwidth_merge_into_the_higher() -> None:
    # Narrow peaks (sigma 2 steps) 7 steps = 140 apart: two maxima, less than H apart.
    density = gaussian(60_000.0, 40.0) + gaussian(60_140.0, 40.0, 0.6)
    higher, lower = shapes_of(density, bandwidth=50.0)
    assert (higher.price, lower.price) == (60_000.0, 60_140.0)
    assert higher.peak_density > lower.peak_density

    (merged,) = shapes_of(density)
    assert merged == higher._replace(high=lower.high)
    assert merged.high > lower.price


def test_bounds_stop_at_a_valley_above_half_height() -> None:
    density = gaussian(60_000.0, 200.0) + gaussian(60_500.0, 200.0, 0.8)
    left, right = sorted(shapes_of(density), key=lambda s: s.price)
    peak_left, peak_right = (int(np.argmin(abs(GRID - s.price))) for s in (left, right))
    valley = GRID[peak_left + int(np.argmin(density[peak_left:peak_right]))]
    assert density[valley == GRID][0] > 0.5 * density.max()
    assert left.high == valley
    assert right.low == valley
    assert left.low == pytest.approx(60_000.0 - HALF_WIDTH * 200.0, abs=STEP)


def test_plateau_edge_and_small_peaks() -> None:
    density = np.zeros(SIZE)
    density[400:405] = 10.0
    density[0] = 4.0  # falls away from the grid's first point: a peak at the edge
    density[700] = 0.4  # 4% of the maximum: noise at the default 5%
    shapes = shapes_of(density)
    assert [s.price for s in shapes] == [START + 402 * STEP, START]
    assert shapes[1].low == START
    assert len(shapes_of(density, min_relative_height=0.03)) == 3
    assert len(shapes_of(density, max_clusters=1)) == 1


def test_round_off_on_a_plateau_makes_no_peaks() -> None:
    # A box smoothed by FFT is flat to ~1e-16 on top, wobbling up and down in the last bits.
    box = np.zeros(SIZE)
    box[300:600] = 1.0
    density = fftconvolve(box, gaussian(GRID[450], 2 * STEP)[420:481], mode="same")
    assert (np.diff(density[330:570]) > 0).any() and (np.diff(density[330:570]) < 0).any()
    (plateau,) = shapes_of(density)
    assert plateau.price == pytest.approx(START + 449.5 * STEP)
    assert plateau.low == pytest.approx(START + 299.5 * STEP, abs=STEP)
    assert plateau.high == pytest.approx(START + 599.5 * STEP, abs=STEP)


def test_bins_count_by_centre_and_long_share() -> None:
    density = gaussian(60_000.0, H)
    (shape,) = find_clusters(
        density,
        START,
        STEP,
        H,
        bin_low=np.array([59_700.0, 59_780.0, 60_000.0, 60_185.0, 60_300.0]),
        bin_long=np.array([1.0, 2.0, 30.0, 0.0, 500.0]),
        bin_short=np.array([1.0, 0.0, 10.0, 7.0, 500.0]),
        bin_count=np.array([1, 1, 4, 2, 9]),
        bin_width=40.0,
    )
    # Half height at 60,000 -+ 212: bins 59,780 (centre 59,800) to 60,185 (centre 60,205).
    assert (shape.notional, shape.count, shape.long_share) == (49.0, 7, 32.0 / 49.0)
    (empty,) = shapes_of(density)
    assert (empty.notional, empty.count, empty.long_share) == (0.0, 0, 0.0)


def test_z_score_definition_and_degenerate_densities() -> None:
    density = gaussian(60_000.0, H, 5.0) + gaussian(63_000.0, H, 2.0)
    shapes = shapes_of(density)
    expected = [(5.0 - density.mean()) / density.std(), (2.0 - density.mean()) / density.std()]
    assert [s.z_score for s in sorted(shapes, key=lambda s: s.price)] == pytest.approx(expected)
    (flat,) = shapes_of(np.full(SIZE, 3.0))
    assert (flat.z_score, flat.risk) == (0.0, "low")
    assert shapes_of(np.zeros(0)) == []
    assert shapes_of(np.zeros(SIZE)) == []


@pytest.mark.parametrize(
    ("z", "risk"),
    [
        (-2.0, "low"),
        (0.999, "low"),
        (1.0, "moderate"),
        (1.99, "moderate"),
        (2.0, "high"),
        (2.999, "high"),
        (3.0, "extreme"),
        (40.0, "extreme"),
    ],
)
def test_risk_level(z: float, risk: str) -> None:
    assert risk_level(z) == risk


def shape(price: float, notional: float = 1.0) -> ClusterShape:
    return ClusterShape(price, price - 200, price + 200, 1.0, notional, 3, 0.5, 2.5, "high")


def test_tracker_keeps_ids_for_small_moves_and_never_reuses() -> None:
    tracker = ClusterTracker(H)
    first = tracker.track([shape(60_000.0, 5.0), shape(62_000.0, 3.0)])
    assert [c.id for c in first] == [1, 2]
    assert first[0] == Cluster(1, 60_000.0, 59_800.0, 60_200.0, 5.0, 3, 0.5, 2.5, "high")

    moved = tracker.track([shape(62_000.0 + H, 9.0), shape(65_000.0), shape(60_000.0 - 100)])
    assert [c.id for c in moved] == [2, 3, 1]

    # 60,000 vanished for an update: when it comes back it is a new cluster.
    assert [c.id for c in tracker.track([shape(65_050.0)])] == [3]
    assert [c.id for c in tracker.track([shape(59_900.0), shape(65_100.0)])] == [4, 3]
    assert [c.id for c in tracker.track([])] == []
    assert [c.id for c in tracker.track([shape(65_100.0)])] == [5]


def test_tracker_gives_a_contested_id_to_the_closest() -> None:
    tracker = ClusterTracker(H)
    tracker.track([shape(60_000.0)])
    split = tracker.track([shape(60_150.0, 9.0), shape(59_950.0)])
    assert [c.id for c in split] == [2, 1]
    assert [c.id for c in tracker.track([shape(59_950.0 - H - 1)])] == [3]


@settings(deadline=None, max_examples=60)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=50_000.0, max_value=70_000.0),
            st.floats(min_value=1.0, max_value=1e6),
            st.booleans(),
        ),
        min_size=1,
        max_size=80,
    ),
    st.integers(min_value=1, max_value=20),
)
def test_cluster_invariants(events: list[tuple[float, float, bool]], max_clusters: int) -> None:
    prices, notionals, long = (np.array(column) for column in zip(*events, strict=True))
    density = KernelDensity(START, STEP, SIZE, H)
    density.add_many(prices, notionals)
    shapes = clusters_of(prices, notionals, long, max_clusters=max_clusters)

    assert len(shapes) <= max_clusters
    assert [s.notional for s in shapes] == sorted((s.notional for s in shapes), reverse=True)
    top = density.values().max()
    for s in shapes:
        assert START <= s.low <= s.price <= s.high <= GRID[-1]
        assert 0.05 * top <= s.peak_density <= top
        assert 0.0 <= s.long_share <= 1.0
        assert s.notional <= notionals.sum() * (1 + 1e-9)
        assert s.risk == risk_level(s.z_score)
    prices_found = sorted(s.price for s in shapes)
    assert all(b - a >= H - 1e-6 for a, b in itertools.pairwise(prices_found))
    clusters = ClusterTracker(H).track(shapes)
    assert [c.id for c in clusters] == list(range(1, len(shapes) + 1))
