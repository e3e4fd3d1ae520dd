"""Binance, Bybit and OKX at once: a real hub against the three look-alikes.

Each exchange names sides its own way and OKX counts contracts; the hub must turn each
into the same normalized event with its `exchange`, aggregate them in one heatmap, let
REST filter by exchange, count an OKX replay once, and say on status and /health when
one exchange is down or silent while the others flow, or when Redis is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from hub.config import Settings
from hub.feeds.connection import Timing
from hub.feeds.okx import OkxLiquidationFeed
from tests.conftest import (
    BINANCE,
    FAST_TIMING,
    HubFactory,
    RunningHub,
    all_exchanges,
    eventually,
    fast_backoff,
)
from tests.fakes.binance_server import FakeBinance, force_order
from tests.fakes.bybit_server import FakeBybit, liquidation
from tests.fakes.okx_server import SUBSCRIPTION, FakeOkx, detail, push_frame
from tests.redis_server import RedisServer

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

    async def counted(exchanges: str) -> int:
        path = f"{API}/liquidations/BTCUSDT/leverage"
        data = (await running.get(path, exchange=exchanges)).json()["data"]
        return sum(t["count"] for t in data["tiers"]) + data["unknown"]

    seen = [await counted(exchanges) for exchanges in ("bybit", "okx", "bybit,okx")]
    assert seen == [1, 1, 2], f"expected a list to count the sum of its exchanges, seen {seen}"

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
    # 2 per fresh connection (one, unless a loaded machine made the watchdog reconnect)
    assert status["duplicates"] >= 2 and status["events"] == 3, status
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
    exchanges = ("binance", "bybit", "okx")
    assert all(status[name]["connected"] and status[name]["silent"] for name in exchanges), status
    # one subscription ack per connection were the only messages: no pong counted as one
    for name in ("bybit", "okx"):
        connections = status[name]["reconnects"] + 1
        assert connections - 1 <= status[name]["messages"] <= connections, status[name]

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

    async def okx_degrades_health() -> bool:
        return any(r.startswith("okx: ") for r in (await health(running)).get("reasons", []))

    await eventually(okx_degrades_health)

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
    pages = [path for path in fake_bybit.rest_requests if "cursor=" in path]
    assert pages and len(fake_bybit.rest_requests) >= 2  # the list came in two pages
    await fake_bybit.push("XRPUSDT", [liquidation("XRPUSDT", "Sell", "100", "0.5")])
    await eventually(lambda: "XRPUSDT" in running.hub.processor.books)
    # HEATMAP_EXCHANGES=bybit: the other exchanges are neither read nor listed
    assert set(await sources(running)) == {"bybit", "coinglass"}  # coinglass: disabled
    assert not fake_binance.connections and not fake_okx.connections

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


async def test_redis_unreachable_degrades_health_until_it_is_back(
    start_hub: HubFactory, fake_binance: FakeBinance, redis_server: RedisServer
) -> None:
    settings = Settings(
        binance_ws_url=fake_binance.base_url,
        symbols=("BTCUSDT",),
        exchanges=BINANCE,
        redis_url=redis_server.url,
    )
    running = await start_hub(settings)
    await fake_binance.wait_for_subscription("btcusdt@forceOrder")

    async def healthy() -> bool:
        return await health(running) == {"status": "ok"}

    await eventually(healthy)
    redis_server.kill()

    async def redis_reason() -> bool:
        reasons = (await health(running)).get("reasons", [])
        return reasons == ["redis: broker unreachable"]

    await eventually(redis_reason)
    await asyncio.to_thread(redis_server.start)
    await eventually(healthy)


async def test_symbols_added_and_removed_at_run_time_reach_every_exchange(
    start_hub: HubFactory, fake_binance: FakeBinance, fake_bybit: FakeBybit, fake_okx: FakeOkx
) -> None:
    running = await start(start_hub, fake_binance, fake_bybit, fake_okx)
    await running.hub.add_symbols({"SOLUSDT"})
    await fake_binance.wait_for_subscription("solusdt@forceOrder")
    await fake_bybit.wait_for_subscription("allLiquidation.SOLUSDT")
    await fake_okx.push("SOL-USDT-SWAP", [detail("sell", "4", "150.0")])  # ctVal 1 SOL
    await eventually(lambda: len(running.hub.processor.books["SOLUSDT"].store) == 1)
    assert list(running.hub.processor.books["SOLUSDT"].store)[-1].quantity == 4.0

    await running.hub.remove_symbols({"ETHUSDT"})
    await eventually(lambda: not fake_bybit.subscribed("allLiquidation.ETHUSDT"))
    await fake_okx.push("ETH-USDT-SWAP", [detail("sell", "4", "3000.0")])

    async def ignored() -> bool:
        return (await sources(running))["okx"]["ignored"] == 1

    await eventually(ignored)


async def test_okx_contract_values_are_refreshed_and_a_failed_refresh_keeps_them(
    fake_okx: FakeOkx,
) -> None:
    events: list[Any] = []
    feed = OkxLiquidationFeed(
        fake_okx.ws_url, fake_okx.rest_url, {"BTCUSDT"}, events.append,
        FAST_TIMING, fast_backoff(), refresh_ms=100,
    )  # fmt: skip
    task = asyncio.create_task(feed.run())
    try:
        await fake_okx.wait_for_subscription(SUBSCRIPTION)
        fake_okx.contract_values["BTC-USDT-SWAP"] = "0.001"  # OKX changed the contract
        await eventually(lambda: feed.decoder.contract_values["BTC-USDT-SWAP"] == 0.001)
        fake_okx.rest_status = 500
        requests = len(fake_okx.rest_requests)
        await eventually(lambda: len(fake_okx.rest_requests) >= requests + 2)
        assert "HTTP 500" in (feed.status.last_error or "")
        await fake_okx.push("BTC-USDT-SWAP", [detail("buy", "100", "60000.0")])
        await eventually(lambda: len(events) == 1)
        assert events[0].quantity == pytest.approx(0.1)  # 100 contracts of 0.001 BTC
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
