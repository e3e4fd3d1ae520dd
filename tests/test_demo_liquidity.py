"""`serve --demo` shows order-book liquidity with no network: the bundled OKX book session
(hub/data/demo_okx_book.jsonl) is replayed with the liquidations, its contract values
from the recorded REST line."""

from __future__ import annotations

from typing import Any

from hub.config import Settings
from tests.conftest import HubFactory, eventually

DEMO_BTC_PRICES = (56836.7, 60222.8)  # the range of BTCUSDT liquidations in the demo


async def test_demo_serves_liquidity_and_unified_insights(start_hub: HubFactory) -> None:
    hub = await start_hub(Settings(okx_ws_url="ws://127.0.0.1:9/unused"), demo=True)
    body: dict[str, Any] = {}

    async def served() -> bool:
        response = await hub.get("/api/heatmap/liquidity/BTCUSDT")
        body.update(response.json())
        return response.status_code == 200

    await eventually(served, seen=lambda: body)
    data = body["data"]
    low, high = DEMO_BTC_PRICES
    assert low * 0.99 < data["mid"] < high * 1.01, "the book follows the demo's prices"
    assert data["best_bid"] < data["best_ask"]
    assert data["depth"]["bids"] and data["depth"]["asks"]
    status = (await hub.get("/api/heatmap/status")).json()["data"]["sources"]["okx_book"]
    assert status["contract_values"] == 5 and status["books_synced"] == 5, status
    assert status["resyncs"] == 0 and status["malformed"] == 0, status
    # /metrics counts liquidations per exchange once: not the replay's sum of them, and not
    # the order book's trades (its own counter)
    metrics = (await hub.get("/metrics")).text.splitlines()
    sources = (await hub.get("/api/heatmap/status")).json()["data"]["sources"]  # later: more
    counted = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in metrics
        if line.startswith("hub_source_events_total{")
    }
    assert "replay" not in counted and "okx_book" not in counted, counted
    assert set(counted) <= {"binance", "bybit", "okx", "bitget", "gate", "htx", "deribit", "bitmex"}
    assert sum(counted.values()) <= sources["replay"]["events"], (counted, sources["replay"])
    assert any(line.startswith('hub_source_updates_total{source="okx_book"}') for line in metrics)
    unified = (await hub.get("/api/heatmap/unified/BTCUSDT")).json()["data"]
    assert unified["heatmap"]["statistics"]["event_count"] > 0
    assert unified["liquidity"]["symbol"] == "BTCUSDT"
    for insight in unified["insights"]:
        assert set(insight) == {"kind", "price", "side", "strength", "detail"}
