"""Insights: where the liquidation map and the order book say something together. Pure.

Kinds (each `{kind, price, side, strength, detail}`, `side` being whose liquidations the
level holds: `long` below the price, `short` above):
- `cluster_wall`: a liquidation cluster within one bin of an order-book wall.
- `level_wall`: a predicted liquidation level within one bin of a wall.
- `void`: the book between mid and a cluster in its reach is thin (most bins under a
  quarter of the side's median bin): little stands between price and those liquidations.
- `imbalance`: bids and asks within 1 % of mid differ by 2x or more; the heavier side
  pushes price toward the other side's liquidations.
Strength is 0..1 (1 - exp(-score)); docs/liquidity.md gives each score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from hub.analytics.liquidity import Liquidity, Wall, bin_low
from hub.models import Cluster, PredictedLevel

VOID_FRACTION = 0.25
VOID_MIN_BINS = 2
IMBALANCE_RATIO = 2.0
PRICE_DECIMALS = 10  # a cluster's price carries binary noise (141.95000000000002)


class Insight(msgspec.Struct, frozen=True):
    kind: str
    price: float
    side: str  # long | short
    strength: float
    detail: str


def money(value: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"${value / size:.1f}{suffix}"
    return f"${value:.0f}"


def price_text(value: float) -> str:
    return f"{value:,.2f}" if value >= 100 else f"{value:.6g}"


def _strength(score: float) -> float:
    return round(1.0 - math.exp(-max(score, 0.0)), 4)


def _side_of(price: float, mid: float) -> str:
    return "long" if price < mid else "short"


def _wall_near(walls: Sequence[Wall], side: str, low: float, high: float) -> Wall | None:
    """The largest wall of `side` (bid: below the price, ask: above) within [low, high]."""
    near = [w for w in walls if w.side == side and low <= w.price <= high]
    return max(near, key=lambda w: w.notional, default=None)


def cluster_walls(
    clusters: Sequence[Cluster], liquidity: Liquidity, tolerance: float
) -> list[Insight]:
    mid = liquidity.mid or 0.0
    found: list[Insight] = []
    for cluster in clusters:
        side = _side_of(cluster.price, mid)
        book_side = "bid" if side == "long" else "ask"
        wall = _wall_near(
            liquidity.walls, book_side, cluster.low - tolerance, cluster.high + tolerance
        )
        if wall is None:
            continue
        found.append(
            Insight(
                "cluster_wall",
                round(cluster.price, PRICE_DECIMALS),
                side,
                _strength(cluster.z_score / 2 + wall.z_score / 3),
                f"{money(cluster.notional)} of {side} liquidations cluster at "
                f"{price_text(cluster.price)}, on a {money(wall.notional)} {wall.side} wall at "
                f"{price_text(wall.price)}: price may stall there, and a break would run "
                "into the liquidations",
            )
        )
    return found


def level_walls(
    levels: Sequence[PredictedLevel], liquidity: Liquidity, tolerance: float
) -> list[Insight]:
    found: list[Insight] = []
    for level in levels:
        book_side = "bid" if level.side == "long" else "ask"
        wall = _wall_near(
            liquidity.walls, book_side, level.price - tolerance, level.price + tolerance
        )
        if wall is None:
            continue
        found.append(
            Insight(
                "level_wall",
                level.price,
                level.side,
                _strength(wall.z_score / 3 + 0.5),
                f"predicted {level.side} liquidations ({money(level.notional)}) at "
                f"{price_text(level.price)} meet a {money(wall.notional)} {wall.side} wall",
            )
        )
    return found


def voids(clusters: Sequence[Cluster], liquidity: Liquidity) -> list[Insight]:
    depth, mid = liquidity.depth, liquidity.mid
    if depth is None or mid is None:
        return []
    width = depth.bin_width
    found: list[Insight] = []
    for cluster in clusters:
        below = cluster.price < mid
        bins = depth.bids if below else depth.asks
        if not bins:
            continue
        reach = bins[0][0] if below else bins[-1][0] + width
        if (below and cluster.price < reach) or (not below and cluster.price > reach):
            continue  # beyond the book OKX sends: nothing can be said
        held = dict(bins)
        median = float(sorted(n for _, n in bins)[len(bins) // 2])
        low, high = (cluster.price, mid) if below else (mid, cluster.price)
        first, last = math.floor(low / width + 1e-9), math.floor(high / width + 1e-9)
        between = [held.get(bin_low(k, width), 0.0) for k in range(first, last + 1)]
        thin = sum(1 for n in between if n < VOID_FRACTION * median)
        if len(between) < VOID_MIN_BINS or thin * 2 <= len(between):
            continue
        side = _side_of(cluster.price, mid)
        found.append(
            Insight(
                "void",
                round(cluster.price, PRICE_DECIMALS),
                side,
                _strength(thin / len(between) + cluster.z_score / 4),
                f"thin book between {price_text(mid)} and the {money(cluster.notional)} "
                f"{side}-liquidation cluster at {price_text(cluster.price)}: "
                f"{thin} of {len(between)} price bins hold under a quarter of the usual depth",
            )
        )
    return found


def imbalances(liquidity: Liquidity) -> list[Insight]:
    band = liquidity.imbalance.get("1")
    if band is None or liquidity.mid is None or band.bid <= 0 or band.ask <= 0:
        return []
    ratio = band.bid / band.ask
    if 1 / IMBALANCE_RATIO < ratio < IMBALANCE_RATIO:
        return []
    heavy, light = ("bids", "asks") if ratio > 1 else ("asks", "bids")
    side = "short" if ratio > 1 else "long"
    direction = (
        "up, toward short liquidations above"
        if ratio > 1
        else ("down, toward long liquidations below")
    )
    factor = max(ratio, 1 / ratio)
    return [
        Insight(
            "imbalance",
            liquidity.mid,
            side,
            _strength(math.log2(factor) / 2),
            f"{heavy} outweigh {light} {factor:.1f} to 1 within 1 % of "
            f"{price_text(liquidity.mid)}: pressure is {direction}",
        )
    ]


def insights(
    clusters: Sequence[Cluster],
    liquidity: Liquidity | None,
    levels: Sequence[PredictedLevel] = (),
) -> list[Insight]:
    """Every insight, strongest first; none without a synced book."""
    if liquidity is None or not liquidity.synced or liquidity.depth is None:
        return []
    tolerance = liquidity.depth.bin_width
    found = (
        cluster_walls(clusters, liquidity, tolerance)
        + level_walls(levels, liquidity, tolerance)
        + voids(clusters, liquidity)
        + imbalances(liquidity)
    )
    return sorted(found, key=lambda i: -i.strength)
