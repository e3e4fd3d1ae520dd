"""What keeps alerts few and comparable: a symbol's background, cooldowns, cascade episodes,
and amounts written for people. Pure, like the engine that uses them (`hub.analytics.alerts`).

Decisions:
- A cascade's z-score is its own: how unusual its notional is for the symbol over its span.
  The background is the alert window's liquidations (count n over the window's span, mean
  m, standard deviation s); the flow expected over a span of d is a compound Poisson sum
  with rate l = n * d / span, mean l*m and variance l*(m^2 + s^2), and z = (notional - l*m) /
  sqrt(l*(m^2 + s^2)). So a cascade's `z_score` and `risk` (from z, as for any other kind)
  describe the same thing, and a `min_z` filter means "at least this unusual" for every
  kind. With no background yet (n = 0) z is 0.
- A cooldown is per (kind, side) of a symbol, keyed by the alert's own time (event time, or
  the hub's present for clusters), so a replay at any speed gives the same alerts. Within it
  only an alert clearly stronger than every one let through in it passes: a higher risk,
  or the same risk and at least twice the notional; a whale after a small fish is news,
  a second fish of the same size is not.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from hub.models import RiskLevel

RISK_LEVELS: tuple[RiskLevel, ...] = ("low", "moderate", "high", "extreme")
RISK_RANK = {level: rank for rank, level in enumerate(RISK_LEVELS)}
STRONGER = 2.0  # within a cooldown, the same risk passes at this many times the notional


class Background(NamedTuple):
    """A symbol's liquidations in the alert window: what "usual" is for it."""

    count: int
    mean: float
    std: float
    span_ms: float

    def z(self, notional: float) -> float:
        return (notional - self.mean) / self.std if self.std > 0 else 0.0

    def flow_z(self, notional: float, duration_ms: float) -> float:
        """z of `notional` liquidated within `duration_ms` against the usual flow."""
        rate = self.count * duration_ms / self.span_ms if self.span_ms > 0 else 0.0
        spread = math.sqrt(rate * (self.mean * self.mean + self.std * self.std))
        return (notional - rate * self.mean) / spread if spread > 0 else 0.0


NO_BACKGROUND = Background(0, 0.0, 0.0, 3_600_000.0)


class Cooldown:
    """Per key: until when alerts are held back, and the strongest let through since."""

    def __init__(self, seconds: float) -> None:
        self.span_ms = seconds * 1000.0
        self._held: dict[object, tuple[float, tuple[int, float]]] = {}

    def admits(self, key: object, time: float, risk: RiskLevel, notional: float | None) -> bool:
        """Whether an alert at `time` passes; if so, it starts a cooldown of its own.
        `notional` None: only a higher risk passes (for what is larger by definition)."""
        rank = RISK_RANK[risk]
        held = self._held.get(key)
        if held is not None and time < held[0]:
            held_rank, most = held[1]
            if rank < held_rank or (
                rank == held_rank and (notional is None or notional < STRONGER * most)
            ):
                return False
        if self.span_ms > 0:
            self._held[key] = (time + self.span_ms, (rank, notional or 0.0))
        return True


class Episode:
    """One side's cascade from its first alert until it is over: every liquidation on the
    side meanwhile, and what its last alert said."""

    __slots__ = ("alerted", "count", "first", "last_alert", "notional", "opened")
    __slots__ += ("price_notional", "tallies", "updates")

    def __init__(self, first: int, alert_time: int) -> None:
        self.first = first  # ms: the time of the earliest liquidation it holds
        self.opened = alert_time  # its first alert's time: names its updates
        self.last_alert = alert_time
        self.count = 0
        self.notional = 0.0
        self.price_notional = 0.0
        self.tallies: dict[str, int] = {}
        self.alerted = 0.0
        self.updates = 0

    def add(self, exchange: str, price: float, notional: float) -> None:
        self.count += 1
        self.notional += notional
        self.price_notional += price * notional
        self.tallies[exchange] = self.tallies.get(exchange, 0) + 1

    @property
    def price(self) -> float:
        return self.price_notional / self.notional if self.notional > 0 else 0.0


def usd(value: float) -> str:
    """An amount for people: $950, $12.3K, $6.21M, $1.05B (three significant digits)."""
    size = abs(value)
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if size >= scale * 0.9995:
            scaled = value / scale
            digits = 2 if abs(scaled) < 10 else 1 if abs(scaled) < 100 else 0
            return f"${scaled:.{digits}f}{suffix}"
    return f"${value:,.0f}"


def price_text(value: float) -> str:
    """A price for people: seven significant digits, thousands separated ($2,732.925)."""
    return f"${value:,.7g}" if value >= 1 else f"${value:.4g}"
