"""Order-book liquidity: depth on the heatmap's grid, walls, zones, support and
resistance, imbalance and large-trade flow. Pure: the book, trades and time come in.

Methods and their limits are written up in docs/liquidity.md. In short:
- Notional is quote currency: price x size x ctVal (OKX sizes are contracts).
- A wall is a level whose size stands out from its own side of the book: a robust z-score
  of log10(notional) against the side's median and MAD (sizes are roughly log-normal, so
  the log makes the z-score mean what it says). It is reported only after it has stood,
  at the same price, in every analysis for `wall_persist_ms`, so a flashing order is not
  a wall.
- A zone is a run of adjacent depth bins holding at least `zone_factor` times the side's
  median bin.
- Support (below mid) and resistance (above) merge bid/ask walls with liquidation
  clusters within one bin width; strength = 1 - exp(-score), score summing wall z / 3 and
  cluster z / 2, so two agreeing sources read stronger than either alone.
- Imbalance sums bid and ask notional within +-1 % and +-5 % of mid; OKX's 400 levels
  often reach less far than that, which `reach_pct` shows.
- Flow sums taker notional of trades at or above the `flow_percentile` of the last
  `flow_sample` trades' notionals, per window; before `flow_min_sample` trades, at or
  above the absolute `flow_floor`.
- A resync of the book keeps the walls: a wall is forgotten only when an analysis no
  longer finds it, so the same book after a resync shows the same walls, since the same
  time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import msgspec
import numpy as np

from hub.analytics.grid import choose_bin_width
from hub.models import Cluster

Levels = Sequence[tuple[float, float]]  # (price, contracts), best first
FLOW_WINDOWS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}
IMBALANCE_BANDS = {"1": 0.01, "5": 0.05}


class LiquidityConfig(msgspec.Struct, frozen=True):
    wall_z: float = 3.0
    wall_persist_ms: int = 2_000
    max_walls_per_side: int = 5
    zone_factor: float = 1.5
    level_tolerance_bins: float = 1.0
    max_levels: int = 5
    flow_percentile: float = 90.0
    flow_sample: int = 1_000
    flow_min_sample: int = 50
    # Until `flow_min_sample` trades are seen, a trade is large from this notional (quote
    # currency) on: a symbol's first minutes must not hide a 100-BTC taker buy.
    flow_floor: float = 250_000.0


class Wall(msgspec.Struct, frozen=True):
    price: float
    side: str  # bid | ask
    notional: float
    z_score: float
    since: int  # ms, first seen at this price


class Zone(msgspec.Struct, frozen=True):
    low: float
    high: float
    side: str
    notional: float


class Level(msgspec.Struct, frozen=True):
    price: float
    strength: float  # 0..1
    sources: list[str]  # "wall", "cluster"


class Imbalance(msgspec.Struct, frozen=True):
    bid: float
    ask: float
    ratio: float | None  # bid / ask; None when no ask notional is in reach


class Flow(msgspec.Struct, frozen=True):
    buy: float
    sell: float


class Depth(msgspec.Struct, frozen=True):
    bin_width: float
    bids: list[tuple[float, float]]  # [bin low, notional], ascending price
    asks: list[tuple[float, float]]


class Liquidity(msgspec.Struct):
    """The REST `liquidity` body and the `liquidity:{SYMBOL}` channel's data."""

    symbol: str
    exchange: str
    time: int
    synced: bool
    best_bid: float | None = None
    best_ask: float | None = None
    mid: float | None = None
    depth: Depth | None = None
    reach_pct: dict[str, float] = {}
    walls: list[Wall] = []
    zones: list[Zone] = []
    support: list[Level] = []
    resistance: list[Level] = []
    imbalance: dict[str, Imbalance] = {}
    flow: dict[str, Flow] = {}
    flow_threshold: float | None = None
    error: str | None = None


def _notional(levels: Levels, ct_val: float) -> tuple[np.ndarray, np.ndarray]:
    if not levels:
        return np.empty(0), np.empty(0)
    array = np.asarray(levels, dtype=float)
    return array[:, 0], array[:, 0] * array[:, 1] * ct_val


def bin_low(index: int, width: float) -> float:
    """The low edge of bin `index`, rounded as the heatmap's grid rounds it."""
    return round(index * width, max(0, 2 - math.floor(math.log10(width))))


def depth_bins(
    prices: np.ndarray, notionals: np.ndarray, width: float
) -> list[tuple[float, float]]:
    """Notional per bin of the heatmap's grid (bin k covers [k*w, (k+1)*w))."""
    if prices.size == 0:
        return []
    index = np.floor(prices / width + 1e-9).astype(np.int64)
    keys, inverse = np.unique(index, return_inverse=True)
    sums = np.bincount(inverse, weights=notionals)
    return [(bin_low(int(k), width), round(float(s), 2)) for k, s in zip(keys, sums, strict=True)]


def robust_z(values: np.ndarray) -> np.ndarray:
    """z of log10(values) against their median and MAD (x1.4826, the normal scale)."""
    logs = np.log10(np.maximum(values, 1e-12))
    median = float(np.median(logs))
    spread = 1.4826 * float(np.median(np.abs(logs - median)))
    if spread == 0:
        spread = float(np.std(logs))
    if spread == 0:
        return np.zeros_like(logs)
    return (logs - median) / spread


class WallTracker:
    """Candidates per (side, price) with the time each was first seen without a break."""

    def __init__(self) -> None:
        self._first_seen: dict[tuple[str, float], int] = {}

    def observe(
        self, candidates: list[tuple[str, float, float, float]], now: int, persist_ms: int
    ) -> list[Wall]:
        """`candidates`: (side, price, notional, z). Those not seen now are forgotten."""
        seen: dict[tuple[str, float], int] = {}
        walls: list[Wall] = []
        for side, price, notional, z in candidates:
            key = (side, price)
            since = self._first_seen.get(key, now)
            seen[key] = since
            if now - since >= persist_ms:
                walls.append(Wall(price, side, round(notional, 2), round(z, 3), since))
        self._first_seen = seen
        return walls


class TradeFlow:
    """Large taker trades of the last hour; the size threshold follows recent trades."""

    def __init__(self, config: LiquidityConfig) -> None:
        self.config = config
        self._recent: deque[float] = deque(maxlen=config.flow_sample)
        self._large: deque[tuple[int, bool, float]] = deque()  # (time, is buy, notional)
        self.threshold = config.flow_floor  # until the percentile is ready
        self._percentile_ready = False
        self._since_threshold = 0

    def add(self, time: int, side: str, notional: float) -> None:
        if not (notional > 0 and math.isfinite(notional)) or side not in ("buy", "sell"):
            return
        self._recent.append(notional)
        self._since_threshold += 1
        # recomputed every 50 trades: the percentile of 1,000 values is not free at 50/s
        if len(self._recent) >= self.config.flow_min_sample and (
            not self._percentile_ready or self._since_threshold >= 50
        ):
            self.threshold = float(np.percentile(self._recent, self.config.flow_percentile))
            self._percentile_ready = True
            self._since_threshold = 0
        if notional >= self.threshold:
            self._large.append((time, side == "buy", notional))

    def flows(self, now: int) -> dict[str, Flow]:
        horizon = now - max(FLOW_WINDOWS.values())
        while self._large and self._large[0][0] < horizon:
            self._large.popleft()
        result: dict[str, Flow] = {}
        for name, span in FLOW_WINDOWS.items():
            buy = sell = 0.0
            for time, is_buy, notional in self._large:
                if time >= now - span:
                    if is_buy:
                        buy += notional
                    else:
                        sell += notional
            result[name] = Flow(round(buy, 2), round(sell, 2))
        return result


def _walls_of(
    side: str, prices: np.ndarray, notionals: np.ndarray, config: LiquidityConfig
) -> list[tuple[str, float, float, float]]:
    if prices.size < 5:
        return []
    z = robust_z(notionals)
    picked = np.flatnonzero(z >= config.wall_z)
    picked = picked[np.argsort(-notionals[picked])][: config.max_walls_per_side]
    return [(side, float(prices[i]), float(notionals[i]), float(z[i])) for i in picked]


def zones_of(side: str, bins: list[tuple[float, float]], width: float, factor: float) -> list[Zone]:
    if not bins:
        return []
    median = float(np.median([n for _, n in bins]))
    zones: list[Zone] = []
    run: list[tuple[float, float]] = []
    for low, notional in [*bins, (math.inf, 0.0)]:
        contiguous = run and abs(low - run[-1][0] - width) < width * 1e-6
        if notional >= factor * median and notional > 0 and (not run or contiguous):
            run.append((low, notional))
            continue
        if run:
            zones.append(
                Zone(
                    run[0][0],
                    bin_low(round(run[-1][0] / width) + 1, width),
                    side,
                    round(sum(n for _, n in run), 2),
                )
            )
        run = [(low, notional)] if notional >= factor * median and notional > 0 else []
    return zones


def imbalance(
    bids: tuple[np.ndarray, np.ndarray], asks: tuple[np.ndarray, np.ndarray], mid: float
) -> dict[str, Imbalance]:
    result: dict[str, Imbalance] = {}
    for name, band in IMBALANCE_BANDS.items():
        bid = float(bids[1][bids[0] >= mid * (1 - band)].sum())
        ask = float(asks[1][asks[0] <= mid * (1 + band)].sum())
        ratio = round(bid / ask, 4) if ask > 0 else None
        result[name] = Imbalance(round(bid, 2), round(ask, 2), ratio)
    return result


def support_resistance(
    walls: list[Wall], clusters: Sequence[Cluster], mid: float, tolerance: float, limit: int
) -> tuple[list[Level], list[Level]]:
    """Candidate prices from walls and clusters, merged when within `tolerance`."""
    candidates: list[tuple[float, float, str]] = [
        (w.price, max(w.z_score, 0.0) / 3.0, "wall") for w in walls
    ]
    candidates += [(c.price, max(c.z_score, 0.0) / 2.0, "cluster") for c in clusters]
    candidates.sort()
    merged: list[tuple[float, float, set[str], float]] = []  # (price, score, sources, weight)
    for price, score, source in candidates:
        if merged and price - merged[-1][0] <= tolerance:
            p, s, sources, weight = merged[-1]
            # the merged level sits at the score-weighted price of its parts
            total = weight + max(score, 1e-9)
            merged[-1] = (
                (p * weight + price * max(score, 1e-9)) / total,
                s + score,
                sources | {source},
                total,
            )
        else:
            merged.append((price, score, {source}, max(score, 1e-9)))
    support: list[Level] = []
    resistance: list[Level] = []
    decimals = max(0, 3 - math.floor(math.log10(tolerance))) if tolerance > 0 else 8
    for price, score, sources, _ in merged:
        level = Level(round(price, decimals), round(1.0 - math.exp(-score), 4), sorted(sources))
        (support if price < mid else resistance).append(level)
    support.sort(key=lambda level: -level.strength)
    resistance.sort(key=lambda level: -level.strength)
    return support[:limit], resistance[:limit]


class LiquidityAnalyzer:
    """One symbol's analysis state: the wall tracker and the trade flow."""

    def __init__(self, symbol: str, config: LiquidityConfig | None = None) -> None:
        self.symbol = symbol
        self.config = config or LiquidityConfig()
        self.walls = WallTracker()
        self.flow = TradeFlow(self.config)

    def add_trade(
        self, time: int, side: str, price: float, contracts: float, ct_val: float
    ) -> None:
        self.flow.add(time, side, price * contracts * ct_val)

    def analyze(
        self,
        bids: Levels,
        asks: Levels,
        ct_val: float,
        now: int,
        bin_width: float | None = None,
        clusters: Sequence[Cluster] = (),
    ) -> Liquidity:
        """The analysis of a synced book (bids descending, asks ascending)."""
        config = self.config
        if not bids or not asks:
            return Liquidity(self.symbol, "okx", now, False, error="one side of the book is empty")
        best_bid, best_ask = bids[0][0], asks[0][0]
        mid = (best_bid + best_ask) / 2
        width = bin_width or choose_bin_width(mid)
        bid_side, ask_side = _notional(bids, ct_val), _notional(asks, ct_val)
        depth = Depth(width, depth_bins(*bid_side, width), depth_bins(*ask_side, width))
        candidates = _walls_of("bid", *bid_side, config) + _walls_of("ask", *ask_side, config)
        walls = self.walls.observe(candidates, now, config.wall_persist_ms)
        near = [c for c in clusters if abs(c.price - mid) <= mid * 0.15]
        support, resistance = support_resistance(
            walls, near, mid, width * config.level_tolerance_bins, config.max_levels
        )
        return Liquidity(
            symbol=self.symbol,
            exchange="okx",
            time=now,
            synced=True,
            best_bid=best_bid,
            best_ask=best_ask,
            mid=mid,
            depth=depth,
            reach_pct={
                "bid": round((mid - bids[-1][0]) / mid * 100, 4),
                "ask": round((asks[-1][0] - mid) / mid * 100, 4),
            },
            walls=walls,
            zones=zones_of("bid", depth.bids, width, config.zone_factor)
            + zones_of("ask", depth.asks, width, config.zone_factor),
            support=support,
            resistance=resistance,
            imbalance=imbalance(bid_side, ask_side, mid),
            flow=self.flow.flows(now),
            flow_threshold=round(self.flow.threshold, 2),
        )
