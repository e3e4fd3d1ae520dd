"""Clusters: the peaks of the liquidation density, measured against the heatmap bins.

`find_clusters` turns one density (see `hub.analytics.density`) plus the heatmap bins into
`ClusterShape`s; `ClusterTracker` gives them ids that survive small moves, producing the
wire `hub.models.Cluster`. Everything here is pure except the tracker's own memory of the
previous update.

Decisions:

* A peak is a maximal run of equal values (so a plateau is one peak, centred on the run)
  whose neighbouring runs are both lower; "equal" allows float round-off, so a plateau
  that came out of an FFT is still one peak. The grid ends count as lower: a concentration at
  the edge of the visible range is reported at the edge rather than dropped.
* Peaks below ``min_relative_height`` x the global maximum are noise. Peaks closer than one
  bandwidth are one cluster: taken in descending height, a peak within a bandwidth of one
  already kept widens that one's [low, high] instead of standing alone.
* ``low``/``high`` are the half-height crossings, interpolated linearly between grid
  points. Walking outward, a valley (the density starting to rise again) reached before
  half height ends the walk there, so a cluster never claims its neighbour's slope; the grid
  end does too.
* ``z_score`` compares the peak with every grid point: ``(peak - mean) / std`` (population
  std). Over the whole grid the mean and std describe the "background" the peak stands out
  of, need no extra parameter, and are the same for every cluster of one update, so
  z-scores rank clusters by height. A constant density has std 0 and gets z 0.
* Shapes are exact; a `Cluster` (what clients see) is rounded for output (`hub.models`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from hub.models import Cluster, RiskLevel, round_notional, round_significant

# Steps smaller than this fraction of the maximum are float round-off (an FFT convolution
# leaves ~1e-16 of the total), not shape: they neither end a plateau nor make a valley.
_NOISE = 1e-9


class ClusterShape(NamedTuple):
    price: float
    low: float
    high: float
    peak_density: float
    notional: float
    count: int
    long_share: float
    z_score: float
    risk: RiskLevel


def risk_level(z: float) -> RiskLevel:
    if z < 1.0:
        return "low"
    if z < 2.0:
        return "moderate"
    if z < 3.0:
        return "high"
    return "extreme"


def find_clusters(
    density: np.ndarray,
    start: float,
    step: float,
    bandwidth: float,
    bin_low: np.ndarray,
    bin_long: np.ndarray,
    bin_short: np.ndarray,
    bin_count: np.ndarray,
    bin_width: float,
    max_clusters: int = 20,
    min_relative_height: float = 0.05,
) -> list[ClusterShape]:
    """Peaks of `density` (sampled at ``start + i * step``), largest notional first.

    Bin ``i`` covers ``[bin_low[i], bin_low[i] + bin_width)`` and holds ``bin_long[i]`` +
    ``bin_short[i]`` notional over ``bin_count[i]`` events.
    """
    density = np.asarray(density, dtype=np.float64)
    if density.size == 0 or max_clusters <= 0:
        return []
    top = float(density.max())
    if not top > 0.0:
        return []

    noise = _NOISE * top
    floor = min_relative_height * top
    point = density.item  # walked point by point: a walk is a few bandwidths long
    # (position in grid units, height, low, high), positions may be fractional.
    peaks: list[list[float]] = []
    for first, last in _peak_runs(density, noise):
        height = max(point(i) for i in range(first, last + 1))
        if height < floor:
            continue
        peaks.append(
            [
                (first + last) / 2.0,
                height,
                first - _half_height_reach(density, first, -1, height, noise),
                last + _half_height_reach(density, last, 1, height, noise),
            ]
        )

    merged: list[list[float]] = []
    reach = bandwidth / step
    for peak in sorted(peaks, key=lambda p: (-p[1], p[0])):
        near = [kept for kept in merged if abs(kept[0] - peak[0]) < reach]
        if near:
            kept = min(near, key=lambda k: abs(k[0] - peak[0]))
            kept[2] = min(kept[2], peak[2])
            kept[3] = max(kept[3], peak[3])
        else:
            merged.append(peak)

    # Population std, two passes as numpy's; spelled out: np.std's wrapping cost as much as
    # finding the peaks.
    mean = float(density.sum()) / density.size
    deviations = density - mean
    std = math.sqrt(float(deviations @ deviations) / density.size)
    # Bins are sorted by price: a cluster's bins are one slice, summed from running sums.
    centres = np.asarray(bin_low, dtype=np.float64) + bin_width / 2.0
    lows = [start + peak[2] * step for peak in merged]
    highs = [start + peak[3] * step for peak in merged]
    firsts = centres.searchsorted(lows, side="left").tolist()
    lasts = centres.searchsorted(highs, side="right").tolist()
    sums_long = [0.0, *np.asarray(bin_long, dtype=np.float64).cumsum().tolist()]
    sums_short = [0.0, *np.asarray(bin_short, dtype=np.float64).cumsum().tolist()]
    sums_count = [0, *np.asarray(bin_count, dtype=np.int64).cumsum().tolist()]

    shapes = []
    for (position, height, _, _), low, high, first, last in zip(
        merged, lows, highs, firsts, lasts, strict=True
    ):
        long_notional = sums_long[last] - sums_long[first]
        short_notional = sums_short[last] - sums_short[first]
        notional = long_notional + short_notional
        z = (height - mean) / std if std > 0.0 else 0.0
        shapes.append(
            ClusterShape(
                price=start + position * step,
                low=low,
                high=high,
                peak_density=height,
                notional=notional,
                count=sums_count[last] - sums_count[first],
                long_share=long_notional / notional if notional > 0.0 else 0.0,
                z_score=z,
                risk=risk_level(z),
            )
        )
    shapes.sort(key=lambda s: (-s.notional, -s.peak_density, s.price))
    return shapes[:max_clusters]


class ClusterTracker:
    """Gives clusters a stable id across updates: a peak that stays within one bandwidth of a
    previous cluster keeps its id.

    Matching is greedy by distance, closest pairs first, each previous id used at most once.
    Only the previous update is remembered, so a cluster that vanishes for one update comes
    back with a new id; ids count up from 1 and are never reused.
    """

    def __init__(self, bandwidth: float) -> None:
        self._bandwidth = bandwidth
        self._previous: list[tuple[int, float]] = []
        self._next_id = 1

    def start_over(self, bandwidth: float) -> None:
        """Forget the previous peaks (a new epoch has new ones) but keep counting ids, so
        an id is never reused: alert memory and alert ids key on it."""
        self._bandwidth = bandwidth
        self._previous = []

    def track(self, shapes: list[ClusterShape]) -> list[Cluster]:
        bandwidth = self._bandwidth
        pairs = sorted(
            (distance, index, cluster_id)
            for index, shape in enumerate(shapes)
            for cluster_id, price in self._previous
            if (distance := abs(shape.price - price)) <= bandwidth
        )
        ids: list[int | None] = [None] * len(shapes)
        taken: set[int] = set()
        for _, index, cluster_id in pairs:
            if ids[index] is None and cluster_id not in taken:
                ids[index] = cluster_id
                taken.add(cluster_id)

        clusters = []
        significant = round_significant
        for shape, cluster_id in zip(shapes, ids, strict=True):
            if cluster_id is None:
                cluster_id = self._next_id
                self._next_id += 1
            clusters.append(
                Cluster(
                    cluster_id,
                    significant(shape.price),
                    significant(shape.low),
                    significant(shape.high),
                    round_notional(shape.notional),
                    shape.count,
                    significant(shape.long_share),
                    significant(shape.z_score),
                    shape.risk,
                )
            )
        self._previous = [(cluster.id, cluster.price) for cluster in clusters]
        return clusters


def _peak_runs(density: np.ndarray, noise: float) -> list[tuple[int, int]]:
    """(first, last) index of every run of equal values higher than both neighbouring runs."""
    steps = density[1:] - density[:-1]
    rises = steps > noise
    moves = (rises | (steps < -noise)).nonzero()[0]  # step k: from point k to k + 1
    if not len(moves):
        return [(0, density.size - 1)]
    up = rises[moves]
    # A run between two moves is a peak when the first rises into it and the second falls.
    inner = (up[:-1] & ~up[1:]).nonzero()[0]
    runs = list(zip((moves[inner] + 1).tolist(), moves[inner + 1].tolist(), strict=True))
    if not up[0]:  # the grid's start falls away: the first run is a peak
        runs.append((0, int(moves[0])))
    if up[-1]:  # and its end, rising into it
        runs.append((int(moves[-1]) + 1, density.size - 1))
    return runs


def _half_height_reach(
    density: np.ndarray, edge: int, direction: int, height: float, noise: float
) -> float:
    """Grid steps from density[edge] (the peak's edge) to half `height`, walking in
    `direction` (1 or -1). Stops early at the first valley (a rise of more than `noise`),
    and at the end of `density` if neither comes."""
    half = height / 2.0
    point = density.item
    end = density.size if direction > 0 else -1
    steps = 0
    previous = point(edge)
    for index in range(edge + direction, end, direction):
        value = point(index)
        steps += 1
        if value < half:
            return steps - 1 + (previous - half) / (previous - value)
        if value - previous > noise:
            return float(steps - 1)  # a valley, reached first
        previous = value
    return float(steps)
