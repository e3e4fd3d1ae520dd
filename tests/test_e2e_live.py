"""User journey: Binance liquidations in, live heatmap out over a real WebSocket.

A Binance look-alike feeds a real uvicorn server running the hub; a `websockets` client
subscribes like a browser would. Every injected event must arrive once, and the client's
heatmap (snapshot + diffs) must equal the REST snapshot at the end.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from hub.config import Settings
from tests.conftest import BINANCE, HubFactory, RunningHub, eventually
from tests.fakes.binance_server import FakeBinance, force_order


class ClientHeatmap:
    """A client's heatmap, kept by docs/protocol.md's rules alone (not by the hub's code)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.bins: dict[float, list[Any]] = {}

    def take(self, message: dict[str, Any]) -> None:
        data = message["data"]
        if message["type"] == "snapshot":
            self.state = dict(data)
            self.bins = {row[0]: row for row in data["bins"]}
            return
        assert self.state is not None, "a diff came before any snapshot"
        assert message["epoch"] == self.state["epoch"]
        assert message["seq"] == self.state["seq"] + 1, "seq gap"
        self.state["seq"] = message["seq"]
        for row in data.get("bins", []):
            if row[3] == 0:
                self.bins.pop(row[0], None)
            else:
                self.bins[row[0]] = row
        for key in ("clusters", "statistics", "reference_price", "density", "coverage"):
            if key in data:
                self.state[key] = data[key]
        for offset, run in data.get("density_patch", []):
            values = self.state["density"]["values"]
            assert offset + len(run) <= len(values), f"a density run past the axis: {offset}"
            values[offset : offset + len(run)] = run

    def view(self) -> dict[str, Any]:
        assert self.state is not None
        return {
            "seq": self.state["seq"],
            "epoch": self.state["epoch"],
            "bins": sorted(self.bins.values()),
            "clusters": self.state["clusters"],
            "statistics": self.state["statistics"],
            "reference_price": self.state["reference_price"],
            "density": self.state["density"],
            "coverage": self.state["coverage"],
        }


async def receive_json(ws: ClientConnection, within: float = 15.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def start_live_hub(start_hub: HubFactory, fake: FakeBinance) -> RunningHub:
    settings = Settings(
        binance_ws_url=fake.base_url,
        symbols=("BTCUSDT", "ETHUSDT"),
        flush_ms=20,
        exchanges=BINANCE,
    )
    running = await start_hub(settings)
    await fake.wait_for_subscription("btcusdt@forceOrder")
    return running


async def test_liquidations_and_heatmap_reach_a_websocket_client(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await start_live_hub(start_hub, fake_binance)
    now = int(time.time() * 1000)
    async with connect(running.ws) as ws:
        await ws.send(
            json.dumps(
                {
                    "op": "subscribe",
                    "id": 7,
                    "channels": ["heatmap:btcusdt:1h", "liquidations:BTCUSDT"],
                }
            )
        )
        reply = await receive_json(ws)
        assert reply == {
            "op": "subscribed",
            "id": 7,
            "channels": ["heatmap:BTCUSDT:1h", "liquidations:BTCUSDT"],
        }
        heatmap = ClientHeatmap()
        heatmap.take(await receive_json(ws))  # the snapshot

        sent = []
        for i in range(60):
            side = "SELL" if i % 3 else "BUY"
            price = f"{60000 + (i % 12) * 37.5 - (i % 5) * 90:.2f}"
            payload = force_order(
                "BTCUSDT", side, price, f"{0.01 + i / 1000:.3f}", trade_time=now - 60_000 + i * 500
            )
            sent.append(payload)
            assert await fake_binance.push(payload) == 1
            await fake_binance.push(
                force_order("ETHUSDT", "SELL", "3000.00", "1.000", trade_time=now - 1000 + i)
            )
        liquidations: list[dict[str, Any]] = []

        async def drain() -> bool:
            try:
                message = await receive_json(ws, within=0.3)
            except TimeoutError:
                return False
            if message["ch"] == "liquidations:BTCUSDT":
                liquidations.append(message)
            else:
                heatmap.take(message)
            return False

        while len(liquidations) < len(sent):
            await drain()
        assert [m["data"]["time"] for m in liquidations] == [p["o"]["T"] for p in sent]
        assert [m["seq"] for m in liquidations] == list(range(1, len(sent) + 1))
        assert all(m["data"]["side"] in ("long", "short") for m in liquidations)
        assert liquidations[1]["data"]["side"] == "long"  # SELL order: a long was liquidated

        async def settled() -> bool:
            await drain()
            body = (
                await running.get("/api/heatmap/liquidations/BTCUSDT/heatmap", timeWindow="1h")
            ).json()
            snapshot = body["data"]
            return snapshot["statistics"]["event_count"] == len(sent) and (
                snapshot["seq"] == heatmap.view()["seq"]
            )

        await eventually(settled)
        rest = (await running.get("/api/heatmap/liquidations/BTCUSDT/heatmap")).json()["data"]
        mine = heatmap.view()
        assert mine["seq"] == rest["seq"] and mine["epoch"] == rest["epoch"]
        assert mine["bins"] == sorted(rest["bins"])
        assert mine["clusters"] == rest["clusters"]
        assert mine["statistics"] == rest["statistics"]
        assert mine["density"] == rest["density"]
        assert mine["coverage"] == rest["coverage"]
        total = sum(float(p["o"]["ap"]) * float(p["o"]["z"]) for p in sent)
        assert abs(rest["statistics"]["total_notional"] - total) < 1e-6 * total

    status = (await running.get("/api/heatmap/status")).json()["data"]
    binance = status["sources"]["binance"]
    assert binance["connected"] is True
    assert binance["messages"] >= 2 * len(sent) and binance["reconnects"] == 0
    assert binance["last_message_age_ms"] is not None
    assert binance["events"] == 2 * len(sent)
    assert binance["malformed"] == 0
    assert status["symbols"]["BTCUSDT"]["events"] == len(sent)
    assert status["symbols"]["ETHUSDT"]["events"] == len(sent)
    assert status["broker"]["kind"] == "memory"


async def test_upstream_drop_reconnects_without_duplicates(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await start_live_hub(start_hub, fake_binance)
    now = int(time.time() * 1000)
    first = [
        force_order("BTCUSDT", "SELL", f"{60000 + i}.00", "0.100", trade_time=now - 5000 + i)
        for i in range(5)
    ]
    for payload in first:
        await fake_binance.push(payload)
    await fake_binance.drop_all()
    await eventually(lambda: fake_binance.connection_count_total >= 2)
    await fake_binance.wait_for_subscription("btcusdt@forceOrder")
    for payload in [
        *first[-2:],
        force_order("BTCUSDT", "BUY", "60100.00", "0.200", trade_time=now - 100),
    ]:
        await fake_binance.push(payload)  # two re-sent after the reconnect, one new

    async def six_events() -> bool:
        status = (await running.get("/api/heatmap/status")).json()["data"]
        return status["symbols"]["BTCUSDT"]["events"] == 6

    await eventually(six_events)
    status = (await running.get("/api/heatmap/status")).json()["data"]
    assert status["sources"]["binance"]["reconnects"] >= 1
    assert status["processor"]["rejected"] == 2  # the duplicates


async def test_rest_errors_are_clear(start_hub: HubFactory, fake_binance: FakeBinance) -> None:
    running = await start_live_hub(start_hub, fake_binance)
    untracked = await running.get("/api/heatmap/liquidations/DOGEUSDT/heatmap")
    assert untracked.status_code == 404
    assert untracked.json() == {"success": False, "error": "symbol 'DOGEUSDT' is not tracked"}
    bad_window = await running.get("/api/heatmap/liquidations/btcusdt/heatmap", timeWindow="2h")
    assert bad_window.status_code == 400
    assert "timeWindow" in bad_window.json()["error"]
    bad_limit = await running.get("/api/heatmap/liquidations/BTCUSDT", limit="0")
    assert bad_limit.status_code == 400 and "limit" in bad_limit.json()["error"]
    bad_side = await running.get("/api/heatmap/liquidations/BTCUSDT", side="up")
    assert bad_side.status_code == 400 and "side" in bad_side.json()["error"]
    weird = await running.get("/api/heatmap/liquidations/%00%ff/heatmap")
    assert weird.status_code == 404
    health = await running.get("/health")
    assert health.json() == {"success": True, "data": {"status": "ok"}}
    empty = (await running.get("/api/heatmap/liquidations/ETHUSDT/heatmap")).json()["data"]
    assert empty["bins"] == [] and empty["statistics"]["event_count"] == 0


async def test_websocket_errors_do_not_close_the_socket(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await start_live_hub(start_hub, fake_binance)
    async with connect(running.ws) as ws:
        await ws.send("not json")
        assert (await receive_json(ws))["code"] == "bad_request"
        await ws.send(json.dumps({"op": "subscribe", "id": "a", "channels": ["heatmap:XRPUSDT"]}))
        error = await receive_json(ws)
        assert error["op"] == "error" and error["id"] == "a" and error["code"] == "unknown_symbol"
        await ws.send(json.dumps({"op": "subscribe", "id": 2, "channels": ["candles:BTCUSDT"]}))
        assert (await receive_json(ws))["code"] == "bad_channel"
        await ws.send(json.dumps({"op": "subscribe", "id": 3, "channels": ["heatmap:BTCUSDT:2h"]}))
        assert (await receive_json(ws))["code"] == "bad_window"
        await ws.send(json.dumps({"op": "ping", "id": 4}))
        assert await receive_json(ws) == {"op": "pong", "id": 4}
