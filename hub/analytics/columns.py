"""The held events of one symbol as columns, and what a heatmap window derives from them.

`EventColumns` mirrors the symbol's `EventStore` row for row (same events, same order:
trade time, ties in arrival order) as numpy columns: time, price, long and short notional
(the other side's is 0.0) and bin index. An event is written once, however many windows
it falls in; the store's evictions drop rows from the left. Because the store is time
ordered, every window is a suffix of the columns (time >= now - span), found by one
`searchsorted`, so windows keep no per-event state at all.

`Summary` is everything a window publishes about one suffix: bins (``np.bincount``),
statistics, density and cluster shapes. It is computed from scratch at flush time, once
per distinct suffix (in a burst the nine windows of a symbol usually hold the same events
and share one), and cached until the columns change.

Determinism: a bin's sums are added one row at a time in column order (``bincount``), so
the same events in the same order give bit-identical bins. Checkpoint restore relies on
it: rebuilding from the log gives exactly the bins clients hold.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from itertools import islice

import numpy as np

from hub.analytics.clusters import ClusterShape, find_clusters
from hub.analytics.density import KernelDensity
from hub.analytics.grid import PriceGrid
from hub.models import (
    NOTIONAL_DECIMALS,
    Bin,
    LiquidationEvent,
    Statistics,
    round_notional,
    round_significant,
)

EMPTY_STATISTICS = Statistics(0, 0.0, 0.0, 0.0, 0.0, 0.0)

# Dense bincount over [min, max] of the bin indices while that range is this many times
# the row count (plus slack); beyond it (a far outlier price) np.unique keeps it sparse.
_DENSE_FACTOR = 4
_DENSE_SLACK = 4096
_FIELDS = 5  # of a pending row


class EventColumns:
    def __init__(self, capacity: int = 64) -> None:
        self.events: deque[LiquidationEvent] = deque()
        self._time = np.empty(capacity, np.int64)
        self._price = np.empty(capacity, np.float64)
        self._long = np.empty(capacity, np.float64)
        self._short = np.empty(capacity, np.float64)
        self._bin = np.empty(capacity, np.int64)
        self._head = 0
        self._tail = 0
        # Rows appended since the columns were last read, flat (time, price, long, short,
        # bin, time, ...), written into the columns in one go at the next read: five numpy
        # scalar writes per event cost more than the event's whole share of a flush. Every
        # value is exact as a float64 (times and bins are far below 2**53).
        self._pending = array("d")
        self._newest = -math.inf  # time of the last row, pending or not
        self.bin_width = math.nan  # of the grid the bin column was computed for
        # Rows popped from the left and middle inserts/re-binnings so far: with the row
        # count they name a suffix's content (see `key`), without comparing rows.
        self.popped = 0
        self.reshaped = 0
        self._summaries: dict[tuple[int, int], Summary] = {}

    def __len__(self) -> int:
        return self._tail - self._head + len(self._pending) // _FIELDS

    # -- rows in and out --------------------------------------------------------------

    def add(self, event: LiquidationEvent, index: int) -> None:
        """Place `event` (in bin `index`) where the store placed it: after every row of
        the same or an earlier time."""
        t = event.time
        if t < self._newest:
            self._insert(event, index)
            return
        self._newest = t
        self.events.append(event)
        if event.side == "long":
            self._pending.extend((t, event.price, event.notional, 0.0, index))
        else:
            self._pending.extend((t, event.price, 0.0, event.notional, index))
        if self._summaries:
            self._summaries.clear()

    def forget(self, event: LiquidationEvent) -> None:
        """The store dropped `event` (its oldest); drop its row too if held."""
        if self.events and self.events[0] is event:
            if self._head == self._tail:  # its row is still pending
                self._commit()
            self.events.popleft()
            self._head += 1
            self.popped += 1
            self._summaries.clear()

    def rebin(self, width: float) -> None:
        """Recompute the bin column for a grid of bin `width` (a new epoch)."""
        if width == self.bin_width:
            return
        self._commit()
        self.bin_width = width
        rows = slice(self._head, self._tail)
        # As PriceGrid.bin_index, elementwise: the same IEEE operations, the same floor.
        self._bin[rows] = np.floor(self._price[rows] / width + 1e-9).astype(np.int64)
        self.reshaped += 1
        self._summaries.clear()

    def _insert(self, event: LiquidationEvent, index: int) -> None:
        """Rare: an event older than the last row; shift the later rows right by one."""
        self._commit()
        self._make_room(1)
        t = event.time
        position = self._head + int(
            np.searchsorted(self._time[self._head : self._tail], t, side="right")
        )
        for column in self._columns():
            column[position + 1 : self._tail + 1] = column[position : self._tail]
        self.events.insert(position - self._head, event)
        self.reshaped += 1
        self._time[position] = t
        self._price[position] = event.price
        if event.side == "long":
            self._long[position], self._short[position] = event.notional, 0.0
        else:
            self._long[position], self._short[position] = 0.0, event.notional
        self._bin[position] = index
        self._tail += 1
        self._summaries.clear()

    def _commit(self) -> None:
        """Write the pending rows into the columns."""
        pending = self._pending
        if not pending:
            return
        count = len(pending) // _FIELDS
        self._make_room(count)
        values = np.frombuffer(pending, np.float64).reshape(count, _FIELDS)
        rows = slice(self._tail, self._tail + count)
        self._time[rows] = values[:, 0]
        self._price[rows] = values[:, 1]
        self._long[rows] = values[:, 2]
        self._short[rows] = values[:, 3]
        self._bin[rows] = values[:, 4]
        self._tail += count
        del values  # a view of `pending`: it must go before the array may shrink
        del pending[:]

    def _columns(self) -> tuple[np.ndarray, ...]:
        return (self._time, self._price, self._long, self._short, self._bin)

    def _make_room(self, extra: int) -> None:
        """Room for `extra` more rows after the tail: compact, and grow when over half full
        (amortised O(1) per row)."""
        capacity = len(self._time)
        if self._tail + extra <= capacity:
            return
        held = self._tail - self._head
        if held + extra > capacity:
            while held + extra > capacity:
                capacity *= 2
        elif held > capacity // 2:  # compacting would win little room: grow instead
            capacity *= 2
        for name in ("_time", "_price", "_long", "_short", "_bin"):
            old = getattr(self, name)
            new = np.empty(capacity, old.dtype) if capacity != len(old) else old
            new[:held] = old[self._head : self._tail]  # overlapping move is safe in numpy
            setattr(self, name, new)
        self._head, self._tail = 0, held

    # -- windows ----------------------------------------------------------------------

    def start(self, cutoff: int) -> int:
        """Position (from the oldest row) of the first row with time >= cutoff."""
        self._commit()
        return int(np.searchsorted(self._time[self._head : self._tail], cutoff, side="left"))

    def key(self, first: int) -> tuple[int, int, int]:
        """Names the content of the suffix from `first`: equal keys, equal rows."""
        return (self.popped + first, self.popped + len(self), self.reshaped)

    def events_from(self, first: int) -> list[LiquidationEvent]:
        return list(islice(self.events, first, None))

    def summary(self, first: int) -> Summary:
        """What windows publish about the suffix from `first`; shared until a change."""
        held = self._summaries.get((first, self.reshaped))
        if held is None:
            self._commit()
            rows = slice(self._head + first, self._tail)
            held = Summary(self._price[rows], self._long[rows], self._short[rows], self._bin[rows])
            self._summaries[(first, self.reshaped)] = held
        return held


class Summary:
    """Bins, statistics, density and cluster shapes of one suffix (read-only views)."""

    def __init__(
        self, price: np.ndarray, long: np.ndarray, short: np.ndarray, bins: np.ndarray
    ) -> None:
        self.price = price.copy()  # the columns' rows move; a summary must not
        self.notional = long + short  # exact: one of the two is 0.0
        self._densities: dict[tuple[float, ...], tuple[np.ndarray, list[float]]] = {}
        self._shapes: dict[tuple[float, ...], list[ClusterShape]] = {}
        self._rows: dict[float, list[Bin]] = {}
        if len(bins) == 0:
            self.index = np.zeros(0, np.int64)
            self.bin_long = self.bin_short = np.zeros(0)
            self.bin_count = np.zeros(0, np.int64)
            self.statistics = EMPTY_STATISTICS
            return
        low, high = int(bins.min()), int(bins.max())
        if high - low < _DENSE_FACTOR * len(bins) + _DENSE_SLACK:
            slot = bins - low
            count = np.bincount(slot, minlength=high - low + 1)
            used = np.flatnonzero(count)
            self.index = used + low
        else:
            self.index, slot = np.unique(bins, return_inverse=True)
            count = np.bincount(slot)
            used = np.arange(len(self.index))
        # bincount adds row by row in column order: deterministic (see the module doc).
        self.bin_long = np.bincount(slot, long, minlength=len(count))[used]
        self.bin_short = np.bincount(slot, short, minlength=len(count))[used]
        self.bin_count = count[used]
        self.statistics = _statistics(self.notional, float(long.sum()), float(short.sum()))

    def rows(self, grid: PriceGrid) -> list[Bin]:
        """The bins as sent, sorted by price."""
        held = self._rows.get(grid.bin_width)
        if held is None:
            width, decimals = grid.bin_width, grid.decimals
            # PriceGrid.bin_low with the grid's constants hoisted: the same round().
            lows = [round(i * width, decimals) for i in self.index.tolist()]
            # Rounded per value (never relative to the other bins), so a bin whose sums
            # did not change is sent with the same value in every diff and snapshot.
            held = self._rows[grid.bin_width] = list(
                zip(
                    lows,
                    np.round(self.bin_long, NOTIONAL_DECIMALS).tolist(),
                    np.round(self.bin_short, NOTIONAL_DECIMALS).tolist(),
                    self.bin_count.tolist(),
                    strict=True,
                )
            )
        return held

    def density(self, kde: KernelDensity) -> tuple[np.ndarray, list[float]]:
        """(values, wire values) of the density on `kde`'s axis; `kde` is reused."""
        spec = (kde.start, kde.step, float(kde.size), kde.bandwidth)
        held = self._densities.get(spec)
        if held is None:
            kde.clear()
            if len(self.price):
                kde.add_many(self.price, self.notional)
            values = kde.values()
            held = self._densities[spec] = (values, wire_values(values))
        return held

    def shapes(self, kde: KernelDensity, width: float) -> list[ClusterShape]:
        spec = (kde.start, kde.step, float(kde.size), kde.bandwidth, width)
        held = self._shapes.get(spec)
        if held is None:
            values = self.density(kde)[0]
            held = []
            if len(self.index):
                held = find_clusters(
                    values,
                    kde.start,
                    kde.step,
                    kde.bandwidth,
                    self.index * width,
                    self.bin_long,
                    self.bin_short,
                    self.bin_count,
                    width,
                )
            self._shapes[spec] = held
        return held


def _statistics(notional: np.ndarray, long: float, short: float) -> Statistics:
    count = len(notional)
    total = long + short
    mean = total / count
    if notional.min() == notional.max():
        std = 0.0  # all equal (a lone event too): exactly 0, never round-off
    else:
        # Two-pass with the residual-mean correction: no cancellation between large sums.
        deviation = notional - mean
        correction = float(deviation.sum()) / count
        variance = float(np.dot(deviation, deviation)) / count - correction * correction
        std = math.sqrt(max(variance, 0.0))
    return Statistics(
        count,
        round_notional(total),
        round_notional(long),
        round_notional(short),
        round_notional(mean),
        round_significant(std),
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
