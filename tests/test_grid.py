"""The price grid: 1-2-5 bin widths, bin boundaries, recentre hysteresis, the new-epoch rule."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.analytics.grid import (
    BIN_FRACTION,
    RECENTRE_FRACTION,
    PriceGrid,
    choose_bin_width,
)


@pytest.mark.parametrize(
    ("price", "width"),
    [
        (60_000.0, 20.0),  # BTC: target 30, 20 is nearer than 50 in log scale
        (27_000.0, 10.0),
        (100_000.0, 50.0),
        (3_000.0, 2.0),  # ETH
        (1_000.0, 0.5),
        (580.0, 0.2),  # BNB
        (150.0, 0.1),  # SOL
        (2.2, 0.001),
        (1.0, 0.0005),
        (0.45, 0.0002),  # ADA
        (0.0595, 0.00002),
        (0.00001, 5e-9),  # PEPE-like
    ],
)
def test_bin_width_is_the_nearest_1_2_5_step(price: float, width: float) -> None:
    assert choose_bin_width(price) == width


@settings(max_examples=100, deadline=None)
@given(st.floats(1e-8, 1e7, allow_nan=False, allow_infinity=False))
def test_bin_width_is_clean_and_near_the_target(price: float) -> None:
    width = choose_bin_width(price)
    exponent = math.floor(math.log10(width) + 1e-9)
    mantissa = width / 10.0**exponent
    assert min(abs(mantissa - m) for m in (1.0, 2.0, 5.0)) < 1e-9
    # The widest gap between neighbouring steps is 2 -> 5, so the nearest is within sqrt(2.5).
    ratio = width / (price * BIN_FRACTION)
    assert 1 / math.sqrt(2.5) - 1e-9 <= ratio <= math.sqrt(2.5) + 1e-9
    assert repr(width) == repr(float(Decimal(repr(width))))  # no 0.30000000000000004 noise
    assert len(repr(width).replace("e-0", "e-")) <= 8


@pytest.mark.parametrize("price", [0.0, -1.0, math.nan, math.inf])
def test_bin_width_refuses_a_non_price(price: float) -> None:
    with pytest.raises(ValueError):
        choose_bin_width(price)


def grid(reference: float, width: float, range_pct: float = 15.0) -> PriceGrid:
    return PriceGrid(width, reference, range_pct, "e")


@pytest.mark.parametrize(
    ("price", "width", "index", "low"),
    [
        (0.4496, 0.0002, 2248, 0.4496),  # exactly on a boundary: its own bin, not the one below
        (0.4495, 0.0002, 2247, 0.4494),
        (0.4497, 0.0002, 2248, 0.4496),
        (0.4496, 0.0001, 4496, 0.4496),
        (0.4495, 0.0001, 4495, 0.4495),
        (0.3, 0.1, 3, 0.3),  # 0.3 / 0.1 = 2.9999999999999996 in floats
        (0.7, 0.1, 7, 0.7),
        (60_000.0, 20.0, 3000, 60_000.0),
        (59_999.9, 20.0, 2999, 59_980.0),
        (1.0005, 0.0005, 2001, 1.0005),
        (2.4e-8, 5e-9, 4, 2e-8),
    ],
)
def test_bin_index_on_boundaries(price: float, width: float, index: int, low: float) -> None:
    g = grid(price, width)
    assert g.bin_index(price) == index
    assert g.bin_low(index) == low


@settings(max_examples=100, deadline=None)
@given(
    width=st.sampled_from(["0.0001", "0.0002", "0.0005", "0.1", "0.2", "2", "20", "5e-9"]),
    index=st.integers(1, 6_000),
)
def test_every_boundary_price_lands_in_its_own_bin(width: str, index: int) -> None:
    # A price as an exchange prints it (a decimal string), exactly on a bin edge.
    step = Decimal(width)
    g = grid(float(step * 3_000), float(step))
    boundary = float(step * index)
    assert g.bin_index(boundary) == index
    assert g.bin_low(index) == boundary
    # A tick below the edge (the finest tick: a tenth of the width) is in the bin below.
    assert g.bin_index(float(step * index - step / 10)) == index - 1


def test_density_axis_covers_the_range_around_the_reference() -> None:
    btc = PriceGrid.around(60_000.0, 15.0, "e")
    assert (btc.bin_width, btc.reference_price) == (20.0, 60_000.0)
    assert btc.density_start == 51_010.0  # centre of the bin holding 60,000 - 9,000
    assert btc.density_size == 901
    ada = PriceGrid.around(0.45, 15.0, "e")
    assert (ada.bin_width, ada.reference_price) == (0.0002, 0.45)
    assert ada.density_start == 0.3825
    assert ada.density_size == 676
    for g in (btc, ada):
        last = g.density_start + (g.density_size - 1) * g.bin_width
        assert g.density_start - g.bin_width / 2 <= g.reference_price - g.half_range + 1e-12
        assert last >= g.reference_price + g.half_range - g.bin_width / 2 - 1e-12


def test_around_snaps_the_reference_to_the_bin_grid() -> None:
    assert PriceGrid.around(0.44963, 15.0, "e").reference_price == 0.4496
    assert PriceGrid.around(60_011.0, 15.0, "e").reference_price == 60_020.0


def test_recentre_hysteresis() -> None:
    g = PriceGrid.around(60_000.0, 15.0, "e1")
    threshold = RECENTRE_FRACTION * g.half_range
    assert threshold == 2_250.0
    # Within a quarter of the range either way, the axis stays put.
    for price in (60_000.0, 62_250.0, 57_750.0, 61_000.0):
        assert g.recentred(price) is None
    moved = g.recentred(62_275.0)
    assert moved is not None
    assert moved.reference_price == 62_280.0  # snapped to the 20-wide grid
    assert (moved.bin_width, moved.epoch, moved.range_pct) == (20.0, "e1", 15.0)
    # Hysteresis: coming back most of the way does not move it back.
    assert moved.recentred(60_100.0) is None
    assert moved.recentred(62_280.0 - RECENTRE_FRACTION * moved.half_range - 20) is not None
    below = g.recentred(57_700.0)
    assert below is not None and below.reference_price == 57_700.0


def test_new_epoch_only_when_the_width_is_far_off() -> None:
    g = PriceGrid.around(60_000.0, 15.0, "e1")  # width 20: ideal for 40,000 (0.05 %)
    # The ideal width may drift to 2.5x either way: prices from 16,000 to 100,000.
    for price in (16_100.0, 30_000.0, 60_000.0, 99_000.0, 100_000.0):
        assert not g.needs_new_epoch(price), price
    for price in (15_900.0, 100_100.0, 1_000_000.0, 1.0):
        assert g.needs_new_epoch(price), price
    # A recentre is no new epoch: the width stays for the epoch's life.
    assert not g.needs_new_epoch(64_000.0) and g.recentred(64_000.0) is not None
    fresh = PriceGrid.around(100_100.0, 15.0, "e2")
    assert fresh.bin_width == 50.0
    assert not fresh.needs_new_epoch(100_100.0)


@settings(max_examples=100, deadline=None)
@given(st.floats(1e-7, 1e6, allow_nan=False, allow_infinity=False))
def test_a_fresh_grid_fits_its_own_price(price: float) -> None:
    g = PriceGrid.around(price, 15.0, "e")
    assert not g.needs_new_epoch(price)
    assert g.recentred(price) is None
    assert abs(g.reference_price - price) <= g.bin_width / 2 * (1 + 1e-9)
