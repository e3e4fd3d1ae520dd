"""A heatmap window's numbers for some of the exchanges only (REST `exchange=`).

The live windows sum every configured exchange, since that is what the channels carry. A
view of a subset is made on request from the window's rows, with the window's own grid,
axis and method (`WindowSums`, the same clusters), so a view of every exchange equals the
window. It is a picture at one moment, not a stream: its clusters are numbered afresh,
and no diff follows it. It costs what the window holds (tens of milliseconds for a busy
30-day window), which is why the channels do not carry one per subset.
"""

from __future__ import annotations

import numpy as np

from hub.analytics.clusters import ClusterTracker
from hub.analytics.density import KernelDensity
from hub.analytics.grid import PriceGrid
from hub.analytics.rows import Named
from hub.analytics.sums import WindowSums, bin_rows, place_rows
from hub.analytics.window import wire_array
from hub.models import Density, HeatmapSnapshot


def exchange_view(
    live: HeatmapSnapshot,
    held: Named,
    exchanges: frozenset[str],
    bandwidth_pct: float,
    range_pct: float,
    span_ms: int,
) -> HeatmapSnapshot:
    """`live` (the window's snapshot) recomputed over the rows of `held` from
    `exchanges`, within the window as of `live.time`."""
    rows, names = held
    wanted = [code for code, name in enumerate(names) if name in exchanges]
    rows = rows.take(np.isin(rows.exchange, wanted) & (rows.time >= live.time - span_ms))
    grid = PriceGrid(live.bin_width, live.reference_price, range_pct, live.epoch)
    bandwidth = grid.reference_price * bandwidth_pct / 100.0
    kde = KernelDensity(grid.density_start, grid.bin_width, grid.density_size, bandwidth)
    sums = WindowSums()
    sums.set_axis(kde)
    sums.add(place_rows(rows, grid, kde), 1)
    values = np.maximum(sums.density(), 0.0)
    return HeatmapSnapshot(
        symbol=live.symbol,
        window=live.window,
        seq=live.seq,
        epoch=live.epoch,
        time=live.time,
        reference_price=live.reference_price,
        bin_width=live.bin_width,
        bins=bin_rows(grid, *sums.occupied()),
        density=Density(grid.density_start, grid.bin_width, wire_array(values).tolist()),
        clusters=ClusterTracker(bandwidth).track(sums.shapes(values, kde, grid.bin_width)),
        statistics=sums.statistics(names),
        coverage=live.coverage,
    )
