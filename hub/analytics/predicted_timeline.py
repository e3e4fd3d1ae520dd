"""Predicted levels over time: the time-by-price matrix of what each level held while it
was open, on the buckets of the realized timeline (hub.analytics.timeline). Pure.

A level counts in every bucket it was open during, from the one holding `opened` to the
one holding `consumed` (the last bucket while it is still open), with the notional the
channel holds for it: an open level's present notional, a consumed one's at its crossing.
The channel keeps no history of a level's growth and decay, so neither does the matrix;
levels that decayed away, and consumed ones past the last `max_consumed`, are not held
and not shown. This is the picture the page draws, a bar per level from its open time to
its consumed time (or the present).

Prices are the predicted grid's bins (a level's `price` is its bin's low edge); the axis
spans the bins of the levels shown, so rows are dense as in the realized timeline.
"""

from __future__ import annotations

import msgspec
import numpy as np

from hub.analytics.grid import PriceGrid
from hub.analytics.timeline import PriceAxis, bucket_starts
from hub.models import ConsumedLevel, PredictedLevel


class PredictedTimeline(msgspec.Struct, frozen=True):
    time: int  # the present the window ends at
    times: list[int]  # bucket starts, ms
    prices: PriceAxis
    long: list[list[float]]  # [bucket][price bin] notional of long levels open then
    short: list[list[float]]
    levels: int  # how many levels the matrix holds


def predicted_timeline(
    levels: list[PredictedLevel],
    consumed: list[ConsumedLevel],
    bin_width: float,
    now: int,
    span_ms: int,
    buckets: int,
) -> PredictedTimeline:
    if buckets < 1 or span_ms < 1:
        raise ValueError(f"buckets and span must be positive, got {buckets}, {span_ms}")
    cutoff = now - span_ms
    never = np.iinfo(np.int64).max
    crossed = [lv for lv in consumed if lv.consumed >= cutoff]
    shown: list[PredictedLevel | ConsumedLevel] = [*crossed, *levels] if bin_width > 0 else []
    opened = np.array([lv.opened for lv in shown], np.int64)
    ends = np.array([lv.consumed for lv in crossed] + [never] * len(levels), np.int64)
    # Notionals are sent to the cent: summed as whole cents, a cell is exact.
    cents = np.rint(np.array([lv.notional for lv in shown], np.float64) * 100).astype(np.int64)
    is_long = np.array([lv.side == "long" for lv in shown], bool)
    axis, columns = PriceAxis(0.0, bin_width, 0), np.zeros(0, np.int64)
    if shown:
        # A level's price is its bin's low edge (PriceGrid.bin_low): the nearest multiple.
        bins = np.floor(np.array([lv.price for lv in shown]) / bin_width + 0.5).astype(np.int64)
        first_bin = int(bins.min())
        columns = bins - first_bin
        grid = PriceGrid(bin_width, 0.0, 0.0, "")
        axis = PriceAxis(grid.bin_low(first_bin), bin_width, int(columns.max()) + 1)
    # The bucket of a time, as in the realized timeline; before the window: the first.
    first = np.clip((opened - cutoff) * buckets // span_ms, 0, buckets - 1)
    last = np.minimum((np.minimum(ends, now) - cutoff) * buckets // span_ms, buckets - 1)
    matrices = []
    for side in (is_long, ~is_long):
        # +notional in the bucket a level opens, -notional after the one it ends in,
        # summed down the buckets
        steps = np.zeros((buckets + 1, axis.count), np.int64)
        np.add.at(steps, (first[side], columns[side]), cents[side])
        np.add.at(steps, (last[side] + 1, columns[side]), -cents[side])
        matrices.append((np.cumsum(steps[:-1], axis=0) / 100).tolist())
    return PredictedTimeline(
        time=now,
        times=bucket_starts(now, span_ms, buckets),
        prices=axis,
        long=matrices[0],
        short=matrices[1],
        levels=len(shown),
    )
