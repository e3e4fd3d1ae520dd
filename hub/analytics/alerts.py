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
- `z_score` and `risk` describe the same thing for every kind: the event's z (large), the
  cluster's (cluster kinds), or the cascade's own flow z (`alert_policy.Background`); `risk`
  is `clusters.risk_level(z)` (low < 1 <= moderate < 2 <= high < 3 <= extreme) for events and
  cascades, the cluster's own for clusters. A cascade also needs z >= `cascade_z`: the
  absolute thresholds say "many", the z says "many for this symbol".
- Fewer, merged alerts: a cooldown per (kind, side) (`alert_policy.Cooldown`; for cluster
  kinds only a higher risk passes it, as each growth alert is larger by definition), and a
  cascade is an episode: re-crossing the thresholds within `cooldown_seconds` of its last
  alert continues it, and it speaks again (at most `cascade_updates` times) only when it
  has grown `cascade_growth_pct` since its last alert (the update's id is the first's
  with an ordinal). Cluster alerts that only teach the engine (`announce=False`: old news, a
  restore) take no cooldown.
- `on_event` is called once per event (its cascade state would double count otherwise), with
  the z-score measured in `window`; `on_clusters` may be called for any number of windows.
- Numbers are rounded as the protocol promises (notional to a millionth, the rest to ten
  significant digits); `detail` writes amounts in USD ($6.21M) and prices with a $.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Literal, NamedTuple

import msgspec

from hub.analytics.alert_policy import (
    NO_BACKGROUND,
    RISK_LEVELS,
    RISK_RANK,
    Background,
    Cooldown,
    Episode,
    price_text,
    usd,
)
from hub.analytics.clusters import risk_level
from hub.models import Alert, Cluster, LiquidationEvent, RiskLevel, Side, round_notional
from hub.models import round_significant as _round

__all__ = ["RISK_LEVELS", "AlertEngine", "AlertThresholds", "Background"]
# Bounds the per-window hysteresis memory; far above the handful of clusters a window shows.
_REMEMBERED_CLUSTERS = 1024


class AlertThresholds(msgspec.Struct, frozen=True):
    large_notional: float = 1_000_000.0  # one event of notional >= 1,000,000 ...
    large_z: float = 3.0  # ... or z-score >= 3 in its window
    # cascade: >= N events OR >= V notional within T s on one side. Binance pushes at most
    # one liquidation per symbol per second, and same-side counts per 30 s run at 8
    # (median) to 19 (max) in normal times and 23-29 in cascades: 18 separates them.
    cascade_events: int = 18
    cascade_notional: float = 2_000_000.0
    cascade_seconds: float = 30.0
    # ... and the cascade's own flow z >= this: many *for this symbol* (alert_policy)
    cascade_z: float = 1.0
    growth_pct: float = 50.0  # notional up >= X% since the cluster's last alert
    # a cascade speaks again when its notional is up >= X% since its last alert, at most
    # `cascade_updates` times
    cascade_growth_pct: float = 100.0
    cascade_updates: int = 1
    cluster_min_risk: RiskLevel = "moderate"  # cluster_new fires at or above this risk
    # per (kind, side): a weaker alert within this many seconds of the last is held back
    cooldown_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.cascade_events < 1 or self.cascade_notional <= 0 or self.cascade_seconds <= 0:
            raise ValueError("cascade thresholds must be positive")
        if min(self.growth_pct, self.cascade_growth_pct, self.cooldown_seconds) < 0:
            raise ValueError("growth percentages and cooldown_seconds must not be negative")
        if self.cascade_updates < 0:
            raise ValueError("cascade_updates must not be negative")


class _Hit(msgspec.Struct, frozen=True, gc=False):  # a Struct: ~5x cheaper to make
    time: float
    notional: float
    price_notional: float
    exchange: str


class _Tally:
    """One exchange's share of a cascade window."""

    __slots__ = ("count", "notional")

    def __init__(self) -> None:
        self.count = 0
        self.notional = 0.0


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

    def push(self, event: LiquidationEvent) -> bool:
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
        hits.append(_Hit(self._latest, notional, event.price * notional, exchange))
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
        self._cooldown = Cooldown(thresholds.cooldown_seconds)
        self._episodes: dict[Side, Episode] = {}

    def on_event(
        self,
        event: LiquidationEvent,
        z_score: float,
        window: str,
        background: Background = NO_BACKGROUND,
    ) -> list[Alert]:
        """large_liquidation and cascade alerts raised by one event (call once per event);
        `background` is the alert window's, for the cascade's own z."""
        alerts = []
        limits = self.thresholds
        if event.notional >= limits.large_notional or z_score >= limits.large_z:
            large = self._large(event, z_score, window)
            if self._cooldown.admits(
                (large.kind, event.side), event.time, large.risk, large.notional
            ):
                alerts.append(large)
        side = event.side
        cascade = self._cascades[side]
        expired = cascade.push(event)
        episode = self._episodes.get(side)
        if episode is not None:
            episode.add(event.exchange, event.price, event.notional)
        tally = cascade.tallies[event.exchange]
        hot = tally.count >= limits.cascade_events or tally.notional >= limits.cascade_notional
        if cascade.armed:  # only the latest event's exchange can newly cross the thresholds
            if hot:
                cascade.armed = False
                if episode is None:  # else a re-crossing within the cooldown: the same one
                    z = background.flow_z(cascade.notional, limits.cascade_seconds * 1000.0)
                    if z >= limits.cascade_z:
                        alerts.append(self._cascade(cascade, event, window, z))
                        self._episodes[side] = self._open(cascade, event.time)
                    return alerts
        elif expired and cascade.calm(limits):  # a push alone only adds to the tallies
            cascade.armed = True
        if episode is not None:
            alerts.extend(
                self._episode_news(episode, cascade.armed, hot, event, window, background)
            )
        return alerts

    def _open(self, cascade: _CascadeWindow, time: int) -> Episode:
        episode = Episode(int(cascade.hits[0].time), time)
        for hit in cascade.hits:
            episode.add(hit.exchange, hit.price_notional / hit.notional, hit.notional)
        episode.alerted = episode.notional
        return episode

    def _episode_news(
        self,
        episode: Episode,
        calm: bool,
        hot: bool,
        event: LiquidationEvent,
        window: str,
        background: Background,
    ) -> list[Alert]:
        """One update when an open cascade, over its thresholds again (`hot`), has grown
        `cascade_growth_pct` since its last alert (a trickle after it is no news); the episode is
        over once its side is `calm` and the cooldown since its last alert has passed."""
        limits = self.thresholds
        grown = episode.notional * 100.0 >= episode.alerted * (100.0 + limits.cascade_growth_pct)
        if hot and grown and episode.updates < limits.cascade_updates:
            episode.updates += 1
            episode.alerted = episode.notional
            episode.last_alert = event.time
            return [self._cascade_update(episode, event, window, background)]
        cooled = event.time - episode.last_alert >= limits.cooldown_seconds * 1000.0
        if calm and cooled:
            del self._episodes[event.side]
        return []

    def on_clusters(
        self, clusters: list[Cluster], window: str, time: int, announce: bool = True
    ) -> list[Alert]:
        """cluster_new and cluster_growth alerts for one update of `window`'s clusters;
        with `announce` false the engine only learns them (no cooldown taken)."""
        limits = self.thresholds
        min_rank = RISK_RANK[limits.cluster_min_risk]
        alerted = self._alerted.setdefault(window, {})
        alerts = []
        for cluster in clusters:
            rank = RISK_RANK[cluster.risk]
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
        if not announce:
            return alerts
        # Only a higher risk passes a cluster's cooldown: a growth alert is always larger.
        return [a for a in alerts if self._cooldown.admits(a.kind, time, a.risk, None)]

    def _large(self, event: LiquidationEvent, z_score: float, window: str) -> Alert:
        key = f"{event.exchange}:{event.side}:{event.time}:{event.price!r}:{event.quantity!r}"
        return Alert(
            id=f"{self.symbol}:large_liquidation:{window}:{key}",
            kind="large_liquidation",
            symbol=self.symbol,
            price=_round(event.price),
            notional=round_notional(event.notional),
            z_score=_round(z_score),
            risk=risk_level(z_score),
            window=window,
            time=event.time,
            side=event.side,
            detail=(
                f"{event.side.capitalize()} liquidation of {usd(event.notional)} at "
                f"{price_text(event.price)} on {event.exchange} (z {z_score:.1f} in {window})"
            ),
            exchanges=(event.exchange,),
        )

    def _cascade(
        self, cascade: _CascadeWindow, event: LiquidationEvent, window: str, z: float
    ) -> Alert:
        limits = self.thresholds
        counts = {x: t.count for x, t in cascade.tallies.items() if t.count}
        price = cascade.price_notional / cascade.notional if cascade.notional > 0 else event.price
        return self._cascade_alert(
            f"{event.time}",
            event,
            window,
            price,
            cascade.notional,
            z,
            f"{len(cascade.hits)} {event.side} liquidations{_per_exchange(counts, event)} "
            f"worth {usd(cascade.notional)} within {limits.cascade_seconds:g} s, around "
            f"{price_text(price)} (z {z:.1f})",
            counts,
        )

    def _cascade_update(
        self, episode: Episode, event: LiquidationEvent, window: str, background: Background
    ) -> Alert:
        span_ms = max(self.thresholds.cascade_seconds * 1000.0, event.time - episode.first)
        z = background.flow_z(episode.notional, span_ms)
        price = episode.price or event.price
        return self._cascade_alert(
            f"{episode.opened}:{episode.updates}",
            event,
            window,
            price,
            episode.notional,
            z,
            f"{event.side.capitalize()} cascade grew to {episode.count} liquidations"
            f"{_per_exchange(episode.tallies, event)} worth {usd(episode.notional)} within "
            f"{span_ms / 1000:.0f} s, around {price_text(price)} (z {z:.1f})",
            episode.tallies,
        )

    def _cascade_alert(
        self,
        key: str,
        event: LiquidationEvent,
        window: str,
        price: float,
        notional: float,
        z: float,
        detail: str,
        exchanges: Mapping[str, object],
    ) -> Alert:
        """A cascade alert (`key`: what tells it from the cascade's other alerts)."""
        return Alert(
            id=f"{self.symbol}:cascade:{window}:{event.side}:{key}",
            kind="cascade",
            symbol=self.symbol,
            price=_round(price),
            notional=round_notional(notional),
            z_score=_round(z),
            risk=risk_level(z),
            window=window,
            time=event.time,
            side=event.side,
            detail=detail,
            exchanges=tuple(sorted(exchanges)),
        )

    def _cluster_new(self, cluster: Cluster, window: str, time: int) -> Alert:
        return self._cluster_alert(
            "cluster_new",
            f"{cluster.id}@{time}",
            cluster,
            window,
            time,
            f"New liquidation cluster at {price_text(cluster.price)} "
            f"({price_text(cluster.low)} to {price_text(cluster.high)}): {usd(cluster.notional)} "
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
            f"Cluster at {price_text(cluster.price)} grew from {usd(last.notional)} to "
            f"{usd(cluster.notional)} since its last alert; risk {risk_change}",
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


def _per_exchange(counts: dict[str, int], event: LiquidationEvent) -> str:
    """` (binance 12, bybit 9)`: said unless Binance alone saw it (the usual case)."""
    if len(counts) > 1 or event.exchange != "binance":
        return " (" + ", ".join(f"{x} {n}" for x, n in sorted(counts.items())) + ")"
    return ""
