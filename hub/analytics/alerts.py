"""Alerts for one symbol: when a liquidation, a burst of them or a cluster is worth a message.

Owns `AlertThresholds` and `AlertEngine`, which turns events and cluster updates into the
four alert kinds of docs/analytics.md. Pure: time is always an argument, and the same
inputs give the same alerts.

Decisions:
- Hysteresis, so that a consumer sees an episode once. A cluster alerts `cluster_new` once per
  (window, cluster id), the first time its risk reaches `cluster_min_risk`; then
  `cluster_growth` only when its notional is up `growth_pct` since its last alert or its risk
  rose above the level last alerted. Remembered ids are forgotten by capacity, not by absence,
  so a cluster that flickers out of the list and back under the same id stays quiet; a peak
  re-found under a new id is new. A `cascade` fires once per side when the last
  `cascade_seconds` cross a threshold, then that side stays quiet until its window is below half
  of both thresholds (no escalation alert).
- The cascade thresholds apply per exchange: a cascade fires when one exchange's side crosses
  them, and reports what every exchange saw. The count threshold is calibrated on Binance's
  one-per-second sample; added across exchanges, the normal flow of three of them crosses
  it (in the bundled demo: 66 cascades instead of 27, most in calm minutes).
- Ids are `{symbol}:{kind}:{window}:{key}`, where the key is what makes the alert one of a
  kind: the event (large), side and firing event time (cascade), cluster id and the time of
  the cluster's first alert (new), the same and the growth ordinal (growth). Same inputs,
  same id, so copies can be de-duplicated. Cluster ids count from 1 again in a restarted
  process, so they alone would name a new cluster with an id a client has already seen
  (and drops); the first alert's time cannot repeat.
- `z_score` is the event's z (large), the cluster's z (cluster kinds), or the largest event z in
  the cascade, so a `min_z` filter means "involves something that unusual" for every kind.
  `risk` follows z for a large liquidation (`clusters.risk_level`: low < 1 <= moderate < 2 <=
  high < 3 <= extreme), is the cluster's own for cluster kinds, and for a cascade says how far
  past its threshold it fired: x = max(count / cascade_events, notional / cascade_notional);
  x < 1.5 moderate, < 2 high, else extreme (never low: a cascade is notable in itself).
- `on_event` is called once per event (its cascade state would double count otherwise), with
  the z-score measured in `window`; `on_clusters` may be called for any number of windows.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal, NamedTuple

import msgspec

from hub.analytics.clusters import risk_level
from hub.models import Alert, Cluster, LiquidationEvent, RiskLevel, Side

RISK_LEVELS: tuple[RiskLevel, ...] = ("low", "moderate", "high", "extreme")
_RISK_RANK = {level: rank for rank, level in enumerate(RISK_LEVELS)}
# Bounds the per-window hysteresis memory; far above the handful of clusters a window shows.
_REMEMBERED_CLUSTERS = 1024


def _cascade_risk(excess: float) -> RiskLevel:
    if excess >= 2.0:
        return "extreme"
    if excess >= 1.5:
        return "high"
    return "moderate"


def _price(value: float) -> str:
    return f"{value:,.8g}"


def _money(value: float) -> str:
    return f"{value:,.0f}"


class AlertThresholds(msgspec.Struct, frozen=True):
    large_notional: float = 1_000_000.0  # one event of notional >= 1,000,000 ...
    large_z: float = 3.0  # ... or z-score >= 3 in its window
    # cascade: >= N events OR >= V notional within T s on one side. Binance pushes at most
    # one liquidation per symbol per second, and same-side counts per 30 s run at 8
    # (median) to 19 (max) in normal times and 23-29 in cascades: 18 separates them.
    cascade_events: int = 18
    cascade_notional: float = 2_000_000.0
    cascade_seconds: float = 30.0
    growth_pct: float = 50.0  # notional up >= X% since the cluster's last alert
    cluster_min_risk: RiskLevel = "moderate"  # cluster_new fires at or above this risk

    def __post_init__(self) -> None:
        if self.cascade_events < 1 or self.cascade_notional <= 0 or self.cascade_seconds <= 0:
            raise ValueError("cascade thresholds must be positive")
        if self.growth_pct < 0:
            raise ValueError("growth_pct must not be negative")


class _Hit(msgspec.Struct, frozen=True, gc=False):  # a Struct: ~5x cheaper to make
    time: float
    notional: float
    price_notional: float
    z_score: float
    exchange: str


class _Tally:
    """One exchange's share of a cascade window."""

    __slots__ = ("count", "notional")

    def __init__(self) -> None:
        self.count = 0
        self.notional = 0.0

    def excess(self, limits: AlertThresholds) -> float:
        return max(self.count / limits.cascade_events, self.notional / limits.cascade_notional)


class _CascadeWindow:
    """One side's events over the last `span_ms`, with running sums, and whether it may fire."""

    def __init__(self, span_ms: float) -> None:
        self.span_ms = span_ms
        self.hits: deque[_Hit] = deque()
        self.notional = 0.0
        self.price_notional = 0.0
        self.tallies: dict[str, _Tally] = {}  # per exchange, for the thresholds
        self.armed = True
        self._latest = -math.inf

    def push(self, event: LiquidationEvent, z_score: float) -> bool:
        """Count `event`; whether any earlier hit left the window (only then can a side
        that fired become calm)."""
        # Out-of-order events count at the latest time seen, which keeps the deque ordered.
        if event.time > self._latest:
            self._latest = event.time
        horizon = self._latest - self.span_ms
        hits, tallies = self.hits, self.tallies
        expired = False
        while hits and hits[0].time <= horizon:
            gone = hits.popleft()
            self.notional -= gone.notional
            self.price_notional -= gone.price_notional
            tally = tallies[gone.exchange]
            tally.count -= 1
            tally.notional -= gone.notional
            expired = True
        if not hits:  # drop whatever rounding the running sums picked up
            self.notional = self.price_notional = 0.0
            tallies.clear()
        exchange = event.exchange
        notional = event.notional
        hits.append(_Hit(self._latest, notional, event.price * notional, z_score, exchange))
        self.notional += notional
        self.price_notional += event.price * notional
        tally = tallies.get(exchange)
        if tally is None:
            tally = tallies[exchange] = _Tally()
        tally.count += 1
        tally.notional += notional
        return expired

    def calm(self, limits: AlertThresholds) -> bool:
        """Every exchange below half of both thresholds: the side may fire again."""
        half_events, half_notional = limits.cascade_events / 2, limits.cascade_notional / 2
        for tally in self.tallies.values():
            if tally.count >= half_events or tally.notional >= half_notional:
                return False
        return True


class _Alerted(NamedTuple):
    """What a cluster looked like at its last alert, and when it was first alerted."""

    notional: float
    risk_rank: int
    growth_alerts: int
    first_alert: int  # ms: with the cluster id, names the cluster in its alerts' ids


DEFAULT_THRESHOLDS = AlertThresholds()


class AlertEngine:
    """Alert state for one symbol: cascade windows per side, alerted clusters per window."""

    def __init__(self, symbol: str, thresholds: AlertThresholds = DEFAULT_THRESHOLDS) -> None:
        self.symbol = symbol
        self.thresholds = thresholds
        span_ms = thresholds.cascade_seconds * 1000.0
        self._cascades: dict[Side, _CascadeWindow] = {
            "long": _CascadeWindow(span_ms),
            "short": _CascadeWindow(span_ms),
        }
        self._alerted: dict[str, dict[int, _Alerted]] = {}

    def on_event(self, event: LiquidationEvent, z_score: float, window: str) -> list[Alert]:
        """large_liquidation and cascade alerts raised by one event (call once per event)."""
        alerts = []
        limits = self.thresholds
        if event.notional >= limits.large_notional or z_score >= limits.large_z:
            alerts.append(self._large(event, z_score, window))
        cascade = self._cascades[event.side]
        expired = cascade.push(event, z_score)
        if cascade.armed:  # only the latest event's exchange can newly cross the thresholds
            tally = cascade.tallies[event.exchange]
            if tally.count >= limits.cascade_events or tally.notional >= limits.cascade_notional:
                cascade.armed = False
                alerts.append(self._cascade(cascade, event, window, tally.excess(limits)))
        elif expired and cascade.calm(limits):  # a push alone only adds to the tallies
            cascade.armed = True
        return alerts

    def on_clusters(self, clusters: list[Cluster], window: str, time: int) -> list[Alert]:
        """cluster_new and cluster_growth alerts for one update of `window`'s clusters."""
        limits = self.thresholds
        min_rank = _RISK_RANK[limits.cluster_min_risk]
        alerted = self._alerted.setdefault(window, {})
        alerts = []
        for cluster in clusters:
            rank = _RISK_RANK[cluster.risk]
            last = alerted.pop(cluster.id, None)  # re-inserted below: most recently seen last
            if last is None:
                if rank < min_rank:
                    continue
                alerts.append(self._cluster_new(cluster, window, time))
                last = _Alerted(cluster.notional, rank, 0, time)
            # Multiplied out so whole-number notionals and percentages compare exactly.
            elif (
                cluster.notional > last.notional
                and cluster.notional * 100.0 >= last.notional * (100.0 + limits.growth_pct)
            ) or rank > last.risk_rank:
                alerts.append(self._cluster_growth(cluster, last, window, time))
                last = last._replace(
                    notional=cluster.notional, risk_rank=rank, growth_alerts=last.growth_alerts + 1
                )
            alerted[cluster.id] = last
        while len(alerted) > _REMEMBERED_CLUSTERS:
            del alerted[next(iter(alerted))]
        return alerts

    def _large(self, event: LiquidationEvent, z_score: float, window: str) -> Alert:
        key = f"{event.exchange}:{event.side}:{event.time}:{event.price!r}:{event.quantity!r}"
        return Alert(
            id=f"{self.symbol}:large_liquidation:{window}:{key}",
            kind="large_liquidation",
            symbol=self.symbol,
            price=event.price,
            notional=event.notional,
            z_score=z_score,
            risk=risk_level(z_score),
            window=window,
            time=event.time,
            side=event.side,
            detail=(
                f"{event.side.capitalize()} liquidation of {_money(event.notional)} at "
                f"{_price(event.price)} on {event.exchange} (z {z_score:.1f} in {window})"
            ),
        )

    def _cascade(
        self, cascade: _CascadeWindow, event: LiquidationEvent, window: str, excess: float
    ) -> Alert:
        limits = self.thresholds
        count = len(cascade.hits)
        per_exchange = ""
        tallies = sorted(cascade.tallies.items())
        if len(tallies) > 1 or event.exchange != "binance":
            per_exchange = " (" + ", ".join(f"{x} {t.count}" for x, t in tallies if t.count) + ")"
        price = cascade.price_notional / cascade.notional if cascade.notional > 0 else event.price
        return Alert(
            id=f"{self.symbol}:cascade:{window}:{event.side}:{event.time}",
            kind="cascade",
            symbol=self.symbol,
            price=price,
            notional=cascade.notional,
            z_score=max(hit.z_score for hit in cascade.hits),
            risk=_cascade_risk(excess),
            window=window,
            time=event.time,
            side=event.side,
            detail=(
                f"{count} {event.side} liquidations{per_exchange} worth "
                f"{_money(cascade.notional)} within {limits.cascade_seconds:g} s, around "
                f"{_price(price)}"
            ),
        )

    def _cluster_new(self, cluster: Cluster, window: str, time: int) -> Alert:
        return self._cluster_alert(
            "cluster_new",
            f"{cluster.id}@{time}",
            cluster,
            window,
            time,
            f"New liquidation cluster at {_price(cluster.price)} "
            f"({_price(cluster.low)} to {_price(cluster.high)}): {_money(cluster.notional)} "
            f"over {cluster.count} liquidations, {cluster.long_share:.0%} long",
        )

    def _cluster_growth(self, cluster: Cluster, last: _Alerted, window: str, time: int) -> Alert:
        was_risk = RISK_LEVELS[last.risk_rank]
        risk_change = f"{was_risk} to {cluster.risk}" if was_risk != cluster.risk else cluster.risk
        return self._cluster_alert(
            "cluster_growth",
            f"{cluster.id}@{last.first_alert}:{last.growth_alerts + 1}",
            cluster,
            window,
            time,
            f"Cluster at {_price(cluster.price)} grew from {_money(last.notional)} to "
            f"{_money(cluster.notional)} since its last alert; risk {risk_change}",
        )

    def _cluster_alert(
        self,
        kind: Literal["cluster_new", "cluster_growth"],
        key: str,
        cluster: Cluster,
        window: str,
        time: int,
        detail: str,
    ) -> Alert:
        return Alert(
            id=f"{self.symbol}:{kind}:{window}:{key}",
            kind=kind,
            symbol=self.symbol,
            price=cluster.price,
            notional=cluster.notional,
            z_score=cluster.z_score,
            risk=cluster.risk,
            window=window,
            time=time,
            detail=detail,
        )
