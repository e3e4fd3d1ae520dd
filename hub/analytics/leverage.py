"""Leverage of liquidated positions: the per-symbol estimate and the per-window tier breakdown.

Owns `tier_of` (the tier labels of docs/analytics.md), `LeverageEstimator` (one per symbol:
the recent price path and the estimate made from it) and `TierDistribution` (one per window:
count and notional per tier, kept incrementally as events enter and leave the window).

The method, and why it is only an estimate. An exchange never publishes a liquidated position's
entry or leverage, only where it was closed. A long liquidated at price P was most plausibly
opened above P, so its entry is taken as the highest price of the recent path (the lowest, for a
short) within `lookback_ms`. With the adverse move m = (entry - P) / entry (P - entry for a
short, floored at 0), an isolated position is liquidated when its margin, 1 / leverage, is used
up down to the maintenance margin, so leverage ~= 1 / (m + maintenance_margin), clamped to
[1, the exchange's maximum leverage]. The extreme is the entry with the largest move, so the
result is the lowest leverage consistent with an entry inside the lookback: for such positions
it is a lower bound. Its limits:
- a position opened before the lookback saw a larger move than the path shows, so its leverage
  is overestimated;
- cross-margin positions are backed by the whole account, so what is measured is the account's
  effective leverage; fees and funding are ignored;
- maintenance margin is tiered by position size, so large positions were less leveraged than
  estimated; each exchange's smallest bracket for its BTC perpetual is assumed (`MARGIN_RULES`,
  sources beside it), and altcoins, whose brackets start higher, come out more leveraged than
  they were;
- the path is, for now, liquidation prices only, of every exchange: Binance samples them (one
  per symbol per second) and reports fill prices, Bybit and OKX report bankruptcy prices (the
  price at which the margin is gone, further from the market than the fill); longs fill below
  the market and shorts above, which widens the path.
Another reference was considered: the entry must follow the last time the price was at or beyond
P, since a position liquidated at P would have been closed then. It is sounder on a continuous
trade path, but on a sparse, noisy liquidation path every bounce inside a cascade resets it and
pushes the estimate to the clamp; worth revisiting once trades or the mark price feed the path.

The path is kept as two monotonic deques (running max and min over the lookback), so observe()
and estimate() are amortised O(1) and memory holds only the points that can still be an extreme.
Times are clamped to the latest seen so the deques stay ordered; a late point therefore lives a
little longer than its own time would allow.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from typing import NamedTuple

import numpy as np

from hub.models import Side, round_significant

TIERS: tuple[str, ...] = ("1-5x", "5-10x", "10-25x", "25-50x", "50-100x", "100x+")
_TIER_FLOORS = (5.0, 10.0, 25.0, 50.0, 100.0)  # lower bound of TIERS[1:]
MIN_LEVERAGE = 1.0
MAX_LEVERAGE = 125.0


class MarginRule(NamedTuple):
    maintenance_margin: float  # of the smallest bracket
    max_leverage: float


# Each exchange's smallest-bracket rule for its BTC perpetual, from its published tables:
# Binance "Leverage & Margin", Bybit "Risk Limit", OKX "Position tiers"; Bitget's BTCUSDT
# tiers as announced 2025-09-26 (0-200,000 USDT: 150x, 0.40 %); Gate's help centre "Risk
# Limit" (BTCUSDT tier 1: 0.40 %, 125x); Deribit's "Linear Perpetual" margin page (BTC:
# 1 % + 0.005 % per BTC held, initial 2 %, so 50x, the max_leverage its instruments list
# gives BTC futures); BitMEX "Risk Limits" (XBTUSD base maintenance 0.50 %, initial 1.00 %:
# 100x). HTX sets maintenance as an adjustment factor over leverage and its BTC table could
# not be read; its BTC and ETH perpetuals go to 200x, and Bybit's 0.5 % stands in for the
# bracket (docs/exchanges.md says so).
MARGIN_RULES = {
    "binance": MarginRule(0.004, 125.0),
    "bybit": MarginRule(0.005, 100.0),
    "okx": MarginRule(0.004, 100.0),
    "bitget": MarginRule(0.004, 150.0),
    "gate": MarginRule(0.004, 125.0),
    "htx": MarginRule(0.005, 200.0),
    "deribit": MarginRule(0.01, 50.0),
    "bitmex": MarginRule(0.005, 100.0),
}
# Notional sums are kept in integer micro-units of the quote currency so that remove() restores
# exactly what add() changed: float sums drift over millions of pairs and can leave a negative
# or phantom notional in a tier that no longer holds any event.
_MICROS = 1_000_000


def tier_of(leverage: float) -> str:
    """The tier label for a leverage; below 1x (not a real leverage) still reads as "1-5x"."""
    return TIERS[bisect_right(_TIER_FLOORS, leverage)]


def tier_index(leverage: np.ndarray) -> np.ndarray:
    """`tier_of` elementwise, as indices into TIERS."""
    return np.searchsorted(_TIER_FLOORS, leverage, side="right")


def _is_price(value: float) -> bool:
    return value > 0.0 and math.isfinite(value)


class LeverageEstimator:
    """Per-symbol recent price path; estimates the leverage of a liquidated position.

    Call estimate() for an event before observe() of its price, so that the event does not
    count as its own entry.
    """

    def __init__(
        self,
        lookback_ms: int = 4 * 3600_000,
        maintenance_margin: float = 0.004,
        min_path_points: int = 2,
    ) -> None:
        if lookback_ms <= 0:
            raise ValueError(f"lookback_ms must be positive, got {lookback_ms}")
        if not 0.0 < maintenance_margin < 1.0:
            raise ValueError(f"maintenance_margin must be in (0, 1), got {maintenance_margin}")
        if min_path_points < 1:
            raise ValueError(f"min_path_points must be at least 1, got {min_path_points}")
        self._lookback_ms = lookback_ms
        self._maintenance_margin = maintenance_margin
        self._min_path_points = min_path_points
        self._latest = -math.inf
        # (time, price); prices strictly falling from the front in _highs, rising in _lows.
        self._highs: deque[tuple[float, float]] = deque()
        self._lows: deque[tuple[float, float]] = deque()
        # Only the last min_path_points times are needed to tell whether that many are recent.
        self._recent: deque[float] = deque(maxlen=min_path_points)

    def observe(self, price: float, time: int) -> None:
        """Record a price seen on the market; a non-positive or non-finite price is ignored."""
        if _is_price(price):
            self._observe_at(self._advance(time), price)

    def estimate(
        self, side: Side, price: float, time: int, rule: MarginRule | None = None
    ) -> float | None:
        """Leverage of a `side` position liquidated at `price`; None while the path is too
        short. `rule` is the exchange's margin rule (default: this estimator's own)."""
        return self._estimate_at(self._advance(time), side, price, rule)

    def take(
        self, side: Side, price: float, time: int, rule: MarginRule | None = None
    ) -> float | None:
        """`estimate` for a liquidation, then `observe` its price: the per-event pair,
        advancing the lookback once."""
        now = self._advance(time)
        leverage = self._estimate_at(now, side, price, rule)
        if _is_price(price):
            self._observe_at(now, price)
        return leverage

    def _observe_at(self, now: float, price: float) -> None:
        highs, lows = self._highs, self._lows
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append((now, price))
        while lows and lows[-1][1] >= price:
            lows.pop()
        lows.append((now, price))
        self._recent.append(now)

    def _estimate_at(
        self, now: float, side: Side, price: float, rule: MarginRule | None
    ) -> float | None:
        recent = self._recent
        if len(recent) < self._min_path_points or recent[0] < now - self._lookback_ms:
            return None
        if not _is_price(price):
            return None
        if side == "long":
            entry = self._highs[0][1]
            move = (entry - price) / entry
        else:
            entry = self._lows[0][1]
            move = (price - entry) / entry
        margin, ceiling = (self._maintenance_margin, MAX_LEVERAGE) if rule is None else rule
        leverage = 1.0 / (max(move, 0.0) + margin)
        return min(max(leverage, MIN_LEVERAGE), ceiling)

    def _advance(self, time: int) -> float:
        if time > self._latest:
            self._latest = time
        latest = self._latest
        horizon = latest - self._lookback_ms
        highs, lows = self._highs, self._lows
        while highs and highs[0][0] < horizon:
            highs.popleft()
        while lows and lows[0][0] < horizon:
            lows.popleft()
        return latest


class TierDistribution:
    """Count and notional per tier over the events of one window.

    `share` is the notional share: the heatmap is notional-weighted and one 5M liquidation
    weighs more than fifty small ones; the count is in every row for whoever wants count shares.
    When the known-tier events add up to zero notional the share falls back to counts, so shares
    still sum to 1. Events without a tier (no estimate yet) are not counted anywhere.
    """

    def __init__(self) -> None:
        self._counts = dict.fromkeys(TIERS, 0)
        self._micros = dict.fromkeys(TIERS, 0)

    @classmethod
    def of(cls, leverage: np.ndarray, notional: np.ndarray) -> TierDistribution:
        """The distribution of events given as columns (NaN leverage: no tier)."""
        tiers = cls()
        known = ~np.isnan(leverage)
        index = tier_index(leverage[known])
        counts = np.bincount(index, minlength=len(TIERS)).tolist()
        micros = np.rint(notional[known] * _MICROS).astype(np.int64)
        sums = np.zeros(len(TIERS), np.int64)
        np.add.at(sums, index, micros)
        for tier, count, total in zip(TIERS, counts, sums.tolist(), strict=True):
            tiers._counts[tier], tiers._micros[tier] = count, total
        return tiers

    def merge(self, other: TierDistribution) -> None:
        for tier in TIERS:
            self._counts[tier] += other._counts[tier]
            self._micros[tier] += other._micros[tier]

    def add(self, tier: str | None, notional: float) -> None:
        self._apply(tier, notional, 1)

    def remove(self, tier: str | None, notional: float) -> None:
        self._apply(tier, notional, -1)

    def rows(self) -> list[dict]:
        """[{"tier", "count", "notional", "share"}] for every tier, in TIERS order."""
        total_micros = sum(self._micros.values())
        total_count = sum(self._counts.values())
        rows = []
        for tier in TIERS:
            if total_micros > 0:
                share = self._micros[tier] / total_micros
            elif total_count > 0:
                share = self._counts[tier] / total_count
            else:
                share = 0.0
            rows.append(
                {
                    "tier": tier,
                    "count": self._counts[tier],
                    "notional": self._micros[tier] / _MICROS,
                    "share": round_significant(share),
                }
            )
        return rows

    def _apply(self, tier: str | None, notional: float, sign: int) -> None:
        if tier is None:
            return
        if tier not in self._counts:
            raise ValueError(f"unknown leverage tier {tier!r}")
        self._counts[tier] += sign
        self._micros[tier] += sign * round(notional * _MICROS)
