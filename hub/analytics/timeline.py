"""Realized liquidations as a time-by-price matrix, on the heatmap's own price bins.

`timeline` is a pure function: the events held (as rows: a 30-day window is a million of
them), the symbol's `PriceGrid`, the window's span and the present go in; a `Timeline`
comes out. Decisions:
- Prices are the heatmap's bins (bin k covers [k*w, (k+1)*w), `PriceGrid.bin_index`), so a
  column of the matrix summed over time is exactly the heatmap's bin at that price.
- Rows are dense (the body is documented as dense: `prices.count` notionals a row), so the
  price axis is kept short: it spans only the bins that hold a liquidation of the window,
  clipped to the heatmap's range (reference ± HEATMAP_PRICE_RANGE %). What falls outside
  that range is not dropped silently: it is summed in `outside`.
- Bucket i covers [times[i], times[i+1]) with times[i] = start + ceil(i * span / buckets),
  so integer event times split exactly even when the span does not divide; the window is
  time >= now - span as in the heatmap, and an event stamped after `now` (a replay clock
  a tick behind) counts in the last bucket, as it counts in the heatmap.
- `price` is the last liquidation fill of each bucket: the only trades the hub sees.
"""

from __future__ import annotations

import msgspec
import numpy as np

from hub.analytics.grid import PriceGrid
from hub.analytics.rows import Rows


class PriceAxis(msgspec.Struct, frozen=True):
    start: float  # low edge of the first bin
    step: float  # the heatmap's bin width
    count: int


class SideTotals(msgspec.Struct, frozen=True):
    long: float
    short: float


class Timeline(msgspec.Struct, frozen=True):
    time: int  # the present the window ends at
    times: list[int]  # bucket starts, ms
    prices: PriceAxis
    long: list[list[float]]  # [bucket][price bin] notional
    short: list[list[float]]
    price: list[float | None]  # last fill per bucket
    outside: SideTotals  # notional of the window beyond the price range


def bucket_starts(now: int, span_ms: int, buckets: int) -> list[int]:
    start = now - span_ms
    return [start - (-i * span_ms // buckets) for i in range(buckets)]


def timeline(
    held: Rows,
    grid: PriceGrid | None,
    now: int,
    span_ms: int,
    buckets: int,
) -> Timeline:
    if buckets < 1 or span_ms < 1:
        raise ValueError(f"buckets and span must be positive, got {buckets}, {span_ms}")
    cutoff = now - span_ms
    inside_window = held.time >= cutoff
    order = np.argsort(held.time[inside_window], kind="stable")
    times = held.time[inside_window][order]
    prices = held.price[inside_window][order]
    notionals = held.notional[inside_window][order]
    is_long = ~held.short[inside_window][order]
    # The bucket of t is the largest i with ceil(i * span / buckets) <= t - cutoff.
    rows = np.minimum((times - cutoff) * buckets // span_ms, buckets - 1)

    # Time-ordered: the last fill of a bucket is the last of its run of rows.
    last_price: list[float | None] = [None] * buckets
    if len(rows):
        ends = np.flatnonzero(np.diff(rows, append=buckets))
        for row, price in zip(rows[ends].tolist(), prices[ends].tolist(), strict=True):
            last_price[row] = price

    if grid is None:  # nothing was ever placed: no axis yet
        columns = np.zeros(len(times), np.int64)
        inside = np.zeros(len(times), bool)
        first = count = 0
        axis = PriceAxis(0.0, 0.0, 0)
    else:
        # The same arithmetic as PriceGrid.bin_index, element-wise.
        columns = np.floor(prices / grid.bin_width + 1e-9).astype(np.int64)
        low = grid.bin_index(grid.reference_price - grid.half_range)
        high = grid.bin_index(grid.reference_price + grid.half_range)
        inside = (columns >= low) & (columns <= high)
        if inside.any():
            first = int(columns[inside].min())
            count = int(columns[inside].max()) - first + 1
        else:
            first, count = grid.bin_index(grid.reference_price), 0
        axis = PriceAxis(grid.bin_low(first), grid.bin_width, count)

    long = np.zeros((buckets, count))
    short = np.zeros((buckets, count))
    for matrix, side in ((long, is_long), (short, ~is_long)):
        chosen = inside & side
        np.add.at(matrix, (rows[chosen], columns[chosen] - first), notionals[chosen])
    return Timeline(
        time=now,
        times=bucket_starts(now, span_ms, buckets),
        prices=axis,
        long=long.tolist(),
        short=short.tolist(),
        price=last_price,
        outside=_totals(notionals[~inside], is_long[~inside]),
    )


def _totals(notionals: np.ndarray, is_long: np.ndarray) -> SideTotals:
    return SideTotals(float(notionals[is_long].sum()), float(notionals[~is_long].sum()))
