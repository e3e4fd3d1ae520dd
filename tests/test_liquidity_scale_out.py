"""`liquidity:{SYMBOL}` across processes: `ingest` holds the OKX book and publishes the
analysis to Redis; a `web` process relays it to WebSocket clients and answers REST from it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.conftest import eventually
from tests.fakes.binance_server import FakeBinance
from tests.fakes.okx_book_server import FakeOkx
from tests.redis_server import RedisServer
from tests.test_e2e_scale_out import Cluster
from tests.test_okx_book_feed import GOOD, SNAPSHOT


@pytest.fixture
async def okx_cluster(
    tmp_path: Path, redis_server: RedisServer, fake_binance: FakeBinance
) -> AsyncIterator[tuple[Cluster, FakeOkx]]:
    async with FakeOkx([[SNAPSHOT, *GOOD]]) as okx:
        hub = Cluster(tmp_path, redis_server, fake_binance)
        hub.env |= {
            "OKX_WS_URL": okx.ws_url,
            "OKX_REST_URL": okx.rest_url,
            "HEATMAP_LIQUIDITY": "okx",
        }
        try:
            yield hub, okx
        finally:
            await hub.close()
            hub.print_logs()


async def test_web_relays_what_ingest_publishes(okx_cluster: tuple[Cluster, FakeOkx]) -> None:
    """The book stops changing before `web` starts: ingest's periodic refresh reaches it."""
    cluster, _ = okx_cluster
    await cluster.start_ingest()
    web = await cluster.start_web()
    body: dict[str, Any] = {}

    async def served() -> bool:
        response = await cluster.http.get(f"{web.http}/api/heatmap/liquidity/BTCUSDT")
        body.update(response.json())
        return response.status_code == 200 and body["data"]["best_bid"] == 60007.8

    await eventually(served, seen=lambda: body)
    async with connect(web.ws) as ws:
        await ws.send(json.dumps({"op": "subscribe", "id": 1, "channels": ["liquidity:BTCUSDT"]}))
        replies = [json.loads(await ws.recv()) for _ in range(2)]
    message = next(r for r in replies if r.get("ch") == "liquidity:BTCUSDT")
    assert message["type"] == "liquidity" and message["data"]["best_ask"] == 60022.6
    status = (await cluster.http.get(f"{web.http}/api/heatmap/status")).json()["data"]
    assert status["sources"]["okx_book"]["books_synced"] == 1, status["sources"]
