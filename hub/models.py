"""Wire models shared by every layer: the normalized event and the messages clients see.

They are msgspec Structs so that a frame is decoded straight from bytes and encoded once;
field names are those of docs/protocol.md and are stable.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec

Side = Literal["long", "short"]
RiskLevel = Literal["low", "moderate", "high", "extreme"]

# Floats derived for output (a notional from price x quantity, a sum, a mean, a share)
# carry binary round-off that JSON would spell out in full (13798.482000000002). They are
# rounded where they are made for output, never inside the processor's running sums:
# notionals to a millionth of the quote currency, anything else to ten significant digits.
NOTIONAL_DECIMALS = 6
SIGNIFICANT_DIGITS = 10


def round_notional(value: float) -> float:
    return round(value, NOTIONAL_DECIMALS)


def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    if value == 0.0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


class LiquidationEvent(msgspec.Struct, frozen=True, gc=False):
    """One liquidation, normalized from any exchange (docs/protocol.md, Liquidations)."""

    exchange: str
    symbol: str
    side: Side
    price: float
    quantity: float
    notional: float
    time: int  # exchange trade time, ms since epoch
    est_leverage: float | None = None
    tier: str | None = None


class Cluster(msgspec.Struct, frozen=True, gc=False):
    """A peak of the density: where liquidations concentrate.

    `id` is stable while the same peak persists across updates, so alerts can tell a new
    cluster from one that grew.
    """

    id: int
    price: float
    low: float
    high: float
    notional: float
    count: int
    long_share: float
    z_score: float
    risk: RiskLevel


class ExchangeTotals(msgspec.Struct, frozen=True, gc=False):
    count: int
    long_notional: float
    short_notional: float


class Statistics(msgspec.Struct, frozen=True, gc=False):
    event_count: int
    total_notional: float
    long_notional: float
    short_notional: float
    mean: float
    std: float
    by_exchange: dict[str, ExchangeTotals] = {}


class Density(msgspec.Struct, frozen=True, gc=False):
    """KDE-smoothed notional per `step` of price, sampled at `start + i * step`."""

    start: float
    step: float
    values: list[float]


# [price_low, long_notional, short_notional, count]
Bin = tuple[float, float, float, int]
# [offset, [values...]]: density values[offset + i] = run[i]
DensityRun = tuple[int, list[float]]


class WindowCoverage(msgspec.Struct, frozen=True, gc=False):
    """What a window shows of its span: `from` the oldest time it covers (ms), `complete`
    whether that is the whole span with no hole (docs/analytics.md, Coverage)."""

    from_: int = msgspec.field(name="from")
    complete: bool = False


NO_COVERAGE = WindowCoverage(0, False)


class HeatmapSnapshot(msgspec.Struct, gc=False):
    symbol: str
    window: str
    seq: int
    epoch: str
    time: int
    reference_price: float
    bin_width: float
    bins: list[Bin]
    density: Density
    clusters: list[Cluster]
    statistics: Statistics
    coverage: WindowCoverage = NO_COVERAGE


class HeatmapDiff(msgspec.Struct, omit_defaults=True, gc=False):
    """Only what changed, as new absolute values; a bin with count 0 is gone. The density
    comes whole (`density`) when its axis moved, else as the runs of values that changed
    (`density_patch`)."""

    time: int
    bins: list[Bin] = []
    clusters: list[Cluster] | None = None
    statistics: Statistics | None = None
    reference_price: float | None = None
    density: Density | None = None
    density_patch: list[DensityRun] | None = None
    coverage: WindowCoverage | None = None


class Alert(msgspec.Struct, frozen=True, gc=False):
    id: str
    kind: Literal["cluster_new", "cluster_growth", "large_liquidation", "cascade"]
    symbol: str
    price: float
    notional: float
    z_score: float
    risk: RiskLevel
    window: str
    time: int
    side: Side | None = None
    detail: str = ""
    exchanges: tuple[str, ...] = ()  # whose liquidations it is about; () for a cluster


class ChannelMessage(msgspec.Struct, gc=False):
    """What a subscriber receives on a channel; `data` depends on `type`."""

    ch: str
    type: str
    seq: int
    epoch: str
    data: Any


class RawChannelMessage(msgspec.Struct, gc=False):
    """A channel message whose `data` is left encoded, for routing without a full decode."""

    ch: str
    type: str
    seq: int
    epoch: str
    data: msgspec.Raw


class OpenInterestUpdate(msgspec.Struct, frozen=True, gc=False):
    """Open interest of one exchange's contract, normalized (any exchange plugs in here).

    `oi` is in base units (contracts x contract value); `price` is the mark or last price
    when the source gives one; `taker_buy_share` is the taker buy share of volume over the
    interval since the previous update, when the source has trades."""

    exchange: str
    symbol: str
    time: int  # ms since epoch
    oi: float
    price: float | None = None
    taker_buy_share: float | None = None


class MarkPriceUpdate(msgspec.Struct, frozen=True, gc=False):
    exchange: str
    symbol: str
    time: int  # ms since epoch
    price: float


class MarkPrice(msgspec.Struct, frozen=True, gc=False):
    """The mark price a symbol's candles and predicted levels go by, and its source."""

    time: int  # ms since epoch, the exchange's
    price: float
    exchange: str


class PredictedLevel(msgspec.Struct, frozen=True, gc=False):
    """Estimated notional of open positions that would be liquidated in one price bin.

    `price` is the bin's low edge on the heatmap's grid; `side` is whose positions (`long`
    levels lie below their entry, `short` above); `opened` is when the level opened."""

    price: float
    side: Side
    notional: float
    leverage: float
    opened: int


class ConsumedLevel(msgspec.Struct, frozen=True, gc=False):
    """A level the price crossed: `consumed` is when, `notional` what it held then."""

    price: float
    side: Side
    notional: float
    leverage: float
    opened: int
    consumed: int


class PredictedSnapshot(msgspec.Struct, gc=False):
    symbol: str
    seq: int
    epoch: str
    time: int
    reference_price: float
    bin_width: float
    levels: list[PredictedLevel]
    consumed: list[ConsumedLevel]
    mark: MarkPrice | None = None


class PredictedDiff(msgspec.Struct, omit_defaults=True, gc=False):
    """Only what changed, as new absolute values: the full lists, when they changed."""

    time: int
    levels: list[PredictedLevel] | None = None
    consumed: list[ConsumedLevel] | None = None
    reference_price: float | None = None
    mark: MarkPrice | None = None
