"""The hub's hourly liquidation totals against CoinGlass's, for the same hours. Pure.

CoinGlass aggregates every liquidation its sources report for the exchanges asked for;
the hub sees what the exchanges push, and Binance pushes at most one liquidation per
symbol per second, so `ratio` (hub / CoinGlass) below 1 is expected and its size says
how much of the market the hub's sample holds. `correlation` (Pearson, over the hourly
long + short totals) says whether the two move together, whatever the scale. Only whole
hours that both sides cover are compared; CoinGlass's own totals of the window
(`reported`) stand apart, so they show before the hub has run through a whole hour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec
import numpy as np

from hub.models import LiquidationEvent

HOUR_MS = 3_600_000
MIN_HOURS_FOR_CORRELATION = 3

Hourly = Mapping[int, tuple[float, float]]  # hour start ms -> (long usd, short usd)


class Totals(msgspec.Struct, frozen=True):
    long_usd: float
    short_usd: float


class Reported(msgspec.Struct, frozen=True):
    """CoinGlass's own totals over the hours it answered."""

    long_usd: float
    short_usd: float
    hours: int


class Comparison(msgspec.Struct, frozen=True):
    coinglass: Totals
    hub: Totals
    ratio: float | None  # hub / CoinGlass, total notional
    correlation: float | None
    hours: int


class Check(msgspec.Struct, frozen=True):
    """A symbol's CoinGlass figures, and the comparison where one exists."""

    coinglass: Reported
    comparison: Comparison | None  # None while no whole hour of the hub overlaps


def hub_hours(
    events: Iterable[LiquidationEvent], since: int, until: int
) -> dict[int, tuple[float, float]]:
    """Long and short notional per whole hour in [since, until)."""
    hours: dict[int, tuple[float, float]] = {}
    for event in events:
        if not since <= event.time < until:
            continue
        hour = event.time - event.time % HOUR_MS
        long_usd, short_usd = hours.get(hour, (0.0, 0.0))
        if event.side == "long":
            long_usd += event.notional
        else:
            short_usd += event.notional
        hours[hour] = (long_usd, short_usd)
    return hours


def reported(coinglass: Hourly, since: int, until: int) -> Reported:
    """CoinGlass's totals over its hours starting in [since, until)."""
    picked = [pair for hour, pair in coinglass.items() if since <= hour < until]
    return Reported(
        round(sum(long_usd for long_usd, _ in picked), 2),
        round(sum(short_usd for _, short_usd in picked), 2),
        len(picked),
    )


def compare(coinglass: Hourly, hub: Hourly, hours: Iterable[int]) -> Comparison:
    """Compare over `hours` (hour starts both cover; an hour the hub saw nothing in is 0)."""
    picked = sorted(h for h in hours if h in coinglass)
    cg = np.array([coinglass[h] for h in picked], dtype=float).reshape(-1, 2)
    ours = np.array([hub.get(h, (0.0, 0.0)) for h in picked], dtype=float).reshape(-1, 2)
    cg_total, hub_total = cg.sum(axis=1), ours.sum(axis=1)
    correlation = None
    if len(picked) >= MIN_HOURS_FOR_CORRELATION and cg_total.std() > 0 and hub_total.std() > 0:
        correlation = round(float(np.corrcoef(cg_total, hub_total)[0, 1]), 4)
    ratio = round(float(hub_total.sum() / cg_total.sum()), 6) if cg_total.sum() > 0 else None
    return Comparison(
        coinglass=Totals(round(float(cg[:, 0].sum()), 2), round(float(cg[:, 1].sum()), 2)),
        hub=Totals(round(float(ours[:, 0].sum()), 2), round(float(ours[:, 1].sum()), 2)),
        ratio=ratio,
        correlation=correlation,
        hours=len(picked),
    )
