"""The exchanges through `ingest` and `web` over a real Redis, with real processes.

`ingest` reads the Binance, Bybit and OKX look-alikes (then all eight); a `web` process
must serve their events with each one's `exchange`, filter by exchange, list every
source on status, and say `degraded` on /health (from what ingest publishes) while one
exchange is down.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from hub.config import EXCHANGES, FIELD_TO_VARIABLE
from hub.service.control import STATUS_KEY
from tests.conftest import Eight, eventually, exchange_urls
from tests.fakes.binance_server import FakeBinance, force_order
from tests.fakes.bybit_server import FakeBybit, liquidation
from tests.fakes.okx_server import SUBSCRIPTION, FakeOkx, detail
from tests.redis_server import RedisServer
from tests.test_e2e_scale_out import Cluster, Proc

API = "/api/heatmap"


@pytest.fixture
async def cluster(
    tmp_path: Path,
    redis_server: RedisServer,
    fake_binance: FakeBinance,
    fake_bybit: FakeBybit,
    fake_okx: FakeOkx,
) -> AsyncIterator[Cluster]:
    hub = Cluster(tmp_path, redis_server, fake_binance)
    hub.env.update(
        {
            "HEATMAP_EXCHANGES": "binance,bybit,okx",
            "BYBIT_WS_URL": fake_bybit.ws_url,
            "BYBIT_REST_URL": fake_bybit.rest_url,
            "OKX_WS_URL": fake_okx.ws_url,
            "OKX_REST_URL": fake_okx.rest_url,
        }
    )
    try:
        yield hub
    finally:
        await hub.close()
        hub.print_logs()


async def get(cluster: Cluster, web: Proc, path: str, **params: str) -> Any:
    response = await cluster.http.get(f"{web.http}{path}", params=params)
    return response


async def test_web_serves_every_exchange_and_reports_one_down(
    cluster: Cluster, fake_bybit: FakeBybit, fake_okx: FakeOkx, redis_server: RedisServer
) -> None:
    ingest = await cluster.start_ingest()
    await fake_bybit.wait_for_subscription("allLiquidation.BTCUSDT")
    await fake_okx.wait_for_subscription(SUBSCRIPTION)
    web = await cluster.start_web()

    t = int(time.time() * 1000)
    await cluster.fake.push(force_order("BTCUSDT", "SELL", "60000.0", "0.100", trade_time=t))
    await fake_bybit.push("BTCUSDT", [liquidation("BTCUSDT", "Sell", "0.2", "60010.0", t + 1)])
    await fake_okx.push("BTC-USDT-SWAP", [detail("buy", "13", "60020.0", t + 2)])

    async def three() -> bool:
        response = await get(cluster, web, f"{API}/liquidations/BTCUSDT", limit="100")
        return response.status_code == 200 and len(response.json()["data"]) == 3

    await eventually(three)
    rows = (await get(cluster, web, f"{API}/liquidations/BTCUSDT")).json()["data"]
    assert {(r["exchange"], r["side"]) for r in rows} == {
        ("binance", "long"), ("bybit", "short"), ("okx", "short")
    }  # fmt: skip
    assert next(r for r in rows if r["exchange"] == "okx")["quantity"] == pytest.approx(0.13)
    only = (await get(cluster, web, f"{API}/liquidations/BTCUSDT", exchange="okx")).json()
    assert [r["exchange"] for r in only["data"]] == ["okx"]
    refused = await get(cluster, web, f"{API}/liquidations/BTCUSDT", exchange="ftx")
    assert refused.status_code == 400 and "ftx" in refused.json()["error"]

    # web shows what ingest last published of itself (once a second): wait for it
    seen: dict = {}

    async def all_connected() -> bool:
        seen.update((await get(cluster, web, f"{API}/status")).json()["data"])
        sources = seen.get("sources", {})
        return all(sources.get(x, {}).get("connected") for x in ("binance", "bybit", "okx"))

    await eventually(all_connected, seen=lambda: seen.get("sources"))
    assert (await get(cluster, web, "/health")).json()["data"] == {"status": "ok"}

    await fake_bybit.stop()

    async def degraded() -> bool:
        response = await get(cluster, web, "/health")
        data = response.json()["data"]
        return response.status_code == 200 and any(
            r.startswith("bybit: disconnected") for r in data.get("reasons", [])
        )

    await eventually(degraded)

    # ingest gone: its status expires from Redis (after 10 s; deleted here to not wait)
    await cluster.kill(ingest)
    redis = Redis.from_url(redis_server.url)
    try:
        await redis.delete(STATUS_KEY)
    finally:
        await redis.aclose()
    data = (await get(cluster, web, "/health")).json()["data"]
    assert data["status"] == "degraded" and data["reasons"][0].startswith("ingest: silent"), data


@pytest.fixture
async def cluster_of_eight(
    tmp_path: Path, redis_server: RedisServer, eight: Eight
) -> AsyncIterator[Cluster]:
    hub = Cluster(tmp_path, redis_server, eight.binance)
    others = (
        eight.bybit,
        eight.okx,
        eight.bitget,
        eight.gate,
        eight.htx,
        eight.deribit,
        eight.bitmex,
    )
    urls = {FIELD_TO_VARIABLE[field]: url for field, url in exchange_urls(*others).items()}
    hub.env.update({"HEATMAP_EXCHANGES": ",".join(EXCHANGES), **urls})
    try:
        yield hub
    finally:
        await hub.close()
        hub.print_logs()


async def test_web_serves_all_eight_exchanges_and_reports_a_new_one_down(
    cluster_of_eight: Cluster, eight: Eight
) -> None:
    cluster = cluster_of_eight
    await cluster.start_ingest()
    await eight.subscribed()
    web = await cluster.start_web()
    await eight.push_one_each(int(time.time() * 1000))

    async def all_eight() -> bool:
        response = await get(cluster, web, f"{API}/liquidations/BTCUSDT", limit="100")
        return response.status_code == 200 and len(response.json()["data"]) == 8

    await eventually(all_eight)
    rows = (await get(cluster, web, f"{API}/liquidations/BTCUSDT")).json()["data"]
    assert {r["exchange"] for r in rows} == set(EXCHANGES)
    picked = await get(cluster, web, f"{API}/liquidations/BTCUSDT", exchange="gate,bitmex")
    assert sorted(r["exchange"] for r in picked.json()["data"]) == ["bitmex", "gate"]

    seen: dict = {}

    async def all_connected() -> bool:
        seen.update((await get(cluster, web, f"{API}/status")).json()["data"])
        sources = seen.get("sources", {})
        return all(sources.get(x, {}).get("connected") for x in EXCHANGES)

    await eventually(all_connected, seen=lambda: seen.get("sources"))
    await eight.deribit.stop()

    async def degraded() -> bool:
        data = (await get(cluster, web, "/health")).json()["data"]
        return any(r.startswith("deribit: disconnected") for r in data.get("reasons", []))

    await eventually(degraded)
