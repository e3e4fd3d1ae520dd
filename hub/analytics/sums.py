"""Exact integer sums of one window's rows: its bins, its density lattice, its statistics.

A window's content changes by rows entering (new events) and leaving (time moving on, or
the store dropping them), never by a rebuild, so what a flush costs follows what changed,
not how many events the window holds. That only works if removing a row restores the sums
bit for bit, which float sums do not (after millions of pairs they drift, and a bin that
holds nothing shows a phantom notional). So every sum here is an integer:

- notionals in micro-units of the quote currency (`micros`: the hub's output precision of
  six decimals), per bin (long, short, count) and in total, with the sum of their squares
  as an unbounded Python int, so the mean and the standard deviation are exact too;
- the density's fine lattice (`KernelDensity.split`): each row's micros split between its
  two nearest nodes in whole units, the same way every time.

The same rows give the same integers in any order: a restarted process rebuilds exactly
the bins its clients hold, and the vectorised and the row-by-row paths agree by
construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from hub.analytics.clusters import ClusterShape, find_clusters
from hub.analytics.density import DensityTerms, KernelDensity
from hub.analytics.grid import PriceGrid
from hub.analytics.rows import Rows
from hub.models import Bin, ExchangeTotals, Statistics, round_notional, round_significant

MICROS = 1_000_000
# Below this many rows a change is applied row by row: a handful of scalar updates cost
# less than the dozen numpy calls of the vectorised path.
ROW_BY_ROW = 8
# The widest run of bins kept densely; an outlier price beyond it (a broken print far off
# the market) is kept in a small dict instead of stretching the arrays.
DENSE_BINS = 1 << 16
_SQUARE_CHUNK = 64  # rows whose split squares (< 2**56 each) sum within an int64
DENSITY_RESYNC = 256  # changes added to a density before it is made again from the lattice
DENSITY_SPREAD_MOST = 256  # nodes a change may touch and still be added node by node

EMPTY_STATISTICS = Statistics(0, 0.0, 0.0, 0.0, 0.0, 0.0)
_PLACED_DTYPES = (np.int64, np.int64, np.int64, bool, np.uint8, np.int64, np.int64)


def micros(notional: np.ndarray) -> np.ndarray:
    """Notionals in integer micro-units (round half to even, as Python's `round`)."""
    return np.rint(notional * MICROS).astype(np.int64)


class Placed(NamedTuple):
    """Rows as the sums take them: time, bin, micros, side, exchange code and their
    lattice split."""

    time: np.ndarray  # int64
    bin: np.ndarray  # int64
    micros: np.ndarray  # int64
    short: np.ndarray  # bool
    exchange: np.ndarray  # uint8: the store's exchange code
    node: np.ndarray  # int64: left lattice node, -1 off the lattice
    right: np.ndarray  # int64: micros going to node + 1

    def __len__(self) -> int:
        return len(self.time)

    def take(self, which: np.ndarray | slice) -> Placed:
        return Placed(*(column[which] for column in self))

    @staticmethod
    def joined(parts: list[Placed]) -> Placed:
        if len(parts) == 1:
            return parts[0]
        return Placed(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def place(
    time: np.ndarray,
    price: np.ndarray,
    notional: np.ndarray,
    short: np.ndarray,
    exchange: np.ndarray,
    grid: PriceGrid,
    kde: KernelDensity | None,
) -> Placed:
    """Rows on `grid`'s bins and on `kde`'s lattice (none without one)."""
    amounts = micros(notional)
    # As PriceGrid.bin_index, elementwise: the same IEEE operations, the same floor.
    bins = np.floor(price / grid.bin_width + 1e-9).astype(np.int64)
    if kde is None:
        node = np.full(len(time), -1, np.int64)
        right = np.zeros(len(time), np.int64)
    else:
        node, right = kde.split(price, amounts)
    return Placed(time, bins, amounts, short, exchange, node, right)


def place_few(rows: list[Sequence[float]], grid: PriceGrid, kde: KernelDensity | None) -> Placed:
    """`place` of a few rows (time, price, notional, short, exchange code, all floats), one
    by one in Python: the same IEEE operations and roundings, so the same integers, for
    a few scalar steps a row instead of the two dozen numpy calls `place` makes whatever
    the count (a book's arrivals in one flush are mostly one or two)."""
    columns: list[list[int]] = [[] for _ in _PLACED_DTYPES]
    for time, price, notional, short, exchange in rows:
        amount = round(notional * MICROS)  # as `micros`: rint is half to even too
        node, right = (-1, 0) if kde is None else kde.split_one(price, amount)
        placed = (
            int(time),
            grid.bin_index(price),
            amount,
            short != 0.0,
            int(exchange),
            node,
            right,
        )
        for column, value in zip(columns, placed, strict=True):
            column.append(value)
    return Placed(
        *(np.array(column, dtype) for column, dtype in zip(columns, _PLACED_DTYPES, strict=True))
    )


def place_rows(rows: Rows, grid: PriceGrid, kde: KernelDensity | None) -> Placed:
    return place(rows.time, rows.price, rows.notional, rows.short, rows.exchange, grid, kde)


def square_sum(values: np.ndarray) -> int:
    """Exact sum of squares of non-negative int64 values below 2**54."""
    if len(values) < _SQUARE_CHUNK:
        return sum(v * v for v in values.tolist())
    padded = np.zeros(-(-len(values) // _SQUARE_CHUNK) * _SQUARE_CHUNK, np.int64)
    padded[: len(values)] = values
    high, low = np.divmod(padded, 1 << 26)
    rows = (-1, _SQUARE_CHUNK)
    highs = (high * high).reshape(rows).sum(axis=1).tolist()
    crosses = (high * low).reshape(rows).sum(axis=1).tolist()
    lows = (low * low).reshape(rows).sum(axis=1).tolist()
    return (sum(highs) << 52) + (sum(crosses) << 27) + sum(lows)


class LatticeChange:
    """Weights (micros) added to density lattice nodes, with what they add to a density,
    worked out once per axis: every window of a book shares one axis, so the nine windows
    an arrival enters add the same terms.

    Those of many rows are listed only when their terms are asked for: past
    DENSITY_SPREAD_MOST nodes they never are (the density is made again from the lattice),
    and listing them anyway took a seventh of a restore's CPU (every window is made from
    the store), and milliseconds of a flush a long window with a large batch fell due in."""

    def __init__(self, nodes: list[int], weights: list[int]) -> None:
        self.size = len(nodes)  # node entries, a node may come twice
        self._listed = (nodes, weights)
        self._columns: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._terms: tuple[KernelDensity, DensityTerms] | None = None

    @classmethod
    def of(cls, rows: Placed) -> LatticeChange:
        """Of many rows, as numpy gives them: every left node, then every right one."""
        on = rows.node >= 0
        node, right = rows.node[on], rows.right[on]
        change = cls([], [])
        change.size = 2 * len(node)
        change._columns = (node, rows.micros[on] - right, right)
        return change

    def terms(self, kde: KernelDensity) -> DensityTerms:
        if self._terms is None or self._terms[0] is not kde:
            nodes, weights = self._lists()
            self._terms = (kde, kde.terms(nodes, [w / MICROS for w in weights]))
        return self._terms[1]

    def _lists(self) -> tuple[list[int], list[int]]:
        if self._columns is not None:
            node, left, right = self._columns
            nodes = [*node.tolist(), *(node + 1).tolist()]
            self._listed = (nodes, [*left.tolist(), *right.tolist()])
            self._columns = None
        return self._listed


class RowSums:
    """A few rows (at most ROW_BY_ROW) summed once for every window that takes them all:
    a book's arrivals enter up to nine windows' sums, which then each add a handful of
    totals instead of walking the rows again. Integer sums do not depend on the order they
    are added in, and the density terms are the same floats added in the same order, so a
    window ends bit for bit where taking the rows one by one leaves it."""

    def __init__(self, rows: Placed) -> None:
        self.count = len(rows)
        self.long = self.short = self.squares = 0
        self.exchanges: dict[int, list[int]] = {}  # code -> [count, long, short]
        self.bins: dict[int, list[int]] = {}  # index -> [long, short, count]
        self.lattice: dict[int, int] = {}  # node -> micros
        nodes: list[int] = []
        weights: list[int] = []
        for index, amount, short, exchange, node, right in zip(
            rows.bin.tolist(),
            rows.micros.tolist(),
            rows.short.tolist(),
            rows.exchange.tolist(),
            rows.node.tolist(),
            rows.right.tolist(),
            strict=True,
        ):
            held = self.exchanges.setdefault(exchange, [0, 0, 0])
            held[0] += 1
            bin_ = self.bins.setdefault(index, [0, 0, 0])
            bin_[2] += 1
            if short:
                self.short += amount
                held[2] += amount
                bin_[1] += amount
            else:
                self.long += amount
                held[1] += amount
                bin_[0] += amount
            self.squares += amount * amount
            if node >= 0:
                lattice = self.lattice
                lattice[node] = lattice.get(node, 0) + amount - right
                lattice[node + 1] = lattice.get(node + 1, 0) + right
                nodes += (node, node + 1)
                weights += (amount - right, right)
        self.spread = LatticeChange(nodes, weights)


class Arrivals:
    """A book's rows arrived since its windows last drained, with what every window that
    takes them all shares: their sums when few (`RowSums`), their density terms when
    many (`LatticeChange`)."""

    def __init__(self, rows: Placed) -> None:
        self.rows = rows
        self.first = int(rows.time.min())  # the oldest time
        self.last = int(rows.time.max())  # the newest
        self.summed = RowSums(rows) if len(rows) <= ROW_BY_ROW else None
        self.spread = LatticeChange.of(rows) if self.summed is None else None


class WindowSums:
    def __init__(self) -> None:
        self.count = 0
        self.long = 0  # micros
        self.short = 0
        self.squares = 0  # of micros
        self.exchanges: dict[int, list[int]] = {}  # exchange code -> [count, long, short]
        self._lo = 0
        self._long = np.zeros(0, np.int64)
        self._short = np.zeros(0, np.int64)
        self._count = np.zeros(0, np.int64)
        self._far: dict[int, list[int]] = {}
        # The density's axis, its lattice (int64 micros per fine node, exact) and the
        # density itself, kept by adding what each change contributes (`accumulate`) and
        # made again from the lattice every DENSITY_RESYNC changes, so round-off never
        # builds up; None: no axis yet, or it moved (the lattice is made again).
        self.kde: KernelDensity | None = None
        self.lattice: np.ndarray | None = None
        self._density: np.ndarray | None = None
        self._spreads = 0
        self.density_range: tuple[int, int] | None = None  # points changed since taken
        # Bins changed since the last `take_changes`, with their values before the change
        # (the values clients hold).
        self._touched: dict[int, tuple[int, int, int]] = {}

    # -- changes ----------------------------------------------------------------------

    def take(self, arrivals: Arrivals) -> None:
        """Count all of `arrivals` in."""
        if arrivals.summed is not None:
            self.add_summed(arrivals.summed, 1)
        else:
            self.add(arrivals.rows, 1, arrivals.spread)

    def add(self, rows: Placed, sign: int, spread: LatticeChange | None = None) -> None:
        """Count `rows` in (sign 1) or out (sign -1); `spread`: their lattice change, when
        already made."""
        if not len(rows):
            return
        if len(rows) <= ROW_BY_ROW:
            self.add_summed(RowSums(rows), sign)
            return
        amounts = rows.micros
        short = rows.short
        self.count += sign * len(rows)
        short_total = int(amounts[short].sum())
        self.short += sign * short_total
        self.long += sign * (int(amounts.sum()) - short_total)
        self.squares += sign * square_sum(amounts)
        for code in np.unique(rows.exchange).tolist():
            mine = rows.exchange == code
            shorts = int(amounts[mine & short].sum())
            self._count_exchange(
                code,
                sign * int(mine.sum()),
                sign * (int(amounts[mine].sum()) - shorts),
                sign * shorts,
            )
        if self.lattice is not None:
            on = rows.node >= 0
            node, right = rows.node[on], rows.right[on] * sign
            left = amounts[on] * sign - right
            np.add.at(self.lattice, node, left)
            np.add.at(self.lattice, node + 1, right)
            self._spread(spread or LatticeChange.of(rows), sign)
        bins = rows.bin
        self._remember(np.unique(bins).tolist())
        if not all(self._fit(int(bins.min()), int(bins.max()))):
            dense = (bins >= self._lo) & (bins < self._lo + len(self._count))
            self._add_far(rows.take(~dense), sign)
            rows = rows.take(dense)
            bins, amounts, short = rows.bin, rows.micros, rows.short
        slots = bins - self._lo
        signed = amounts * sign
        np.add.at(self._long, slots[~short], signed[~short])
        np.add.at(self._short, slots[short], signed[short])
        np.add.at(self._count, slots, sign)

    def add_summed(self, rows: RowSums, sign: int) -> None:
        """Count rows summed by `RowSums` in (sign 1) or out (sign -1)."""
        self.count += sign * rows.count
        self.long += sign * rows.long
        self.short += sign * rows.short
        self.squares += sign * rows.squares
        for code, (count, long, short) in rows.exchanges.items():
            self._count_exchange(code, sign * count, sign * long, sign * short)
        touched = self._touched
        for index, (long, short, count) in rows.bins.items():
            if index not in touched:
                touched[index] = self.bin(index)
            slot = index - self._lo
            if not 0 <= slot < len(self._count) and not self._fit(index, index)[0]:
                self._add_far_bin(index, sign * long, sign * short, sign * count)
            else:
                slot = index - self._lo
                if long:
                    self._long[slot] += sign * long
                if short:
                    self._short[slot] += sign * short
                self._count[slot] += sign * count
        lattice = self.lattice
        if lattice is not None and rows.lattice:
            for node, weight in rows.lattice.items():
                lattice[node] += sign * weight
            self._spread(rows.spread, sign)

    # -- the density ------------------------------------------------------------------

    def set_axis(self, kde: KernelDensity | None) -> None:
        """A density axis (None: none yet); the lattice starts empty, for rows to come."""
        self.kde = kde
        self.lattice = None if kde is None else np.zeros(kde.fine_size, np.int64)
        self._density = None

    def forget_density(self) -> None:
        """Make the density again from the lattice when next asked for."""
        self._density = None

    def _spread(self, change: LatticeChange, sign: int) -> None:
        density = self._density
        if density is None or self.kde is None:
            return
        if change.size > DENSITY_SPREAD_MOST:  # cheaper made again from the lattice
            self._density = None
            return
        terms = change.terms(self.kde)
        self.kde.accumulate(density, terms, sign)
        touched = terms.touched
        if touched is not None:
            self._spreads += 1
            held = self.density_range
            self.density_range = (
                touched
                if held is None
                else (
                    min(held[0], touched[0]),
                    max(held[1], touched[1]),
                )
            )

    def density(self) -> np.ndarray:
        """The density of the rows held, on the axis (negatives of round-off included:
        callers clamp)."""
        kde, lattice = self.kde, self.lattice
        assert kde is not None and lattice is not None
        if self._density is None or self._spreads >= DENSITY_RESYNC:
            self._density = kde.smooth(lattice / MICROS, clamp=False)
            self._spreads = 0
            self.density_range = (0, len(self._density) - 1)
        return self._density

    def _count_exchange(self, code: int, count: int, long: int, short: int) -> None:
        held = self.exchanges.get(code)
        if held is None:
            held = self.exchanges[code] = [0, 0, 0]
        held[0] += count
        held[1] += long
        held[2] += short
        if not held[0]:
            del self.exchanges[code]

    def _add_far(self, rows: Placed, sign: int) -> None:
        for index, amount, short in zip(
            rows.bin.tolist(), rows.micros.tolist(), rows.short.tolist(), strict=True
        ):
            signed = sign * amount
            self._add_far_bin(index, 0 if short else signed, signed if short else 0, sign)

    def _add_far_bin(self, index: int, long: int, short: int, count: int) -> None:
        far = self._far.setdefault(index, [0, 0, 0])
        far[0] += long
        far[1] += short
        far[2] += count
        if far[2] == 0:
            del self._far[index]

    def _fit(self, low: int, high: int) -> tuple[bool, bool]:
        """Grow the dense arrays to cover bins low..high, unless that would stretch them
        past DENSE_BINS; returns whether low and high are then dense."""
        size = len(self._count)
        top = self._lo + size
        if size and self._lo <= low and high < top:
            return True, True
        want_lo, want_hi = (low, high + 1) if not size else (min(self._lo, low), max(top, high + 1))
        spare = DENSE_BINS - (want_hi - want_lo)
        if spare < 0:
            if size:
                return self._lo <= low < top, self._lo <= high < top
            want_lo, want_hi, spare = low, low + 1, DENSE_BINS - 1
        # Room on the side that grew, so a drifting market reallocates rarely.
        room = min(max(256, (want_hi - want_lo) // 2), spare)
        grow_low, grow_high = not size or want_lo < self._lo, not size or want_hi > top
        below = room // 2 if grow_low and grow_high else room if grow_low else 0
        new_lo, new_hi = want_lo - below, want_hi + (room - below if grow_high else 0)
        for name in ("_long", "_short", "_count"):
            new = np.zeros(new_hi - new_lo, np.int64)
            if size:
                new[self._lo - new_lo : top - new_lo] = getattr(self, name)
            setattr(self, name, new)
        self._lo = new_lo
        for index in [i for i in self._far if new_lo <= i < new_hi]:  # now dense
            long, short, count = self._far.pop(index)
            slot = index - new_lo
            self._long[slot], self._short[slot], self._count[slot] = long, short, count
        return new_lo <= low < new_hi, new_lo <= high < new_hi

    def _remember(self, indices: object) -> None:
        touched = self._touched
        for index in indices:  # type: ignore[attr-defined]
            if index not in touched:
                touched[index] = self.bin(index)

    # -- reading ----------------------------------------------------------------------

    def bin(self, index: int) -> tuple[int, int, int]:
        """(long micros, short micros, count) of one bin."""
        slot = index - self._lo
        if 0 <= slot < len(self._count):  # `item`: a Python int, without a numpy scalar
            return (self._long.item(slot), self._short.item(slot), self._count.item(slot))
        far = self._far.get(index)
        return (far[0], far[1], far[2]) if far else (0, 0, 0)

    def occupied(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(bin index, long micros, short micros, count) of every held bin, by index."""
        used = self._count.nonzero()[0]
        index = used + self._lo
        long, short, count = self._long[used], self._short[used], self._count[used]
        if self._far:
            far = sorted(self._far.items())
            index = np.concatenate((index, [i for i, _ in far])).astype(np.int64)
            long = np.concatenate((long, [v[0] for _, v in far])).astype(np.int64)
            short = np.concatenate((short, [v[1] for _, v in far])).astype(np.int64)
            count = np.concatenate((count, [v[2] for _, v in far])).astype(np.int64)
            order = np.argsort(index, kind="stable")
            index, long, short, count = index[order], long[order], short[order], count[order]
        return index, long, short, count

    def shapes(self, density: np.ndarray, kde: KernelDensity, width: float) -> list[ClusterShape]:
        """The clusters of `density` (on `kde`'s axis) over these bins (of `width`)."""
        index, long, short, count = self.occupied()
        if not len(index):
            return []
        return find_clusters(
            density,
            kde.start,
            kde.step,
            kde.bandwidth,
            index * width,
            long / MICROS,
            short / MICROS,
            count,
            width,
        )

    def bins_now(self, indices: list[int], grid: PriceGrid) -> list[Bin]:
        """Bins `indices` as they are now, as sent: what `bin_rows` gives, built one by
        one (a diff's few bins cost less so than through its arrays). A float of an int64
        divided by MICROS is numpy's division of the same two doubles."""
        width, decimals = grid.bin_width, grid.decimals
        rows: list[Bin] = []
        for index in indices:
            long, short, count = self.bin(index)
            low = round(index * width, decimals)
            rows.append((low, float(long) / MICROS, float(short) / MICROS, count))
        return rows

    def take_changes(self) -> dict[int, tuple[int, int, int]]:
        """The bins changed since the last call, with the values they had then."""
        touched, self._touched = self._touched, {}
        return {i: before for i, before in touched.items() if self.bin(i) != before}

    def published(self) -> dict[int, tuple[int, int, int]]:
        """Values of the bins changed since the last `take_changes`, as they were then."""
        return self._touched

    def statistics(self, exchanges: list[str]) -> Statistics:
        """The statistics; `exchanges` names the exchange codes (the store's list)."""
        count = self.count
        if count == 0:
            return EMPTY_STATISTICS
        total = self.long + self.short
        # n * sum(x^2) - sum(x)^2 is an exact integer >= 0: no cancellation, no clamp.
        variance = (count * self.squares - total * total) / (count * count)
        return Statistics(
            count,
            round_notional(total / MICROS),
            round_notional(self.long / MICROS),
            round_notional(self.short / MICROS),
            round_notional(total / count / MICROS),
            round_significant(variance**0.5 / MICROS),
            {
                exchanges[code]: ExchangeTotals(n, long / MICROS, short / MICROS)
                for code, (n, long, short) in sorted(self.exchanges.items())
            },
        )


def bin_rows(
    grid: PriceGrid, index: np.ndarray, long: np.ndarray, short: np.ndarray, count: np.ndarray
) -> list[Bin]:
    """Bins as sent: `[price_low, long, short, count]`, in the order given."""
    width, decimals = grid.bin_width, grid.decimals
    # PriceGrid.bin_low with the grid's constants hoisted: the same round().
    lows = [round(i * width, decimals) for i in index.tolist()]
    return list(
        zip(
            lows,
            (long / MICROS).tolist(),
            (short / MICROS).tolist(),
            count.tolist(),
            strict=True,
        )
    )
