"""How well predicted levels matched realized liquidations, against a random baseline. Pure.

A realized liquidation is a *hit* when, at its time, a predicted level was open within `k`
bins of its price. A level counts as open from the time it opened until `grace_ms` after
it was consumed: a level is consumed the moment the price reaches it, which is exactly
when its positions are liquidated, and the exchange reports the liquidations a little
later.

The baseline asks what the same number of levels placed at random would have caught: for
each liquidation, the n distinct bins of the levels open then are replaced by n bins drawn
uniformly without replacement from the span those levels cover (lowest to highest), and
the liquidation is a hit when one of them falls within `k` bins of it. The draw is a
hypergeometric one (how many of the n land in the m bins near the liquidation), repeated
`draws` times from a seeded generator and averaged; its expectation, 1 - C(M-m, n) / C(M, n),
is also given, which the average converges to. `lift` is the hit share over the baseline
share: 1 is no better than chance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import msgspec
import numpy as np


class LevelSpan(NamedTuple):
    price: float  # the level's bin low
    opened: int
    consumed_at: int | None


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
    if levels:
        level_bins = np.floor(np.array([lv.price for lv in levels]) / bin_width + 0.5).astype(
            np.int64
        )
        opened = np.array([lv.opened for lv in levels], dtype=np.int64)
        closed = np.array(
            [np.iinfo(np.int64).max if lv.consumed_at is None else lv.consumed_at for lv in levels],
            dtype=np.int64,
        )
    else:
        level_bins = opened = closed = np.zeros(0, dtype=np.int64)
    notional = np.array([r.notional for r in realized], dtype=np.float64)
    hits = np.zeros(len(realized), dtype=bool)
    covered = np.zeros(len(realized), dtype=bool)
    near, span, count = [], [], []  # per covered liquidation: m, M, n
    for i, event in enumerate(realized):
        active = (opened <= event.time) & (closed >= event.time - grace_ms)
        bins = np.unique(level_bins[active])
        if bins.size == 0:
            near.append(0)
            span.append(1)
            count.append(0)
            continue
        covered[i] = True
        target = math.floor(event.price / bin_width + 1e-9)
        hits[i] = bool(np.min(np.abs(bins - target)) <= k)
        low, high = int(bins[0]), int(bins[-1])
        near.append(max(0, min(high, target + k) - max(low, target - k) + 1))
        span.append(high - low + 1)
        count.append(int(bins.size))
    m = np.array(near, dtype=np.int64)
    big_m = np.array(span, dtype=np.int64)
    n = np.array(count, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if len(realized):
        caught = rng.hypergeometric(
            m[:, None], (big_m - m)[:, None], n[:, None], size=(len(realized), draws)
        )
        drawn = (caught > 0).mean(axis=1)
    else:
        drawn = np.zeros(0)
    expected = np.array(
        [_chance(int(a), int(b), int(c)) for a, b, c in zip(near, span, count, strict=True)]
    )
    total = float(notional.sum())
    hit_notional = float(notional[hits].sum())
    hit_share = hit_notional / total if total else 0.0
    baseline = float((notional * drawn).sum()) / total if total else 0.0
    expected_share = float((notional * expected).sum()) / total if total else 0.0
    return Validation(
        k=k,
        liquidations=len(realized),
        notional=round(total, 2),
        hit_notional=round(hit_notional, 2),
        hit_share=round(hit_share, 6),
        baseline_share=round(baseline, 6),
        expected_baseline_share=round(expected_share, 6),
        lift=round(hit_share / expected_share, 4) if expected_share > 0 else None,
        covered_share=round(float(notional[covered].sum()) / total, 6) if total else 0.0,
        levels=len(levels),
        draws=draws,
        seed=seed,
        grace_ms=grace_ms,
    )


def _chance(near: int, span: int, count: int) -> float:
    """P(at least one of `count` bins drawn from `span` falls in the `near` ones)."""
    if count == 0 or near == 0:
        return 0.0
    if span - near < count:
        return 1.0
    return 1.0 - math.comb(span - near, count) / math.comb(span, count)
