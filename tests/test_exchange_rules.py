"""Pure rules around several exchanges: HEATMAP_EXCHANGES and the URLs, per-source status
and the /health verdict, each exchange's margin rule in the leverage estimate, the store's
duplicate check and the cascade thresholds being per exchange."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.analytics.alerts import AlertEngine, AlertThresholds
from hub.analytics.leverage import MARGIN_RULES, LeverageEstimator
from hub.analytics.store import EventStore
from hub.config import EXCHANGES, load_settings
from hub.errors import ConfigError
from hub.feeds.base import FeedStatus
from hub.models import LiquidationEvent
from hub.service.health import source_entry, source_reasons, verdict

ROOT = Path(__file__).resolve().parent.parent


def test_exchanges_default_to_the_first_three_and_accept_any_subset_of_eight() -> None:
    assert load_settings({}).exchanges == ("binance", "bybit", "okx")
    assert load_settings({"HEATMAP_EXCHANGES": " OKX, bybit,okx"}).exchanges == ("okx", "bybit")
    overridden = load_settings({"HEATMAP_EXCHANGES": "okx"}, {"exchanges": "binance"})
    assert overridden.exchanges == ("binance",)
    added = load_settings({"HEATMAP_EXCHANGES": "BitMEX,deribit,htx,gate,bitget"})
    assert added.exchanges == ("bitmex", "deribit", "htx", "gate", "bitget")
    urls = load_settings({"GATE_WS_URL": "ws://127.0.0.1:9/v4/ws/usdt/",
                          "BITMEX_REST_URL": "http://127.0.0.1:9"})  # fmt: skip
    assert (urls.gate_ws_url, urls.bitmex_rest_url) == (
        "ws://127.0.0.1:9/v4/ws/usdt", "http://127.0.0.1:9"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("HEATMAP_EXCHANGES", "binance,kraken", "'kraken' is not one of binance, bybit, okx"),
        ("HEATMAP_EXCHANGES", " , ", "at least one"),
        ("BYBIT_WS_URL", "https://stream.bybit.com", "ws:// or wss://"),
        ("BYBIT_REST_URL", "api.bybit.com", "http:// or https://"),
        ("OKX_WS_URL", "okx", "ws:// or wss://"),
        ("OKX_REST_URL", "ftp://okx.com", "http:// or https://"),
        ("BITGET_WS_URL", "https://ws.bitget.com/v3/ws/public", "ws:// or wss://"),
        ("GATE_WS_URL", "fx-ws.gateio.ws", "ws:// or wss://"),
        ("GATE_REST_URL", "api.gateio.ws", "http:// or https://"),
        ("HTX_WS_URL", "http://api.hbdm.com", "ws:// or wss://"),
        ("HTX_REST_URL", "wss://api.hbdm.com", "http:// or https://"),
        ("DERIBIT_WS_URL", "deribit", "ws:// or wss://"),
        ("BITMEX_WS_URL", "", "ws:// or wss://"),
        ("BITMEX_REST_URL", "ftp://www.bitmex.com", "http:// or https://"),
    ],
)
def test_bad_exchange_settings_name_the_variable(variable: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({variable: value})
    assert variable in str(raised.value) and says in str(raised.value)


def test_a_bad_exchange_list_stops_the_process_with_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hub", "serve", "--exchanges", "binance,mtgox"],
        cwd=ROOT, env={**os.environ, "HEATMAP_EXCHANGES": "okx"},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "HEATMAP_EXCHANGES (--exchanges)" in line and "mtgox" in line


def status(**fields: object) -> FeedStatus:
    return FeedStatus(name="bybit", **fields)  # type: ignore[arg-type]


def test_a_source_is_silent_after_the_threshold_on_an_open_connection_only() -> None:
    now = 1_000_000
    quiet = status(connected=True, connected_since=now - 90_000, last_frame_at=now - 61_000)
    entry = source_entry(quiet, now, live=True)
    assert entry["silent"] and entry["messages"] == 0 and entry["last_message_age_ms"] == 61_000
    assert source_reasons({"bybit": entry}) == ["bybit: silent (no message for 61 s)"]
    fresh = status(connected=True, connected_since=now - 90_000, last_frame_at=now - 59_000)
    assert not source_entry(fresh, now, live=True)["silent"]
    # never a frame since connecting 61 s ago: silent too
    mute = source_entry(status(connected=True, connected_since=now - 61_000), now, live=True)
    assert source_reasons({"bybit": mute}) == ["bybit: silent (no message since connecting)"]
    down = source_entry(status(last_error="OSError: refused"), now, live=True)
    assert not down["silent"]
    assert source_reasons({"bybit": down}) == ["bybit: disconnected (OSError: refused)"]
    # a replay's sources are not upstreams that can fail
    assert source_reasons({"bybit": source_entry(status(), now, live=False)}) == []


def test_the_health_verdict() -> None:
    assert verdict([]) == {"status": "ok"}
    assert verdict(["okx: disconnected"]) == {
        "status": "degraded",
        "reasons": ["okx: disconnected"],
    }


def test_each_exchange_has_its_own_margin_rule() -> None:
    estimator = LeverageEstimator()
    estimator.observe(100.0, 0)
    estimator.observe(100.0, 1)
    # no adverse move: leverage is the maintenance margin's inverse, capped per exchange
    assert estimator.estimate("long", 100.0, 2, MARGIN_RULES["binance"]) == 125.0
    assert estimator.estimate("long", 100.0, 2, MARGIN_RULES["bybit"]) == 100.0
    moved = {x: estimator.estimate("long", 95.0, 2, rule) for x, rule in MARGIN_RULES.items()}
    assert moved["binance"] == pytest.approx(1 / (0.05 + 0.004))
    assert moved["bybit"] == pytest.approx(1 / (0.05 + 0.005))
    assert moved["okx"] == pytest.approx(1 / (0.05 + 0.004))
    assert set(MARGIN_RULES) == set(EXCHANGES), "every exchange has its rule"
    assert moved["deribit"] == pytest.approx(1 / (0.05 + 0.01))
    assert estimator.estimate("long", 100.0, 2, MARGIN_RULES["htx"]) == 200.0


def test_the_store_deduplicates_per_exchange() -> None:
    store = EventStore("BTCUSDT", max_events=10, retention_ms=10**9)
    event = LiquidationEvent("okx", "BTCUSDT", "long", 60000.0, 0.1, 6000.0, 1_000)
    store.add(event)
    assert not store.accepts(event, 1_000)
    twin = LiquidationEvent("bybit", "BTCUSDT", "long", 60000.0, 0.1, 6000.0, 1_000)
    assert store.accepts(twin, 1_000)  # the same numbers on another exchange: another event


def test_cascade_thresholds_apply_per_exchange() -> None:
    # No z gate here (there is no background): the rule under test is the per-exchange count.
    limits = AlertThresholds(cascade_events=10, large_notional=1e12, cascade_z=0.0)
    engine = AlertEngine("BTCUSDT", limits)

    def liquidation(exchange: str, t: int) -> LiquidationEvent:
        return LiquidationEvent(exchange, "BTCUSDT", "long", 60000.0, 0.1, 6000.0, t)

    alerts = []
    for i in range(9):  # 9 on each of two exchanges: 18 in all, but no exchange at 10
        for exchange in ("binance", "bybit"):
            alerts += engine.on_event(liquidation(exchange, 1_000 * i), 0.0, "1h")
    assert alerts == []
    [cascade] = engine.on_event(liquidation("bybit", 9_500), 0.0, "1h")
    assert cascade.kind == "cascade" and cascade.notional == pytest.approx(19 * 6000.0)
    assert "19 long liquidations (binance 9, bybit 10)" in cascade.detail
