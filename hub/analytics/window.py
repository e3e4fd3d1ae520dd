"""One heatmap window of one symbol: the events of the last `span` ms, kept incrementally.

An event entering or ageing out touches only its own bin, the running statistics and the
density's binned weights; everything derived (density values,
clusters) is recomputed once per flush, not per event. A flush turns what changed since
the previous flush into a `HeatmapDiff` and advances `seq` by one, so the published
stream is: snapshot at seq S, then one diff per seq, each holding new absolute values.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np

from hub.analytics.clusters import ClusterTracker, find_clusters
from hub.analytics.density import KernelDensity
from hub.analytics.grid import PriceGrid
from hub.models import (
    Bin,
    Cluster,
    Density,
    HeatmapDiff,
    HeatmapSnapshot,
    LiquidationEvent,
    Statistics,
)

EMPTY_STATISTICS = Statistics(0, 0.0, 0.0, 0.0, 0.0, 0.0)
# Equal to nothing a flush computes (NaN != NaN, no cluster has id -1): forces a re-send.
_UNSENT_STATISTICS = Statistics(-1, math.nan, math.nan, math.nan, math.nan, math.nan)
_UNSENT_CLUSTERS = [Cluster(-1, math.nan, math.nan, math.nan, 0.0, 0, 0.0, 0.0, "low")]

# Notional sums are exact integers in units of 2**-62 of the quote currency: every float
# notional >= 2**-10 converts exactly, so adding and later removing an event restores the
# sums bit for bit. Float running sums drifted: after a 10M event left the window, a lone
# event's std came out as 0.05 instead of 0, and the next event got z ~ 1000 (a spurious
# large_liquidation). The sum of squares in the same units makes the variance exact too.
_FIXED_BITS = 62
_FIXED = float(1 << _FIXED_BITS)


def _fixed(notional: float) -> int:
    return int(notional * _FIXED)  # exact: scaling by a power of two only moves the exponent


def _float(value: int) -> float:
    return value / (1 << _FIXED_BITS)  # int / int: correctly rounded


class _BinTotals:
    __slots__ = ("count", "long", "short")

    def __init__(self) -> None:
        self.long = 0  # fixed point, see _FIXED
        self.short = 0
        self.count = 0


# What a window keeps of an event: (event, bin index). Made once per event by `entry` and
# shared by every window of the symbol (they share the grid), so the nine windows skip
# nine bin look-ups; small, because the longest windows hold every event of the store.
Entry = tuple[LiquidationEvent, int]


def entry(event: LiquidationEvent, grid: PriceGrid) -> Entry:
    return (event, grid.bin_index(event.price))


class HeatmapWindow:
    def __init__(
        self, symbol: str, name: str, span_ms: int, grid: PriceGrid, bandwidth_pct: float
    ) -> None:
        self.symbol = symbol
        self.name = name
        self.span_ms = span_ms
        self.bandwidth_pct = bandwidth_pct
        self._entries: deque[Entry] = deque()
        self.seq = 0
        self._bins: dict[int, _BinTotals] = {}
        self._dirty_bins: set[int] = set()
        self._count = 0
        self._long = 0  # fixed point, see _FIXED
        self._short = 0
        self._sum_squares = 0  # in units of 2**-124
        self._changed = False
        self._time = 0
        self._set_grid(grid)
        self._clusters = ClusterTracker(self._bandwidth)
        self._published_statistics = EMPTY_STATISTICS
        self._published_clusters: list[Cluster] = []
        self._published_reference = grid.reference_price

    @property
    def events(self) -> list[LiquidationEvent]:
        return [held[0] for held in self._entries]

    # -- events in and out ------------------------------------------------------------

    def cutoff(self, now: int) -> int:
        return now - self.span_ms

    def add(self, held: Entry) -> None:
        entries = self._entries
        if not entries or held[0].time >= entries[-1][0].time:
            entries.append(held)
        else:
            entries.insert(bisect.bisect_right(entries, held[0].time, key=_time), held)
        self._account(held, +1)

    def expire(self, now: int) -> None:
        """Drop the events that have aged out of the window at `now`."""
        cutoff = self.cutoff(now)
        entries = self._entries
        while entries and entries[0][0].time < cutoff:
            self._account(entries.popleft(), -1)

    def forget(self, event: LiquidationEvent) -> None:
        """The store dropped `event` (its oldest); drop it here too if held."""
        if self._entries and self._entries[0][0] is event:
            self._account(self._entries.popleft(), -1)

    def _account(self, held: Entry, sign: int) -> None:
        event, index = held
        totals = self._bins.get(index)
        if totals is None:
            totals = self._bins[index] = _BinTotals()
        fixed = int(event.notional * _FIXED)  # _fixed, inlined: this runs 18 times per event
        signed = fixed * sign
        if event.side == "long":
            totals.long += signed
            self._long += signed
        else:
            totals.short += signed
            self._short += signed
        totals.count += sign
        self._count += sign
        self._sum_squares += fixed * signed
        if totals.count == 0:
            del self._bins[index]
        self._dirty_bins.add(index)
        self.density.add(event.price, event.notional * sign)
        self._changed = True

    # -- grid -------------------------------------------------------------------------

    def _set_grid(self, grid: PriceGrid) -> None:
        self.grid = grid
        self._bandwidth = grid.reference_price * self.bandwidth_pct / 100.0
        self.density = KernelDensity(
            grid.density_start, grid.bin_width, grid.density_size, self._bandwidth
        )
        self._density_values = np.zeros(grid.density_size)
        self._wire_density = [0.0] * grid.density_size
        events = self.events
        if events:
            self.density.add_many(
                np.fromiter((e.price for e in events), float, len(events)),
                np.fromiter((e.notional for e in events), float, len(events)),
            )

    def recentre(self, grid: PriceGrid) -> None:
        """Move the density axis to a new reference price; bins and seq carry on."""
        self._set_grid(grid)
        self._changed = True

    def restart(self, grid: PriceGrid, now: int) -> HeatmapSnapshot:
        """Start a new epoch on `grid`: bins rebuilt from the held events, seq from 0."""
        self._set_grid(grid)
        self._bins.clear()
        self._dirty_bins.clear()
        self._entries = deque(entry(held[0], grid) for held in self._entries)
        for event, index in self._entries:
            totals = self._bins.get(index) or self._bins.setdefault(index, _BinTotals())
            if event.side == "long":
                totals.long += _fixed(event.notional)
            else:
                totals.short += _fixed(event.notional)
            totals.count += 1
        # New epoch, new peaks; but ids stay unique for the window's life (as the tracker
        # promises), because alert memory and alert ids key on them: restarting from 1 made
        # the new epoch's clusters look already alerted (no cluster_new) and reused ids.
        next_id = self._clusters._next_id
        self._clusters = ClusterTracker(self._bandwidth)
        self._clusters._next_id = next_id
        self.expire(now)
        self._time = now
        self._published_clusters = self._recompute()
        self._published_statistics = self.statistics()
        self._published_reference = grid.reference_price
        self._dirty_bins.clear()
        self._changed = False
        self.seq = 0
        return self.snapshot()

    def resume(self, seq: int, flushed_at: int) -> None:
        """Carry on a stream from a restored state: the events held are those of the flush
        at `seq`, so the bins are exactly what clients hold (they are exact sums). Derived
        parts (clusters, statistics, density, reference) are recomputed and need not match
        to the last bit, so the next diff sends all of them."""
        self.seq = seq
        self._time = flushed_at
        self._dirty_bins.clear()
        self._published_statistics = _UNSENT_STATISTICS
        self._published_clusters = _UNSENT_CLUSTERS
        self._published_reference = math.nan
        self._changed = True

    # -- what clients see -------------------------------------------------------------

    def statistics(self) -> Statistics:
        count = self._count
        if count == 0:
            return EMPTY_STATISTICS
        total = self._long + self._short
        # n * sum(x^2) - sum(x)^2 is an exact integer >= 0: no cancellation, no clamp.
        variance = (count * self._sum_squares - total * total) / (count * count << 2 * _FIXED_BITS)
        return Statistics(
            count,
            _float(total),
            _float(self._long),
            _float(self._short),
            total / (count << _FIXED_BITS),
            math.sqrt(variance),
        )

    def z_score(self, notional: float) -> float:
        stats = self.statistics()
        return (notional - stats.mean) / stats.std if stats.std > 0 else 0.0

    def bins(self) -> list[Bin]:
        return [self._bin(index) for index in sorted(self._bins)]

    def _bin(self, index: int) -> Bin:
        totals = self._bins.get(index)
        if totals is None:
            return (self.grid.bin_low(index), 0.0, 0.0, 0)
        return (self.grid.bin_low(index), _float(totals.long), _float(totals.short), totals.count)

    def density_message(self) -> Density:
        return Density(self.grid.density_start, self.grid.bin_width, self._wire_density)

    def clusters(self) -> list[Cluster]:
        return self._published_clusters

    def _recompute(self) -> list[Cluster]:
        self._density_values = self.density.values()
        self._wire_density = wire_values(self._density_values)
        if not self._bins:
            return self._clusters.track([])
        indices = np.fromiter(sorted(self._bins), dtype=np.int64, count=len(self._bins))
        width = self.grid.bin_width
        totals = [self._bins[int(i)] for i in indices]
        shapes = find_clusters(
            self._density_values,
            self.grid.density_start,
            width,
            self._bandwidth,
            indices * width,
            # int -> float rounds once; the power-of-two scale is exact (same as _float).
            np.fromiter((t.long for t in totals), float, len(totals)) / _FIXED,
            np.fromiter((t.short for t in totals), float, len(totals)) / _FIXED,
            np.fromiter((t.count for t in totals), np.int64, len(totals)),
            width,
        )
        return self._clusters.track(shapes)

    def flush(self, now: int) -> HeatmapDiff | None:
        """What changed since the previous flush, as the next diff; None when nothing did."""
        self.expire(now)
        if not self._changed:
            return None
        self._changed = False
        self._time = now
        clusters = self._recompute()
        statistics = self.statistics()
        diff = HeatmapDiff(
            time=now,
            bins=[self._bin(index) for index in sorted(self._dirty_bins)],
            density=self.density_message(),
        )
        self._dirty_bins.clear()
        if statistics != self._published_statistics:
            diff.statistics = self._published_statistics = statistics
        if clusters != self._published_clusters:
            diff.clusters = self._published_clusters = clusters
        if self.grid.reference_price != self._published_reference:
            diff.reference_price = self._published_reference = self.grid.reference_price
        self.seq += 1
        return diff

    def snapshot(self) -> HeatmapSnapshot:
        """The state as of the last flush (callers flush first to include newer events)."""
        return HeatmapSnapshot(
            symbol=self.symbol,
            window=self.name,
            seq=self.seq,
            epoch=self.grid.epoch,
            time=self._time,
            reference_price=self._published_reference,
            bin_width=self.grid.bin_width,
            bins=self.bins(),
            density=self.density_message(),
            clusters=self._published_clusters,
            statistics=self._published_statistics,
        )


def wire_values(values: np.ndarray) -> list[float]:
    """Density values as sent: six significant digits of the peak. Most of the axis is
    zero or convolution noise (5e-11) that would otherwise be written in full; rounding
    makes a diff about three times smaller to encode, send, decode and keep."""
    peak = float(np.max(values)) if len(values) else 0.0
    if peak <= 0:
        return [0.0] * len(values)
    decimals = 5 - math.floor(math.log10(peak))
    return np.round(values, decimals).tolist()


def _time(held: Entry) -> int:
    return held[0].time
