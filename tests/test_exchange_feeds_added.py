"""All eight exchanges at once: a real hub against the eight look-alikes.

The five added ones (Bitget, Gate, HTX, Deribit, BitMEX) each name sides and sizes their
own way; the hub must turn each into the same normalized event with its `exchange`,
aggregate them with the first three in one heatmap, let REST filter by any of them, and
say on status and /health when one is down or silent while the others flow.
"""

from __future__ import annotations

import time
from typing import Any

from hub.config import EXCHANGES
from hub.feeds.connection import Timing
from tests.conftest import Eight, HubFactory, RunningHub, eventually
from tests.fakes.gate_server import row as gate_row
from tests.fakes.htx_server import ALL

API = "/api/heatmap"


def count(running: RunningHub) -> int:
    return len(running.hub.processor.books["BTCUSDT"].store)


async def sources(running: RunningHub) -> dict[str, Any]:
    return (await running.get(f"{API}/status")).json()["data"]["sources"]


async def health(running: RunningHub) -> dict[str, Any]:
    response = await running.get("/health")
    assert response.status_code == 200
    return response.json()["data"]


async def test_each_of_eight_is_normalized_aggregated_and_filterable(
    start_hub: HubFactory, eight: Eight
) -> None:
    running = await start_hub(eight.settings())
    await eight.subscribed()
    t = int(time.time() * 1000)
    await eight.push_one_each(t)
    await eventually(lambda: count(running) == 8, seen=lambda: count(running))

    rows = (await running.get(f"{API}/liquidations/BTCUSDT", limit="100")).json()["data"]
    got = {r["exchange"]: (r["side"], round(r["quantity"], 6)) for r in rows}
    assert got == {
        "binance": ("long", 0.1),  # SELL order
        "bybit": ("short", 0.2),  # Sell position
        "okx": ("long", 0.3),  # sell order, 30 contracts of 0.01
        "bitget": ("short", 0.4),  # sell position, 24,008 USDT at 60,020
        "gate": ("long", 0.5),  # -5,000 contracts of 0.0001
        "htx": ("short", 0.6),  # buy order
        "deribit": ("long", 0.7),  # M, taker bought: the maker sold; 41,979 USD at 59,970
        "bitmex": ("short", 0.8),  # Buy order, 800,000 contracts of 1e-6
    }
    await running.hub.flush_now()
    stats = (await running.get(f"{API}/liquidations/BTCUSDT/heatmap")).json()["data"]
    assert stats["statistics"]["event_count"] == 8

    picked = await running.get(f"{API}/liquidations/BTCUSDT", exchange="Bitget,deribit")
    assert sorted(r["exchange"] for r in picked.json()["data"]) == ["bitget", "deribit"]
    refused = await running.get(f"{API}/liquidations/BTCUSDT", exchange="bitmex,kraken")
    assert refused.status_code == 400 and "kraken" in refused.json()["error"]

    status = await sources(running)
    for name in EXCHANGES:
        assert status[name]["connected"] and status[name]["live"], status[name]
        assert status[name]["events"] == 1, status[name]
    assert "sample" in status["bitget"]["note"]
    assert await health(running) == {"status": "ok"}


async def test_a_new_exchange_down_degrades_health_while_the_others_flow(
    start_hub: HubFactory, eight: Eight
) -> None:
    running = await start_hub(eight.settings())
    await eight.subscribed()
    await eight.htx.stop()

    async def htx_down() -> bool:
        reasons = (await health(running)).get("reasons", [])
        return [r.split(":")[0] for r in reasons] == ["htx"]

    await eventually(htx_down)
    await eight.push_one_each(int(time.time() * 1000))
    await eventually(lambda: count(running) == 7, seen=lambda: count(running))

    await eight.htx.start()  # back on the same port
    await eight.htx.wait_for_subscription(ALL)

    async def healthy() -> bool:
        return await health(running) == {"status": "ok"}

    await eventually(healthy)


async def test_a_silent_new_exchange_degrades_health_and_keep_alives_are_not_messages(
    start_hub: HubFactory, eight: Eight
) -> None:
    timing = Timing(ping_interval=0.1, watchdog_timeout=5.0, max_age=3600, open_timeout=2,
                    silent_after=0.5)  # fmt: skip
    settings = eight.settings(exchanges=("gate", "bitmex"))
    running = await start_hub(settings, timing=timing)
    await eight.gate.wait_for_subscription("liquidates:!all")
    await eight.bitmex.wait_for_subscription("liquidation")
    # both answer their keep-alive (Gate's futures.pong, BitMEX's text pong) ...
    await eventually(
        lambda: all(c.pings >= 3 for c in eight.gate.connections + eight.bitmex.connections)
    )

    async def both_silent() -> bool:
        reasons = (await health(running)).get("reasons", [])
        return sorted(r.split(":")[0] for r in reasons) == ["bitmex", "gate"]

    await eventually(both_silent)  # ... which keeps them connected, not heard

    async def gate_heard() -> bool:
        await eight.gate.push([gate_row("BTC_USDT", -10, 60000.0)])
        reasons = (await health(running)).get("reasons", [])
        return not [r for r in reasons if r.startswith("gate")]

    await eventually(gate_heard)
