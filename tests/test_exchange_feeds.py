"""Binance, Bybit and OKX at once: a real hub against the three look-alikes.

Each exchange names sides its own way and OKX counts contracts; the hub must turn each
into the same normalized event with its `exchange`, aggregate them in one heatmap, let
REST filter by exchange, count an OKX replay once, and say on status and /health when
one exchange is down or silent while the others flow.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from hub.feeds.connection import Timing
from tests.conftest import (
    HubFactory,
    RunningHub,
    all_exchanges,
    eventually,
)
from tests.fakes.binance_server import FakeBinance, force_order
from tests.fakes.bybit_server import FakeBybit, liquidation
from tests.fakes.okx_server import SUBSCRIPTION, FakeOkx, detail, push_frame

API = "/api/heatmap"


def now_ms() -> int:
    return int(time.time() * 1000)


async def start(
    start_hub: HubFactory,
    binance: FakeBinance,
    bybit: FakeBybit,
    okx: FakeOkx,
    **kwargs: Any,
) -> RunningHub:
    settings = all_exchanges(
        binance, bybit, okx, symbols=kwargs.pop("symbols", ("BTCUSDT", "ETHUSDT")), flush_ms=20
    )
    running = await start_hub(settings, **kwargs)
    await binance.wait_for_subscription("btcusdt@forceOrder")
    await bybit.wait_for_subscription("allLiquidation.BTCUSDT")
    await okx.wait_for_subscription(SUBSCRIPTION)
    return running


async def events(running: RunningHub, symbol: str = "BTCUSDT", **params: str) -> list[dict]:
    response = await running.get(f"{API}/liquidations/{symbol}", limit="10000", **params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def sources(running: RunningHub) -> dict[str, Any]:
    return (await running.get(f"{API}/status")).json()["data"]["sources"]


async def health(running: RunningHub) -> dict[str, Any]:
    response = await running.get("/health")
    assert response.status_code == 200  # liveness: 200 while the process serves
    return response.json()["data"]


async def test_each_exchange_is_normalized_and_the_heatmap_aggregates_them(
    start_hub: HubFactory, fake_binance: FakeBinance, fake_bybit: FakeBybit, fake_okx: FakeOkx
) -> None:
    running = await start(start_hub, fake_binance, fake_bybit, fake_okx)
    t = now_ms()
    await fake_binance.push(force_order("BTCUSDT", "SELL", "60000.0", "0.100", trade_time=t))
    # Bybit: one push, every liquidation of 500 ms; S is the position side (Buy = long)
    await fake_bybit.push(
        "BTCUSDT",
        [
            liquidation("BTCUSDT", "Buy", "0.200", "59990.0", t + 1),
            liquidation("BTCUSDT", "Sell", "0.300", "60010.0", t + 2),
        ],
    )
    # OKX: side is the order side (buy = short liquidated), sz in contracts of 0.01 BTC
    await fake_okx.push("BTC-USDT-SWAP", [detail("buy", "13", "60020.0", t + 3)])
    await eventually(lambda: _count(running) == 4, seen=lambda: _count(running))

    held = await events(running)
    by_exchange = {(e["exchange"], e["side"]): e for e in held}
    assert set(by_exchange) == {
        ("binance", "long"), ("bybit", "long"), ("bybit", "short"), ("okx", "short")
    }  # fmt: skip
    assert by_exchange[("binance", "long")]["quantity"] == 0.1
    assert by_exchange[("bybit", "long")]["quantity"] == 0.2
    assert by_exchange[("bybit", "short")]["notional"] == pytest.approx(0.3 * 60010.0)
    okx = by_exchange[("okx", "short")]
    assert okx["quantity"] == pytest.approx(0.13) and okx["symbol"] == "BTCUSDT"
    assert okx["notional"] == pytest.approx(0.13 * 60020.0)

    total = sum(e["notional"] for e in held)
    await running.hub.flush_now()

    async def statistics() -> dict[str, Any]:
        body = (await running.get(f"{API}/liquidations/BTCUSDT/heatmap")).json()
        return body["data"]["statistics"]

    await eventually(lambda: _event_count(statistics), seen=lambda: None)
    stats = await statistics()
    assert stats["event_count"] == 4 and stats["total_notional"] == pytest.approx(total)

    status = await sources(running)
    for name in ("binance", "bybit", "okx"):
        assert status[name]["connected"] and status[name]["live"], status[name]
        assert {"messages", "reconnects", "last_message_age_ms", "last_error"} <= set(status[name])
    assert status["okx"]["events"] == 1 and status["bybit"]["events"] == 2
    assert await health(running) == {"status": "ok"}


def _count(running: RunningHub) -> int:
    return len(running.hub.processor.books["BTCUSDT"].store)


async def _event_count(statistics: Any) -> bool:
    return (await statistics())["event_count"] == 4


async def test_the_exchange_filter_on_events_export_and_leverage(
    start_hub: HubFactory, fake_binance: FakeBinance, fake_bybit: FakeBybit, fake_okx: FakeOkx
) -> None:
    running = await start(start_hub, fake_binance, fake_bybit, fake_okx)
    t = now_ms()
    await fake_binance.push(force_order("BTCUSDT", "BUY", "60000.0", "0.100", trade_time=t))
    await fake_bybit.push("BTCUSDT", [liquidation("BTCUSDT", "Buy", "0.2", "59990.0", t + 1)])
    await fake_okx.push("BTC-USDT-SWAP", [detail("sell", "5", "59980.0", t + 2)])
    await eventually(lambda: _count(running) == 3, seen=lambda: _count(running))
    await running.hub.flush_now()

    assert {e["exchange"] for e in await events(running, exchange="bybit,OKX")} == {"bybit", "okx"}
    assert [e["exchange"] for e in await events(running, exchange="binance")] == ["binance"]
    exported = await running.get(f"{API}/export/BTCUSDT", format="json", exchange="okx")
    assert [e["exchange"] for e in exported.json()["data"]] == ["okx"]
    leverage = (await running.get(f"{API}/liquidations/BTCUSDT/leverage", exchange="bybit")).json()[
        "data"
    ]
    assert sum(t["count"] for t in leverage["tiers"]) + leverage["unknown"] == 1

    for path in ("liquidations/BTCUSDT", "export/BTCUSDT", "liquidations/BTCUSDT/leverage"):
        response = await running.get(f"{API}/{path}", exchange="binance,kraken")
        assert response.status_code == 400, (path, response.text)
        assert "kraken" in response.json()["error"] and "exchange" in response.json()["error"]


async def test_okx_replays_after_a_reconnect_count_once_and_late_arrivals_fit_in(
    start_hub: HubFactory, fake_binance: FakeBinance, fake_bybit: FakeBybit, fake_okx: FakeOkx
) -> None:
    running = await start(start_hub, fake_binance, fake_bybit, fake_okx)
    t = now_ms()
    newer = detail("buy", "10", "60000.0", t)
    older = detail("sell", "20", "59000.0", t - 30_000)  # out of order: arrives second
    await fake_okx.push("BTC-USDT-SWAP", [newer])
    await fake_okx.push("BTC-USDT-SWAP", [older])
    await eventually(lambda: _count(running) == 2, seen=lambda: _count(running))
    assert [e["time"] for e in await events(running)] == [t, t - 30_000]

    # A fresh connection replays recent liquidations: both come again, and one new one.
    fake_okx.replay_on_subscribe = [push_frame("BTC-USDT-SWAP", [newer, older])]
    await fake_okx.drop_all()
    await fake_okx.wait_for_subscription(SUBSCRIPTION)
    await fake_okx.push("BTC-USDT-SWAP", [detail("buy", "1", "60100.0", t + 1)])
    await eventually(lambda: _count(running) == 3, seen=lambda: _count(running))
    status = (await sources(running))["okx"]
    assert status["duplicates"] == 2 and status["events"] == 3, status
    assert status["reconnects"] >= 1
    assert running.hub.processor.rejected == 0  # dropped at the feed, not by the store


async def test_one_exchange_down_while_the_others_flow(
    start_hub: HubFactory, fake_binance: FakeBinance, fake_bybit: FakeBybit, fake_okx: FakeOkx
) -> None:
    running = await start(start_hub, fake_binance, fake_bybit, fake_okx)
    await fake_bybit.stop()

    async def bybit_down() -> bool:
        return not (await sources(running))["bybit"]["connected"]

    await eventually(bybit_down)
    verdict = await health(running)
    assert verdict["status"] == "degraded", verdict
    assert [r for r in verdict["reasons"] if r.startswith("bybit: disconnected")], verdict
    assert not [r for r in verdict["reasons"] if not r.startswith("bybit")], verdict

    t = now_ms()
    await fake_binance.push(force_order("BTCUSDT", "SELL", "60000.0", "0.100", trade_time=t))
    await fake_okx.push("BTC-USDT-SWAP", [detail("buy", "13", "60020.0", t)])
    await eventually(lambda: _count(running) == 2, seen=lambda: _count(running))

    await fake_bybit.start()  # back on the same port
    await fake_bybit.wait_for_subscription("allLiquidation.BTCUSDT")

    async def healthy() -> bool:
        return await health(running) == {"status": "ok"}

    await eventually(healthy)


async def test_a_silent_source_degrades_health_and_pongs_are_not_messages(
    start_hub: HubFactory, fake_binance: FakeBinance, fake_bybit: FakeBybit, fake_okx: FakeOkx
) -> None:
    timing = Timing(
        ping_interval=0.1, watchdog_timeout=5.0, max_age=3600, open_timeout=2, silent_after=0.5
    )
    running = await start(start_hub, fake_binance, fake_bybit, fake_okx, timing=timing)
    # every connection answers its keep-alive (protocol pongs, Bybit's JSON, OKX's text)
    await eventually(
        lambda: all(c.pings >= 2 for c in fake_bybit.connections + fake_okx.connections)
    )

    async def all_silent() -> bool:
        reasons = (await health(running)).get("reasons", [])
        return sorted(r.split(":")[0] for r in reasons) == ["binance", "bybit", "okx"]

    await eventually(all_silent, seen=lambda: None)
    status = await sources(running)
    assert all(status[name]["connected"] and status[name]["silent"] for name in status)
    # the subscription acks were the only messages: no pong was counted as one
    assert status["bybit"]["messages"] == 1 and status["okx"]["messages"] == 1, status

    async def okx_heard() -> bool:
        # a fresh liquidation each poll, so a slow poll still lands inside the window
        await fake_okx.push("BTC-USDT-SWAP", [detail("buy", "1", "60000.0")])
        reasons = (await health(running)).get("reasons", [])
        return not [r for r in reasons if r.startswith("okx")]

    await eventually(okx_heard)


async def test_okx_waits_for_contract_values_before_it_subscribes(
    start_hub: HubFactory, fake_binance: FakeBinance, fake_bybit: FakeBybit, fake_okx: FakeOkx
) -> None:
    fake_okx.rest_status = 503
    settings = all_exchanges(fake_binance, fake_bybit, fake_okx, symbols=("BTCUSDT", "XRPUSDT"))
    running = await start_hub(settings)

    async def refused() -> bool:
        okx = (await sources(running))["okx"]
        return "instruments" in (okx["last_error"] or "") and not okx["connected"]

    await eventually(refused)
    assert not fake_okx.subscribed(SUBSCRIPTION)
    assert [r for r in (await health(running))["reasons"] if r.startswith("okx")]

    fake_okx.rest_status = 200
    await fake_okx.wait_for_subscription(SUBSCRIPTION)
    okx = (await sources(running))["okx"]
    assert okx["unlisted"] == ["XRPUSDT"]  # status says which symbol OKX does not list
    # an instrument without a contract value is skipped and counted, never guessed
    await fake_okx.push("DOGE-USDT-SWAP", [detail("buy", "1", "0.1")])

    async def skipped() -> bool:
        return (await sources(running))["okx"]["anomalies"].get("unknown_instrument") == 1

    await eventually(skipped)


async def test_bybit_star_subscribes_every_listed_perpetual_and_one_refusal_costs_itself(
    start_hub: HubFactory, fake_binance: FakeBinance, fake_bybit: FakeBybit, fake_okx: FakeOkx
) -> None:
    settings = all_exchanges(
        fake_binance, fake_bybit, fake_okx, symbols=("*",), exchanges=("bybit",)
    )
    running = await start_hub(settings)
    for symbol in fake_bybit.listed:  # two pages of instruments
        await fake_bybit.wait_for_subscription(f"allLiquidation.{symbol}")
    assert len(fake_bybit.rest_requests) == 2
    await fake_bybit.push("XRPUSDT", [liquidation("XRPUSDT", "Sell", "100", "0.5")])
    await eventually(lambda: "XRPUSDT" in running.hub.processor.books)

    other = await start_hub(
        all_exchanges(
            fake_binance,
            fake_bybit,
            fake_okx,
            symbols=("BTCUSDT", "NOPEUSDT"),
            exchanges=("bybit",),
        )
    )

    async def refused_alone() -> bool:
        return (await sources(other))["bybit"]["unlisted"] == ["NOPEUSDT"]

    await eventually(refused_alone)
    await fake_bybit.wait_for_subscription("allLiquidation.BTCUSDT", n=2)
