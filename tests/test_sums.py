"""Window sums: rows summed once for several windows end where row-by-row adding does."""

from __future__ import annotations

import numpy as np

from hub.analytics.density import KernelDensity
from hub.analytics.grid import PriceGrid
from hub.analytics.sums import (
    ROW_BY_ROW,
    Arrivals,
    Placed,
    RowSums,
    WindowSums,
    place,
    place_few,
)

GRID = PriceGrid.around(60_000.0, 15.0, "BTCUSDT.0")
# The axis every window of the book shares (bandwidth 0.3 % of the price).
KDE = KernelDensity(GRID.density_start, GRID.bin_width, GRID.density_size, 180.0)


def rows(count: int, seed: int) -> Placed:
    """Clumped prices (shared bins and lattice nodes), a few off the density's axis."""
    rng = np.random.default_rng(seed)
    price = rng.choice([52_000.0, 60_000.0, 60_020.0, 75_000.0], count) + rng.normal(0, 30, count)
    return place(
        np.arange(count, dtype=np.int64) + 1_000,
        price,
        np.round(rng.lognormal(8, 2, count), 2),
        rng.random(count) < 0.5,
        rng.integers(0, 3, count).astype(np.uint8),
        GRID,
        KDE,
    )


def fresh() -> WindowSums:
    sums = WindowSums()
    sums.set_axis(KDE)
    sums.density()  # kept from here on by adding terms
    return sums


def state(sums: WindowSums) -> tuple:
    assert sums.lattice is not None
    return (
        [column.tolist() for column in sums.occupied()],
        sums.count,
        sums.long,
        sums.short,
        sums.squares,
        sorted((code, list(v)) for code, v in sums.exchanges.items()),
        sums.lattice.tolist(),
    )


def test_rows_summed_once_end_bit_for_bit_where_row_by_row_adding_does() -> None:
    placed = rows(200, seed=3)
    shared = [fresh(), fresh()]
    one_by_one = fresh()
    for start in range(0, len(placed), ROW_BY_ROW):
        chunk = placed.take(slice(start, start + ROW_BY_ROW))
        summed = RowSums(chunk)
        for sums in shared:
            sums.add_summed(summed, 1)
        for row in range(len(chunk)):
            one_by_one.add(chunk.take(slice(row, row + 1)), 1)
    expected = state(one_by_one)
    for sums in shared:
        assert state(sums) == expected, "shared sums differ from row-by-row sums"
        assert sums.density().tolist() == one_by_one.density().tolist(), (
            "shared density differs from the row-by-row one"
        )
    at_once = WindowSums()
    at_once.set_axis(KDE)
    at_once.add(placed, 1)
    assert state(at_once) == expected, "vectorised sums differ from row-by-row sums"


def test_rows_summed_once_leave_nothing_behind_when_taken_out() -> None:
    placed = rows(ROW_BY_ROW, seed=5)
    summed = RowSums(placed)
    sums = fresh()
    sums.add_summed(summed, 1)
    sums.add_summed(summed, -1)
    assert (sums.count, sums.long, sums.short, sums.squares) == (0, 0, 0, 0), (
        f"expected empty totals, saw {(sums.count, sums.long, sums.short, sums.squares)}"
    )
    assert sums.exchanges == {}, f"expected no exchanges, saw {sums.exchanges}"
    assert len(sums.occupied()[0]) == 0, f"expected no bins, saw {sums.occupied()[0]}"
    assert sums.lattice is not None and not sums.lattice.any(), "lattice not back to zero"
    assert np.abs(sums.density()).max() < 1e-6, "density not back to (round-off) zero"


def test_many_arrivals_shared_by_windows_end_where_each_adding_them_does() -> None:
    placed = rows(100, seed=7)  # 200 lattice nodes: the density is kept by adding terms
    arrivals = Arrivals(placed)
    assert arrivals.summed is None, "expected many rows to take the vectorised path"
    shared = [fresh(), fresh()]
    for sums in shared:
        sums.take(arrivals)
    alone = fresh()
    alone.add(placed, 1)
    for sums in shared:
        assert state(sums) == state(alone), "shared sums differ from sums adding alone"
        assert sums.density().tolist() == alone.density().tolist(), (
            "shared density differs from the one adding alone"
        )


def test_a_few_rows_placed_one_by_one_are_placed_as_numpy_places_them() -> None:
    rng = np.random.default_rng(11)
    count = 2_000
    # Prices around the axis, past both its ends, on its very first and last fine node,
    # and on bin boundaries; notionals up to the largest a store takes, and half micros
    # (rounded to even).
    price = np.concatenate(
        (
            rng.uniform(40_000.0, 80_000.0, count),
            [KDE.start - 5 * KDE.bandwidth, KDE.start + (KDE.size - 1) * KDE.step],
            GRID.bin_width * rng.integers(2_500, 3_500, 8),
        )
    )
    total = len(price)
    notional = rng.lognormal(8, 3, total).round(2)
    notional[:4] = (1e10, 0.0, 5e-7, 2.5e-6)
    short = rng.random(total) < 0.5
    exchange = rng.integers(0, 3, total).astype(np.uint8)
    time = np.arange(total, dtype=np.int64) + 1_000
    # As a book keeps its arrivals: every field a float.
    rows = np.column_stack((time, price, notional, short, exchange)).tolist()
    for kde in (KDE, None):
        by_numpy = place(time, price, notional, short, exchange, GRID, kde)
        one_by_one = place_few(rows, GRID, kde)
        for column, expected in zip(one_by_one, by_numpy, strict=True):
            assert column.dtype == expected.dtype
            assert column.tolist() == expected.tolist()
        if kde is not None:  # both on and off the lattice
            assert (by_numpy.node == -1).any() and (by_numpy.node >= 0).any()
