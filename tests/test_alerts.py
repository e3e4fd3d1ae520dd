"""Alert rules on scripted sequences: each episode gives exactly the expected alerts, once."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.analytics.alert_policy import Background
from hub.analytics.alerts import AlertEngine, AlertThresholds
from hub.analytics.clusters import risk_level
from hub.models import Alert, Cluster, LiquidationEvent, RiskLevel, Side

SYMBOL = "BTCUSDT"
WINDOW = "1h"
SECOND = 1_000


def event(
    time: int, notional: float = 10_000.0, side: Side = "long", price: float = 100.0
) -> LiquidationEvent:
    return LiquidationEvent("binance", SYMBOL, side, price, notional / price, notional, time)


def cluster(
    cluster_id: int, notional: float, risk: RiskLevel = "moderate", price: float = 100.0
) -> Cluster:
    z = {"low": 0.5, "moderate": 1.5, "high": 2.5, "extreme": 3.5}[risk]
    return Cluster(cluster_id, price, price - 1, price + 1, notional, 12, 0.75, z, risk)


# 360 liquidations of $10K (sd $10K) an hour: 3 expected per 30 s, worth $30K.
USUAL = Background(360, 10_000.0, 10_000.0, 3_600_000.0)


def limits(**values: Any) -> AlertThresholds:
    """The mechanism a test is about, alone: no cooldown and no cascade z gate (the
    defaults' 300 s and 3) unless the test sets them."""
    return AlertThresholds(**{"cooldown_seconds": 0.0, "cascade_z": 0.0, **values})


def feed(
    engine: AlertEngine, events: list[LiquidationEvent], z: float = 0.0, background=USUAL
) -> list[Alert]:
    return [alert for e in events for alert in engine.on_event(e, z, WINDOW, background)]


def kinds(alerts: list[Alert]) -> list[str]:
    return [alert.kind for alert in alerts]


# -- large_liquidation -------------------------------------------------------------------


def test_large_by_notional() -> None:
    engine = AlertEngine(SYMBOL, limits())
    [alert] = engine.on_event(event(5 * SECOND, notional=1_000_000.0), 0.4, WINDOW)
    assert alert == Alert(
        id="BTCUSDT:large_liquidation:1h:binance:long:5000:100.0:10000.0",
        kind="large_liquidation",
        symbol=SYMBOL,
        price=100.0,
        notional=1_000_000.0,
        z_score=0.4,
        risk="low",
        window=WINDOW,
        time=5 * SECOND,
        side="long",
        detail=alert.detail,
        exchanges=("binance",),
    )
    assert "$1.00M" in alert.detail


def test_large_by_z_score() -> None:
    engine = AlertEngine(SYMBOL, limits())
    [alert] = engine.on_event(event(0, notional=20_000.0, side="short"), 3.0, WINDOW)
    assert (alert.kind, alert.side, alert.risk, alert.z_score) == (
        "large_liquidation",
        "short",
        "extreme",
        3.0,
    )


def test_below_both_large_thresholds_is_quiet() -> None:
    engine = AlertEngine(SYMBOL, limits())
    assert engine.on_event(event(0, notional=999_999.99), 2.99, WINDOW) == []


def test_the_defaults_cool_down_and_gate_cascades_by_their_z() -> None:
    defaults = AlertThresholds()
    assert (defaults.cooldown_seconds, defaults.cascade_z) == (300.0, 1.0)
    assert (defaults.cascade_growth_pct, defaults.cascade_updates) == (100.0, 1)


def test_every_large_event_alerts_once() -> None:
    engine = AlertEngine(SYMBOL, limits())
    big = [event(t * 60 * SECOND, notional=1_500_000.0) for t in range(3)]
    alerts = feed(engine, big)
    assert kinds(alerts) == ["large_liquidation"] * 3
    assert len({alert.id for alert in alerts}) == 3


# -- cascade -----------------------------------------------------------------------------

# The scripts count to ten: the mechanism is the same at the default threshold (18).
TEN_EVENTS = limits(cascade_events=10)


def test_cascade_by_count_fires_once_then_updates_only_as_it_grows() -> None:
    engine = AlertEngine(
        SYMBOL, limits(cascade_events=10, cascade_growth_pct=50, cascade_updates=3)
    )
    burst = [event(i * SECOND, price=100.0 - i) for i in range(9)]
    assert feed(engine, burst) == []
    tenth = event(9 * SECOND, price=91.0)
    [alert] = engine.on_event(tenth, 0.5, WINDOW, USUAL)
    assert alert.kind == "cascade"
    assert alert.id == "BTCUSDT:cascade:1h:long:9000"
    assert alert.side == "long"
    assert alert.notional == pytest.approx(100_000.0)
    assert alert.price == pytest.approx(95.5)  # equal notionals: the plain mean of 100..91
    # The cascade's own z: $100K in 30 s against $30K expected (sd sqrt(3 * 2e8)).
    assert alert.z_score == pytest.approx(70_000 / (3 * 2e8) ** 0.5, rel=1e-9)
    assert alert.risk == risk_level(alert.z_score) == "high"
    assert alert.time == 9 * SECOND
    assert "$100K" in alert.detail
    # The episode goes on at one a second (30 in the window): one update per +50 %, with
    # the first alert's id and an ordinal, never a new cascade, and at most three.
    later = feed(engine, [event(t * SECOND) for t in range(10, 80)])
    assert [a.id for a in later] == [
        "BTCUSDT:cascade:1h:long:9000:1",
        "BTCUSDT:cascade:1h:long:9000:2",
        "BTCUSDT:cascade:1h:long:9000:3",
    ]
    assert [a.notional for a in later] == [150_000.0, 230_000.0, 350_000.0]
    assert "grew to 15 liquidations worth $150K" in later[0].detail


def test_a_cascade_updates_once_by_default_when_it_has_doubled() -> None:
    engine = AlertEngine(SYMBOL, limits(cascade_events=10, cascade_growth_pct=100))
    assert kinds(feed(engine, [event(i * SECOND) for i in range(10)])) == ["cascade"]
    later = feed(engine, [event(t * SECOND) for t in range(10, 80)])
    assert [(a.id, a.notional) for a in later] == [("BTCUSDT:cascade:1h:long:9000:1", 200_000.0)]


def test_cascade_by_notional() -> None:
    engine = AlertEngine(SYMBOL, TEN_EVENTS)
    alerts = feed(
        engine,
        [
            event(0, notional=800_000.0, price=100.0),
            event(SECOND, notional=800_000.0, price=98.0),
            event(2 * SECOND, notional=400_000.0, price=95.0),
        ],
    )
    [alert] = alerts  # 800k is below the large threshold: only the cascade
    assert alert.kind == "cascade"
    assert alert.notional == pytest.approx(2_000_000.0)
    assert alert.price == pytest.approx((80_000_000 + 78_400_000 + 38_000_000) / 2_000_000)
    assert alert.risk == "extreme"
    assert "$2.00M" in alert.detail


@pytest.mark.parametrize(("notional", "risk"), [(10_000.0, "low"), (4_000_000.0, "extreme")])
def test_cascade_risk_comes_from_its_own_z(notional: float, risk: str) -> None:
    """A cascade's z_score and risk say the same thing, as for every other kind."""
    # cascade_z below any z: this test is about the risk, not the gate.
    engine = AlertEngine(SYMBOL, limits(cascade_events=1, large_notional=1e12, cascade_z=-10.0))
    [alert] = engine.on_event(event(0, notional=notional, side="short"), 0.0, WINDOW, USUAL)
    assert alert.z_score == pytest.approx(USUAL.flow_z(notional, 30_000.0), rel=1e-9)
    assert (alert.risk, risk_level(alert.z_score)) == (risk, risk)


def test_a_cascade_usual_for_the_symbol_is_no_alert() -> None:
    """`cascade_z`: 10 liquidations of $10K in 30 s are many for a quiet symbol, not for
    one with 3,600 an hour (30 expected)."""
    quiet = AlertEngine(SYMBOL, limits(cascade_events=10, cascade_z=2.0))
    busy = AlertEngine(SYMBOL, limits(cascade_events=10, cascade_z=2.0))
    burst = [event(i * 100) for i in range(10)]
    assert kinds(feed(quiet, burst)) == ["cascade"]
    assert feed(busy, burst, background=USUAL._replace(count=3_600)) == []


def test_events_spread_wider_than_the_window_do_not_cascade() -> None:
    engine = AlertEngine(SYMBOL, TEN_EVENTS)
    # Ten events four seconds apart: a 30 s window never holds more than eight.
    assert feed(engine, [event(i * 4 * SECOND) for i in range(10)]) == []


def test_window_edge_is_exclusive() -> None:
    engine = AlertEngine(SYMBOL, TEN_EVENTS)
    assert feed(engine, [event(i) for i in range(9)]) == []
    # At exactly 30 s the event at 0 has left the window: nine inside, no cascade yet.
    assert feed(engine, [event(30 * SECOND)]) == []
    assert kinds(feed(engine, [event(30 * SECOND)])) == ["cascade"]


def test_rearms_only_after_the_window_drops_below_half() -> None:
    engine = AlertEngine(SYMBOL, TEN_EVENTS)
    assert kinds(feed(engine, [event(i * 100) for i in range(10)])) == ["cascade"]
    # 40 s later the burst has left the window: the first event re-arms, the burst fires.
    later = 40 * SECOND
    second = feed(engine, [event(later + i * 100) for i in range(10)])
    assert kinds(second) == ["cascade"]
    assert second[0].id == f"BTCUSDT:cascade:1h:long:{later + 900}"


def test_count_at_half_keeps_the_side_quiet() -> None:
    engine = AlertEngine(SYMBOL, TEN_EVENTS)
    assert kinds(feed(engine, [event(i * 100) for i in range(10)])) == ["cascade"]
    # A steady trickle of 5 events per 30 s (exactly half the count) never re-arms ...
    trickle = [event(10 * SECOND + i * 6 * SECOND) for i in range(20)]
    assert feed(engine, trickle) == []
    # ... so a new crossing on top of it is the same episode: its update, not a new one.
    [update] = feed(engine, [event(125 * SECOND + i) for i in range(6)])
    assert (update.id, update.notional) == ("BTCUSDT:cascade:1h:long:900:1", 350_000.0)


def test_notional_at_half_keeps_the_side_quiet_until_both_drop() -> None:
    engine = AlertEngine(SYMBOL, limits(large_notional=1e12, cascade_events=10))
    assert kinds(feed(engine, [event(i * 100, notional=150_000.0) for i in range(10)])) == [
        "cascade"
    ]
    # The burst has left; one event keeps the notional at half (1M): still disarmed.
    assert feed(engine, [event(60 * SECOND, notional=1_000_000.0)]) == []
    # 2.5M within 30 s again: no new cascade, the episode's update (4M, from 1.5M)
    [update] = feed(engine, [event(61 * SECOND, notional=1_500_000.0)])
    assert (update.id, update.notional) == ("BTCUSDT:cascade:1h:long:900:1", 4_000_000.0)
    # Both below half: re-armed, and the next crossing fires.
    assert feed(engine, [event(100 * SECOND)]) == []
    assert kinds(feed(engine, [event(101 * SECOND, notional=2_000_000.0)])) == ["cascade"]


def test_sides_are_independent() -> None:
    engine = AlertEngine(SYMBOL, TEN_EVENTS)
    longs = [event(i * 100, side="long") for i in range(10)]
    shorts = [event(i * 100 + 50, side="short") for i in range(10)]
    mixed = [e for pair in zip(longs, shorts, strict=True) for e in pair]
    alerts = feed(engine, mixed)
    assert [(a.kind, a.side) for a in alerts] == [("cascade", "long"), ("cascade", "short")]
    # Nine shorts alone would not have fired: the long events did not count for them.
    engine = AlertEngine(SYMBOL, TEN_EVENTS)
    assert feed(engine, longs[:9] + shorts[:9]) == []


def test_out_of_order_event_counts_at_the_latest_time() -> None:
    engine = AlertEngine(SYMBOL, TEN_EVENTS)
    feed(engine, [event(60 * SECOND)])
    late = [event(i * SECOND) for i in range(9)]  # far older than the window, still counted
    assert kinds(feed(engine, late)) == ["cascade"]


def test_custom_thresholds() -> None:
    engine = AlertEngine(SYMBOL, limits(cascade_events=3, cascade_seconds=5.0))
    assert feed(engine, [event(0), event(3 * SECOND), event(6 * SECOND)]) == []
    assert kinds(feed(engine, [event(7 * SECOND)])) == ["cascade"]


@pytest.mark.parametrize(
    "bad",
    [
        {"cascade_events": 0},
        {"cascade_notional": 0.0},
        {"cascade_seconds": -1.0},
        {"growth_pct": -1},
    ],
)
def test_thresholds_reject_nonsense(bad: dict) -> None:
    with pytest.raises(ValueError):
        AlertThresholds(**bad)


# -- cluster_new and cluster_growth ------------------------------------------------------


def test_cluster_new_once_per_cluster() -> None:
    engine = AlertEngine(SYMBOL, limits())
    [alert] = engine.on_clusters([cluster(7, 1_000_000.0)], WINDOW, 1_000)
    assert alert == Alert(
        id="BTCUSDT:cluster_new:1h:7@1000",
        kind="cluster_new",
        symbol=SYMBOL,
        price=100.0,
        notional=1_000_000.0,
        z_score=1.5,
        risk="moderate",
        window=WINDOW,
        time=1_000,
        side=None,
        detail=alert.detail,
    )
    assert alert.detail.startswith("New liquidation cluster at $100 ")
    for t in range(2_000, 10_000, 1_000):
        assert engine.on_clusters([cluster(7, 1_100_000.0)], WINDOW, t) == []


def test_cluster_below_min_risk_is_new_when_it_first_qualifies() -> None:
    engine = AlertEngine(SYMBOL, limits())
    assert engine.on_clusters([cluster(1, 500_000.0, "low")], WINDOW, 0) == []
    [alert] = engine.on_clusters([cluster(1, 600_000.0, "moderate")], WINDOW, 1)
    assert alert.kind == "cluster_new"
    strict = AlertEngine(SYMBOL, limits(cluster_min_risk="high"))
    assert strict.on_clusters([cluster(1, 1e6, "moderate")], WINDOW, 0) == []
    assert kinds(strict.on_clusters([cluster(1, 1e6, "high")], WINDOW, 1)) == ["cluster_new"]


def test_growth_fires_at_the_threshold_and_not_below() -> None:
    engine = AlertEngine(SYMBOL, limits())
    engine.on_clusters([cluster(3, 1_000_000.0)], WINDOW, 0)
    assert engine.on_clusters([cluster(3, 1_499_999.0)], WINDOW, 1) == []
    [alert] = engine.on_clusters([cluster(3, 1_500_000.0)], WINDOW, 2)
    assert (alert.kind, alert.id, alert.notional) == (
        "cluster_growth",
        "BTCUSDT:cluster_growth:1h:3@0:1",
        1_500_000.0,
    )
    # The base is now the last alert: 50% more than 1.5M is 2.25M.
    assert engine.on_clusters([cluster(3, 2_249_999.0)], WINDOW, 3) == []
    [again] = engine.on_clusters([cluster(3, 2_250_000.0)], WINDOW, 4)
    assert again.id == "BTCUSDT:cluster_growth:1h:3@0:2"


def test_growth_base_survives_a_dip() -> None:
    engine = AlertEngine(SYMBOL, limits())
    engine.on_clusters([cluster(3, 1_000_000.0)], WINDOW, 0)
    assert engine.on_clusters([cluster(3, 400_000.0)], WINDOW, 1) == []
    assert engine.on_clusters([cluster(3, 1_100_000.0)], WINDOW, 2) == []  # +175% from the dip


def test_growth_at_a_percentage_inexact_in_binary() -> None:
    engine = AlertEngine(SYMBOL, limits(growth_pct=10.0))
    engine.on_clusters([cluster(3, 1_000_000.0)], WINDOW, 0)
    assert kinds(engine.on_clusters([cluster(3, 1_100_000.0)], WINDOW, 1)) == ["cluster_growth"]


def test_risk_up_is_growth_only_above_the_level_last_alerted() -> None:
    engine = AlertEngine(SYMBOL, limits())
    engine.on_clusters([cluster(5, 1e6, "moderate")], WINDOW, 0)
    [up] = engine.on_clusters([cluster(5, 1e6, "high")], WINDOW, 1)
    assert (up.kind, up.risk, up.z_score) == ("cluster_growth", "high", 2.5)
    assert "moderate to high" in up.detail
    assert engine.on_clusters([cluster(5, 1e6, "moderate")], WINDOW, 2) == []
    assert engine.on_clusters([cluster(5, 1e6, "high")], WINDOW, 3) == []
    assert kinds(engine.on_clusters([cluster(5, 1e6, "extreme")], WINDOW, 4)) == ["cluster_growth"]


def test_gone_and_refound_under_a_new_id_is_new_but_a_flicker_is_not() -> None:
    engine = AlertEngine(SYMBOL, limits())
    engine.on_clusters([cluster(1, 1e6)], WINDOW, 0)
    assert engine.on_clusters([], WINDOW, 1) == []
    assert engine.on_clusters([cluster(1, 1e6)], WINDOW, 2) == []  # same id back: not new
    assert engine.on_clusters([], WINDOW, 3) == []
    [alert] = engine.on_clusters([cluster(2, 1e6)], WINDOW, 4)
    assert (alert.kind, alert.id) == ("cluster_new", "BTCUSDT:cluster_new:1h:2@4")


def test_several_clusters_and_windows_are_tracked_apart() -> None:
    engine = AlertEngine(SYMBOL, limits())
    first = engine.on_clusters([cluster(1, 1e6), cluster(2, 2e6, price=90.0)], WINDOW, 0)
    assert [a.id for a in first] == ["BTCUSDT:cluster_new:1h:1@0", "BTCUSDT:cluster_new:1h:2@0"]
    [other_window] = engine.on_clusters([cluster(1, 1e6)], "4h", 0)
    assert other_window.id == "BTCUSDT:cluster_new:4h:1@0"
    [grown] = engine.on_clusters([cluster(1, 1e6), cluster(2, 3e6, price=90.0)], WINDOW, 1)
    assert grown.id == "BTCUSDT:cluster_growth:1h:2@0:1"


def test_a_restarted_engine_never_repeats_a_cluster_alert_id() -> None:
    # A restarted process counts cluster ids from 1 again: a client that saw the first
    # process's alerts, and drops ids it has seen, must still get the new cluster's.
    before = AlertEngine(SYMBOL, limits())
    seen = {a.id for a in before.on_clusters([cluster(1, 1e6)], WINDOW, 1_000)}
    seen |= {a.id for a in before.on_clusters([cluster(1, 2e6)], WINDOW, 2_000)}
    after = AlertEngine(SYMBOL, limits())
    new = after.on_clusters([cluster(1, 1e6, price=90.0)], WINDOW, 3_000)
    grown = after.on_clusters([cluster(1, 2e6, price=90.0)], WINDOW, 4_000)
    assert kinds(new + grown) == ["cluster_new", "cluster_growth"]
    assert not {a.id for a in new + grown} & seen, (
        f"expected ids unseen before the restart, got {[a.id for a in new + grown]} "
        f"against {sorted(seen)}"
    )


def test_hysteresis_memory_is_bounded() -> None:
    engine = AlertEngine(SYMBOL, limits())
    for cluster_id in range(5_000):
        engine.on_clusters([cluster(cluster_id, 1e6)], WINDOW, cluster_id)
    assert len(engine._alerted[WINDOW]) <= 1024  # white-box: the memory cap itself


# -- determinism -------------------------------------------------------------------------

scripts = st.lists(
    st.tuples(
        st.integers(0, 2_000),  # seconds, so that windows fill and drain
        st.sampled_from(["long", "short"]),
        st.floats(1.0, 3_000_000.0),
        st.floats(-1.0, 4.0),
        st.one_of(st.none(), st.integers(1, 4), st.floats(1e5, 5e6)),
    ),
    max_size=80,
    unique_by=lambda step: step[0],  # one event per second: two equal events share an id
)


def run(script: list) -> list[Alert]:
    engine = AlertEngine(SYMBOL, limits())
    alerts = []
    clusters: dict[int, Cluster] = {}
    for seconds, side, notional, z, change in sorted(script, key=lambda step: step[0]):
        alerts += engine.on_event(event(seconds * SECOND, notional, side), z, WINDOW)
        if change is not None:
            cluster_id = int(z) + 2 if isinstance(change, float) else change
            amount = change if isinstance(change, float) else notional
            clusters[cluster_id] = cluster(cluster_id, amount, risk_level(z))
            alerts += engine.on_clusters(list(clusters.values()), WINDOW, seconds * SECOND)
    return alerts


@given(scripts)
def test_same_inputs_same_alerts_and_ids_never_repeat(script: list) -> None:
    alerts = run(script)
    assert run(script) == alerts
    assert len({alert.id for alert in alerts}) == len(alerts)


# -- cooldowns -----------------------------------------------------------------------------


def test_cooldown_holds_back_weaker_large_liquidations_per_side() -> None:
    engine = AlertEngine(SYMBOL, limits(cooldown_seconds=60.0, cascade_notional=1e12))
    first = feed(engine, [event(0, notional=2_000_000.0)])
    assert kinds(first) == ["large_liquidation"]
    # Within 60 s: one up to twice as big on the same side is held back, the other side
    # is not ...
    assert feed(engine, [event(10 * SECOND, notional=3_999_999.0)]) == []
    shorts = feed(engine, [event(11 * SECOND, notional=1_500_000.0, side="short")])
    assert [(a.kind, a.side) for a in shorts] == [("large_liquidation", "short")]
    # ... twice as big passes (and starts its own cooldown) ...
    assert len(feed(engine, [event(20 * SECOND, notional=4_000_000.0)])) == 1
    assert feed(engine, [event(79 * SECOND, notional=7_000_000.0)]) == []
    # ... and after the cooldown anything passes again.
    assert len(feed(engine, [event(80 * SECOND, notional=1_000_000.0)])) == 1


def test_cooldown_holds_back_new_clusters_but_not_stronger_ones() -> None:
    engine = AlertEngine(SYMBOL, limits(cooldown_seconds=60.0))
    assert kinds(engine.on_clusters([cluster(1, 1e6)], WINDOW, 0)) == ["cluster_new"]
    assert engine.on_clusters([cluster(1, 1e6), cluster(2, 9e5)], WINDOW, SECOND) == []
    higher = engine.on_clusters([cluster(2, 9e5), cluster(3, 5e5, "high")], WINDOW, 2 * SECOND)
    assert [a.id for a in higher] == ["BTCUSDT:cluster_new:1h:3@2000"]
    # What only teaches the engine (a restore, old news) takes no cooldown.
    quiet = AlertEngine(SYMBOL, limits(cooldown_seconds=60.0))
    assert len(quiet.on_clusters([cluster(1, 1e6)], WINDOW, 0, announce=False)) == 1
    assert kinds(quiet.on_clusters([cluster(2, 1e6)], WINDOW, SECOND)) == ["cluster_new"]


def test_a_cascade_crossing_again_within_the_cooldown_is_the_same_episode() -> None:
    engine = AlertEngine(SYMBOL, limits(cascade_events=10, cooldown_seconds=300.0))
    assert kinds(feed(engine, [event(i * 100) for i in range(10)])) == ["cascade"]
    # Calm for 40 s, then the same size again: merged, and not 50 % bigger yet: quiet.
    assert feed(engine, [event(40 * SECOND + i * 100) for i in range(4)]) == []
    # Past the cooldown since its alert, a crossing is a new cascade (the first event,
    # calm and cooled, ends the episode and counts towards the next).
    assert feed(engine, [event(300 * SECOND)]) == []
    again = feed(engine, [event(301 * SECOND + i * 100) for i in range(10)])
    assert [a.id for a in again] == ["BTCUSDT:cascade:1h:long:301800"]
