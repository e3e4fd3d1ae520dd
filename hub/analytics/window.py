"""One heatmap window of one symbol: the events of the last `span` ms, published per flush.

A window keeps no per-event state: the symbol's events live once in its `EventColumns`
(shared by the nine windows of a book) and a window is the suffix of them with time >=
now - span. A flush finds that suffix; when its content changed since the previous flush
(or the axis moved) it takes the suffix's `Summary` (bins, statistics, density, cluster
shapes, computed once per distinct suffix) and turns what differs from what it published
last into a `HeatmapDiff`, advancing `seq` by one. So the published stream is: snapshot at
seq S, then one diff per seq, each holding new absolute values. Events cost O(1) each
(one row written); the work per flush is proportional to the events held.
"""

from __future__ import annotations

import math

import numpy as np

from hub.analytics.clusters import ClusterTracker
from hub.analytics.columns import EMPTY_STATISTICS, EventColumns, Summary, wire_values
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

__all__ = ["EMPTY_STATISTICS", "HeatmapWindow", "wire_values"]

# Equal to nothing a flush computes (NaN != NaN, no cluster has id -1): forces a re-send.
_UNSENT_STATISTICS = Statistics(-1, math.nan, math.nan, math.nan, math.nan, math.nan)
_UNSENT_CLUSTERS = [Cluster(-1, math.nan, math.nan, math.nan, 0.0, 0, 0.0, 0.0, "low")]


class _Published:
    """The bins clients hold: sorted bin indices, their sums and counts, and the rows."""

    __slots__ = ("count", "index", "long", "rows", "short")

    def __init__(self, summary: Summary | None, grid: PriceGrid) -> None:
        if summary is None:
            self.index = np.zeros(0, np.int64)
            self.long = self.short = np.zeros(0)
            self.count = np.zeros(0, np.int64)
            self.rows: list[Bin] = []
            return
        self.index = summary.index
        self.long = summary.bin_long
        self.short = summary.bin_short
        self.count = summary.bin_count
        self.rows = summary.rows(grid)

    def changed(self, new: _Published, grid: PriceGrid) -> list[Bin]:
        """The rows of `new` that differ from these, plus a count-0 row per vanished bin."""
        if len(self.index) == 0:
            return list(new.rows)
        at = np.minimum(np.searchsorted(self.index, new.index), len(self.index) - 1)
        same = (
            (self.index[at] == new.index)
            & (self.long[at] == new.long)
            & (self.short[at] == new.short)
            & (self.count[at] == new.count)
        )
        rows = [new.rows[i] for i in np.flatnonzero(~same).tolist()]
        if len(new.index) == 0:
            gone = self.index
        else:  # sorted, unique: a search is cheaper than np.isin
            back = np.minimum(np.searchsorted(new.index, self.index), len(new.index) - 1)
            gone = self.index[new.index[back] != self.index]
        if len(gone):
            rows.extend((grid.bin_low(i), 0.0, 0.0, 0) for i in gone.tolist())
            rows.sort(key=_price)
        return rows


class HeatmapWindow:
    def __init__(
        self,
        symbol: str,
        name: str,
        span_ms: int,
        grid: PriceGrid,
        bandwidth_pct: float,
        columns: EventColumns | None = None,
    ) -> None:
        self.symbol = symbol
        self.name = name
        self.span_ms = span_ms
        self.bandwidth_pct = bandwidth_pct
        # A book passes its shared columns and feeds them itself, once per event; a
        # window made alone (benchmarks) owns its columns, fed by its maker.
        self.columns = columns if columns is not None else EventColumns()
        self.seq = 0
        self._key: tuple[int, int, int] | None = None  # of the suffix last published
        self._changed = False  # something besides the events (the axis) needs a re-send
        self._time = 0
        self._set_grid(grid)
        self._clusters = ClusterTracker(self._bandwidth)
        self._bins = _Published(None, grid)
        self._statistics = EMPTY_STATISTICS  # as computed at the last flush
        self._published_statistics = EMPTY_STATISTICS
        self._published_clusters: list[Cluster] = []
        self._published_reference = grid.reference_price
        self._published_density = Density(grid.density_start, grid.bin_width, [])

    @property
    def events(self) -> list[LiquidationEvent]:
        """The events held as of the last flush's time."""
        return self.columns.events_from(self.columns.start(self.cutoff(self._time)))

    def cutoff(self, now: int) -> int:
        return now - self.span_ms

    # -- grid -------------------------------------------------------------------------

    def _set_grid(self, grid: PriceGrid) -> None:
        self.grid = grid
        self.columns.rebin(grid.bin_width)
        self._bandwidth = grid.reference_price * self.bandwidth_pct / 100.0
        self.density = KernelDensity(
            grid.density_start, grid.bin_width, grid.density_size, self._bandwidth
        )

    def recentre(self, grid: PriceGrid) -> None:
        """Move the density axis to a new reference price; bins and seq carry on."""
        self._set_grid(grid)
        self._changed = True

    def restart(self, grid: PriceGrid, now: int) -> HeatmapSnapshot:
        """Start a new epoch on `grid`: bins rebuilt from the held events, seq from 0."""
        self._set_grid(grid)
        self._clusters.start_over(self._bandwidth)
        summary = self._take(now)
        self._bins = _Published(summary, grid)
        self._published_clusters = self._track_clusters(summary)
        self._published_statistics = self._statistics
        self._published_reference = grid.reference_price
        self._changed = False
        self.seq = 0
        return self.snapshot()

    def resume(self, seq: int, flushed_at: int) -> list[Cluster]:
        """Carry on a stream from a restored state: the events held are those of the flush
        at `seq`, in the same order, so the bins are bit for bit what clients hold (see
        `hub.analytics.columns`). Derived parts (clusters, statistics, density, reference)
        are recomputed and need not match to the last bit, so the next diff sends them.
        Returns the clusters as of that flush, tracked: the next flush keeps their ids."""
        summary = self._take(flushed_at)
        self._bins = _Published(summary, self.grid)
        clusters = self._track_clusters(summary)
        self.seq = seq
        self._published_statistics = _UNSENT_STATISTICS
        self._published_clusters = _UNSENT_CLUSTERS
        self._published_reference = math.nan
        self._changed = True
        return clusters

    def _track_clusters(self, summary: Summary) -> list[Cluster]:
        """The suffix's clusters, with ids carried on from the previous update."""
        return self._clusters.track(summary.shapes(self.density, self.grid.bin_width))

    def _take(self, now: int) -> Summary:
        """The summary of the suffix at `now`, remembered as the one published."""
        first = self.columns.start(self.cutoff(now))
        self._key = self.columns.key(first)
        self._time = now
        summary = self.columns.summary(first)
        self._statistics = summary.statistics
        wire = summary.density(self.density)[1]
        self._published_density = Density(self.grid.density_start, self.grid.bin_width, wire)
        return summary

    # -- what clients see -------------------------------------------------------------

    def statistics(self) -> Statistics:
        """As of the last flush (or restart)."""
        return self._statistics

    def z_score(self, notional: float) -> float:
        """Against the statistics of the last flush; the processor's per-event alert
        z-score uses `RunningStatistics` instead, which is exact between flushes."""
        stats = self._statistics
        return (notional - stats.mean) / stats.std if stats.std > 0 else 0.0

    def bins(self) -> list[Bin]:
        return list(self._bins.rows)

    def density_message(self) -> Density:
        return self._published_density

    def clusters(self) -> list[Cluster]:
        return self._published_clusters

    def flush(self, now: int) -> HeatmapDiff | None:
        """What changed since the previous flush, as the next diff; None when nothing did."""
        first = self.columns.start(self.cutoff(now))
        if self.columns.key(first) == self._key and not self._changed:
            return None
        self._changed = False
        summary = self._take(now)
        clusters = self._track_clusters(summary)
        bins = _Published(summary, self.grid)
        diff = HeatmapDiff(
            time=now, bins=self._bins.changed(bins, self.grid), density=self._published_density
        )
        self._bins = bins
        if self._statistics != self._published_statistics:
            diff.statistics = self._published_statistics = self._statistics
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


def _price(row: Bin) -> float:
    return row[0]
