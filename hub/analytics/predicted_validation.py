"""How well predicted levels matched realized liquidations, against a random baseline. Pure.

A realized liquidation is a *hit* when, at its time, a predicted level was open within `k`
bins of its price. A level counts as open from the time it opened until `grace_ms` after
it was consumed: a level is consumed the moment the price reaches it, which is exactly
when its positions are liquidated, and the exchange reports the liquidations a little
later.

The baseline asks what the same number of levels placed at random would have caught: for
each liquidation, the n distinct bins of the levels open then are replaced by n bins drawn
uniformly without replacement from the span those levels cover (lowest to highest, M
bins), and the liquidation is a hit when one of them falls within `k` bins of it (m of the
M). One placement catches it with the hypergeometric chance p = 1 - C(M-m, n) / C(M, n);
`draws` independent placements from a seeded generator catch it Binomial(draws, p) times,
which is what is drawn, and averaged. The expectation p is given too, which the average
converges to. `lift` is the hit share over the expected baseline share: 1 is no better
than chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import msgspec
import numpy as np
from scipy.special import gammaln


class LevelSpan(NamedTuple):
    price: float  # the level's bin low
    opened: int
    consumed: int | None


class Realized(NamedTuple):
    time: int
    price: float
    notional: float


class Validation(msgspec.Struct, frozen=True):
    k: int
    liquidations: int
    notional: float
    hit_notional: float
    hit_share: float
    baseline_share: float  # mean over the seeded draws
    expected_baseline_share: float  # the draws' expectation
    lift: float | None  # None when the baseline catches nothing
    covered_share: float  # notional of liquidations with any level open at the time
    levels: int
    draws: int
    seed: int
    grace_ms: int


def validate(
    levels: Sequence[LevelSpan],
    realized: Sequence[Realized],
    bin_width: float,
    k: int = 1,
    draws: int = 200,
    seed: int = 0,
    grace_ms: int = 60_000,
) -> Validation:
    if bin_width <= 0 or k < 0 or draws < 1:
        raise ValueError("bin_width must be positive, k >= 0 and draws >= 1")
    times = np.array([r.time for r in realized], dtype=np.int64)
    targets = np.floor(np.array([r.price for r in realized]) / bin_width + 1e-9).astype(np.int64)
    notional = np.array([r.notional for r in realized], dtype=np.float64)
    hits, near, span, count = _match(levels, times, targets, bin_width, k, grace_ms)
    expected = chances(near, span, count)
    # Each of the `draws` placements catches a liquidation with probability `expected`,
    # independently: how many do is Binomial(draws, expected), drawn at once rather than
    # as draws x liquidations hypergeometric samples (2 million for a busy window).
    drawn = np.random.default_rng(seed).binomial(draws, expected) / draws
    total = float(notional.sum())
    hit_notional = float(notional[hits].sum())
    hit_share = hit_notional / total if total else 0.0
    baseline = float((notional * drawn).sum()) / total if total else 0.0
    expected_share = float((notional * expected).sum()) / total if total else 0.0
    covered = float(notional[count > 0].sum())
    return Validation(
        k=k,
        liquidations=len(realized),
        notional=round(total, 2),
        hit_notional=round(hit_notional, 2),
        hit_share=round(hit_share, 6),
        baseline_share=round(baseline, 6),
        expected_baseline_share=round(expected_share, 6),
        lift=round(hit_share / expected_share, 4) if expected_share > 0 else None,
        covered_share=round(covered / total, 6) if total else 0.0,
        levels=len(levels),
        draws=draws,
        seed=seed,
        grace_ms=grace_ms,
    )


def _match(
    levels: Sequence[LevelSpan],
    times: np.ndarray,
    targets: np.ndarray,
    bin_width: float,
    k: int,
    grace_ms: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per liquidation: hit, and the draw's m (bins near it within the span), M (bins in
    the span) and n (distinct bins of the levels open then; 0 when none was).

    This runs inside a REST request (a window may hold 10,000 liquidations and 1,200
    levels), so it is vectorized: the set of open levels only changes where a level opens
    or stops counting, so the liquidations are grouped by the segment between two such
    times, and each segment's open bins are found once."""
    size = len(times)
    hits = np.zeros(size, dtype=bool)
    near = np.zeros(size, dtype=np.int64)
    span = np.ones(size, dtype=np.int64)
    count = np.zeros(size, dtype=np.int64)
    if not levels or not size:
        return hits, near, span, count
    level_bins = np.floor(np.array([lv.price for lv in levels]) / bin_width + 0.5).astype(np.int64)
    opened = np.array([lv.opened for lv in levels], dtype=np.int64)
    never = 2**62
    until = np.array([never if lv.consumed is None else lv.consumed for lv in levels])
    until = until + grace_ms  # the last time a level counts
    # levels grouped by bin, so "any level of this bin open" is one reduceat
    order = np.argsort(level_bins, kind="stable")
    level_bins, opened, until = level_bins[order], opened[order], until[order]
    bins, starts = np.unique(level_bins, return_index=True)
    changes = np.unique(np.concatenate([opened, until + 1]))
    segment = np.searchsorted(changes, times, side="right") - 1
    used, of_event = np.unique(segment, return_inverse=True)
    at = changes[np.maximum(used, 0)]
    open_levels = (opened[None, :] <= at[:, None]) & (until[None, :] >= at[:, None])
    open_levels[used < 0] = False  # before any level opened
    open_bins = np.logical_or.reduceat(open_levels, starts, axis=1)  # segments x bins
    n = open_bins.sum(axis=1)
    low = bins[np.argmax(open_bins, axis=1)]
    high = bins[len(bins) - 1 - np.argmax(open_bins[:, ::-1], axis=1)]
    cumulative = np.zeros((len(used), len(bins) + 1), dtype=np.int64)
    np.cumsum(open_bins, axis=1, out=cumulative[:, 1:])
    first = np.searchsorted(bins, targets - k, side="left")
    last = np.searchsorted(bins, targets + k, side="right")
    hits[:] = cumulative[of_event, last] - cumulative[of_event, first] > 0
    count[:] = n[of_event]
    some = count > 0
    low, high = low[of_event], high[of_event]
    span[:] = np.where(some, high - low + 1, 1)
    overlap = np.minimum(high, targets + k) - np.maximum(low, targets - k) + 1
    near[:] = np.where(some, np.clip(overlap, 0, None), 0)
    return hits, near, span, count


def chances(near: np.ndarray, span: np.ndarray, count: np.ndarray) -> np.ndarray:
    """P(at least one of `count` bins drawn from `span` falls in the `near` ones), each
    element: 1 - C(span - near, count) / C(span, count), in logs (spans run to thousands)."""
    near, span, count = (np.asarray(a, dtype=np.float64) for a in (near, span, count))
    rest = span - near
    possible = rest >= count
    rest = np.where(possible, rest, count)  # keeps gammaln's argument valid where unused
    log_miss = (
        gammaln(rest + 1)
        - gammaln(rest - count + 1)
        - gammaln(span + 1)
        + gammaln(span - count + 1)
    )
    chance = np.where(possible, 1.0 - np.exp(log_miss), 1.0)
    return np.where((count == 0) | (near == 0), 0.0, chance)
