"""The price grid of one symbol: bin width, reference price and the density range.

Decisions:
- Bins are anchored at zero (bin k covers [k*w, (k+1)*w)), and the width w is fixed for the
  life of an epoch, so a bin a client holds never moves or splits under it. w is the 1-2-5
  step nearest (in log scale) to 0.05 % of the price at the epoch's start: 20 for BTC at
  60,000, 0.0002 for ADA at 0.45.
- The reference price centres the density range (±HEATMAP_PRICE_RANGE %). It is the
  market price (an exponential average of recent liquidation prices, kept by the
  processor) snapped to the bin grid, and it only moves when the market price drifts
  more than a quarter of the range away from it, so the density axis stays put while the
  market wanders and clients are not sent a new axis on every event.
- A new epoch (and a fresh grid) starts only when the price has moved so far that the bin
  width is off by more than a factor of ~2.5 from the ideal one.
"""

from __future__ import annotations

import math

import msgspec

_STEPS = (1.0, 2.0, 5.0, 10.0)
BIN_FRACTION = 0.0005  # target bin width as a fraction of price
RECENTRE_FRACTION = 0.25  # of the range, before the reference moves
REBASE_RATIO = 2.5  # ideal/actual bin width ratio that forces a new epoch


def choose_bin_width(price: float) -> float:
    if not math.isfinite(price) or price <= 0:
        raise ValueError(f"price must be positive, got {price!r}")
    target = price * BIN_FRACTION
    exponent = math.floor(math.log10(target))
    scale = 10.0**exponent
    best = min(_STEPS, key=lambda step: abs(math.log10(step * scale / target)))
    return _clean(best * scale, exponent)


def _clean(value: float, exponent: int) -> float:
    """Round away binary noise (0.1 * 3 -> 0.3) at a precision the width can carry."""
    return round(value, max(0, 6 - exponent))


class PriceGrid(msgspec.Struct, frozen=True):
    bin_width: float
    reference_price: float
    range_pct: float
    epoch: str

    @classmethod
    def around(cls, price: float, range_pct: float, epoch: str) -> PriceGrid:
        width = choose_bin_width(price)
        return cls(width, _snap(price, width), range_pct, epoch)

    @property
    def decimals(self) -> int:
        return max(0, 2 - math.floor(math.log10(self.bin_width)))

    def bin_index(self, price: float) -> int:
        # The epsilon keeps a price exactly on a boundary (0.4496 / 0.0001) out of the bin below.
        return math.floor(price / self.bin_width + 1e-9)

    def bin_low(self, index: int) -> float:
        return round(index * self.bin_width, self.decimals)

    @property
    def half_range(self) -> float:
        return self.reference_price * self.range_pct / 100.0

    @property
    def density_start(self) -> float:
        """First density point: the centre of the bin holding reference - range."""
        first = self.bin_index(self.reference_price - self.half_range)
        return round((first + 0.5) * self.bin_width, self.decimals + 1)

    @property
    def density_size(self) -> int:
        return math.ceil(2 * self.half_range / self.bin_width) + 1

    def recentred(self, price: float) -> PriceGrid | None:
        """The grid with a moved reference when `price` drifted far enough, else None."""
        if abs(price - self.reference_price) <= RECENTRE_FRACTION * self.half_range:
            return None
        return PriceGrid(self.bin_width, _snap(price, self.bin_width), self.range_pct, self.epoch)

    def steady_band(self) -> tuple[float, float]:
        """Prices for which neither `recentred` nor `needs_new_epoch` can fire: a cheap
        bounds check per event instead of both. Narrowed by a relative 1e-9 so that rounding
        at its edges never lets through a price either method would act on."""
        reach = RECENTRE_FRACTION * self.half_range
        low = max(self.reference_price - reach, self.bin_width / (REBASE_RATIO * BIN_FRACTION))
        high = min(self.reference_price + reach, self.bin_width * REBASE_RATIO / BIN_FRACTION)
        return low * (1 + 1e-9), high * (1 - 1e-9)

    def needs_new_epoch(self, price: float) -> bool:
        ideal = price * BIN_FRACTION
        return not 1 / REBASE_RATIO <= ideal / self.bin_width <= REBASE_RATIO


def _snap(price: float, width: float) -> float:
    exponent = math.floor(math.log10(width))
    return round(round(price / width) * width, max(0, 2 - exponent))
