"""The OKX book feed end to end: a local OKX look-alike sending the generated session's
real frames (planted checksum fault, sequence break, reset), the hub under uvicorn, and
the liquidity REST, unified and WebSocket surfaces."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from hub.config import Settings
from hub.feeds.connection import Timing
from tests.conftest import BINANCE, HubFactory, RunningHub, eventually
from tests.fakes.binance_server import FakeBinance
from tests.fakes.okx_book_server import FakeOkx

OKX = Path(__file__).parent / "data" / "okx"
LINES = (OKX / "book_session.jsonl").read_bytes().splitlines()
SNAPSHOT, GOOD, BAD_CHECKSUM, GAP = LINES[1], LINES[2:302], LINES[302], LINES[303]
LAST_SEQ = 341877697300
# Fast pings, but a watchdog that a loaded machine's pauses do not trip: these tests count
# reconnects and replays.
TIMING = Timing(ping_interval=0.2, watchdog_timeout=5.0, max_age=3600, open_timeout=5)


def reset_update() -> bytes:
    """The documented reset after maintenance: seqId below its prevSeqId, which chains."""
    data = {"asks": [], "bids": [["60000", "3", "0", "1"]], "ts": "1795176200000"}
    data |= {"checksum": 0, "prevSeqId": LAST_SEQ, "seqId": 7}
    frame = {"arg": {"channel": "books", "instId": "BTC-USDT-SWAP"}, "action": "update"}
    return json.dumps(frame | {"data": [data]}).encode()


def trades(count: int = 60) -> list[bytes]:
    """Taker trades in the documented push shape; the last five are large."""
    frames = []
    for i in range(count):
        size = "500" if i >= count - 5 else "2"
        trade = {"instId": "BTC-USDT-SWAP", "tradeId": str(i), "px": "60010.0", "sz": size}
        trade |= {"side": "buy" if i % 2 else "sell", "ts": "1795176100000"}
        arg = {"channel": "trades", "instId": "BTC-USDT-SWAP"}
        frames.append(json.dumps({"arg": arg, "data": [trade]}).encode())
    return frames


@pytest.fixture
async def silent_binance() -> AsyncIterator[FakeBinance]:
    async with FakeBinance(ping_interval=None) as server:
        yield server


async def hub_on(okx: FakeOkx, binance: FakeBinance, start_hub: HubFactory) -> RunningHub:
    settings = Settings(
        binance_ws_url=binance.base_url,
        okx_ws_url=okx.ws_url,
        okx_rest_url=okx.rest_url,
        symbols=("BTCUSDT", "ETHUSDT"),
        exchanges=BINANCE,
    )
    return await start_hub(settings, timing=TIMING)


async def book_status(hub: RunningHub) -> dict[str, Any]:
    body = (await hub.get("/api/heatmap/status")).json()
    return body["data"]["sources"]["okx_book"]


async def test_faults_resync_and_the_surfaces_serve_the_good_book(
    silent_binance: FakeBinance, start_hub: HubFactory
) -> None:
    scripts = [
        [SNAPSHOT, *GOOD, BAD_CHECKSUM],
        [SNAPSHOT, *GOOD, GAP],
        [SNAPSHOT, *GOOD, b"not json{", reset_update()],
    ]
    async with FakeOkx(scripts, trades=trades()) as okx:
        hub = await hub_on(okx, silent_binance, start_hub)
        seen: dict[str, Any] = {}

        async def settled() -> bool:
            seen.update(await book_status(hub))
            return seen["resyncs"] == 2 and seen["books_synced"] == 1 and seen["malformed"] == 1

        await eventually(settled, seen=lambda: seen)
        assert (seen["checksum_failures"], seen["sequence_gaps"]) == (1, 1)
        assert seen["connected"] and seen["messages"] > 900 and seen["reconnects"] == 0
        assert seen["unlisted"] == [] and seen["contract_values"] == 1
        assert {"op": "unsubscribe", "channel": "books", "instId": "BTC-USDT-SWAP"} in (
            okx.subscriptions
        )

        body: dict[str, Any] = {}

        async def served() -> bool:
            response = await hub.get("/api/heatmap/liquidity/btcusdt")
            body.update(response.json())
            if response.status_code != 200:
                return False
            data = body["data"]
            # the last analysis is at most a second behind the book (and the trades)
            return (data["best_bid"], data["best_ask"]) == (60007.8, 60022.6) and data["flow"][
                "1h"
            ]["buy"] > 900_000

        await eventually(served, seen=lambda: body)
        data = body["data"]
        assert data["exchange"] == "okx" and data["synced"] is True
        assert (data["best_bid"], data["best_ask"]) == (60007.8, 60022.6)
        assert set(data["imbalance"]) == {"1", "5"} and set(data["flow"]) == {"1m", "5m", "1h"}
        assert data["imbalance"]["1"]["ratio"] == pytest.approx(
            data["imbalance"]["1"]["bid"] / data["imbalance"]["1"]["ask"], rel=1e-3
        )
        # The threshold exists from the 50th trade on: then every equal small trade is at its
        # 90th percentile, so buys 49, 51, 53 count with the three large ones (55, 57, 59).
        small, large = 60010.0 * 2 * 0.01, 60010.0 * 500 * 0.01
        assert data["flow"]["1h"]["buy"] == pytest.approx(3 * large + 3 * small)
        assert data["flow_threshold"] == pytest.approx(small)

        missing = await hub.get("/api/heatmap/liquidity/XRPUSDT")
        assert missing.status_code == 404 and "not tracked" in missing.json()["error"]
        eth = await hub.get("/api/heatmap/liquidity/ETHUSDT")
        assert eth.status_code == 503 and "no OKX order book synced" in eth.json()["error"]

        unified = (await hub.get("/api/heatmap/unified/BTCUSDT", timeWindow="1h")).json()
        assert unified["success"], unified
        assert unified["data"]["liquidity"]["best_bid"] == 60007.8
        assert unified["data"]["predicted"] == []
        assert unified["data"]["coinglass"] == {"enabled": False}
        assert isinstance(unified["data"]["insights"], list)
        bad = await hub.get("/api/heatmap/unified/BTCUSDT", timeWindow="2h")
        assert bad.status_code == 400 and "timeWindow" in bad.json()["error"]

        # a late subscriber gets the latest analysis at once, though the book is quiet now
        async with connect(hub.ws) as ws:
            await ws.send(
                json.dumps({"op": "subscribe", "id": 1, "channels": ["liquidity:btcusdt"]})
            )
            replies = [json.loads(await ws.recv()) for _ in range(2)]
        message = next(r for r in replies if r.get("ch") == "liquidity:BTCUSDT")
        assert message["type"] == "liquidity" and message["data"]["best_bid"] == 60007.8


async def test_without_a_websocket_snapshot_the_book_comes_from_rest(
    silent_binance: FakeBinance, start_hub: HubFactory
) -> None:
    snapshot = json.loads(SNAPSHOT)["data"][0]
    rest_book = {k: snapshot[k] for k in ("asks", "bids", "ts", "seqId")}
    async with FakeOkx([GOOD], rest_book=rest_book) as okx:
        hub = await hub_on(okx, silent_binance, start_hub)
        seen: dict[str, Any] = {}

        async def synced() -> bool:
            seen.update(await book_status(hub))
            return seen["books_synced"] == 1

        await eventually(synced, seen=lambda: seen)
        assert seen["rest_snapshots"] == 1 and seen["resyncs"] == 0
        asked = "/api/v5/market/books?instId=BTC-USDT-SWAP&sz=400"
        assert asked in okx.rest_requests, okx.rest_requests
        body: dict[str, Any] = {}

        async def served() -> bool:
            response = await hub.get("/api/heatmap/liquidity/BTCUSDT")
            body.update(response.json())
            return response.status_code == 200

        await eventually(served, seen=lambda: body)
        assert body["data"]["best_bid"] == 60007.8, "the held updates were replayed onto REST"


async def test_keep_alive_and_no_book_is_a_clear_503(
    silent_binance: FakeBinance, start_hub: HubFactory
) -> None:
    # No snapshot on the socket and no REST book: the feed keeps trying, REST says why.
    async with FakeOkx([GOOD[:5]], idle_close=1.5) as okx:
        hub = await hub_on(okx, silent_binance, start_hub)
        await eventually(lambda: okx.pings >= 8, seen=lambda: okx.pings)
        assert okx.connections == 1, "text pings keep OKX from closing an idle connection"
        seen: dict[str, Any] = {}

        async def failed() -> bool:
            seen.update(await book_status(hub))
            return "REST book failed" in (seen["last_error"] or "")

        await eventually(failed, seen=lambda: seen)
        response = await hub.get("/api/heatmap/liquidity/BTCUSDT")
        assert response.status_code == 503
        assert "no OKX order book synced for BTCUSDT" in response.json()["error"]


async def test_symbols_added_and_removed_at_run_time_follow_on_okx(
    silent_binance: FakeBinance, start_hub: HubFactory
) -> None:
    async with FakeOkx([[SNAPSHOT, *GOOD]]) as okx:
        settings = Settings(
            binance_ws_url=silent_binance.base_url,
            okx_ws_url=okx.ws_url,
            okx_rest_url=okx.rest_url,
            symbols=("BTCUSDT",),
            admin_token="secret",
            exchanges=BINANCE,
        )
        hub = await start_hub(settings, timing=TIMING)
        await eventually(lambda: any(s["op"] == "subscribe" for s in okx.subscriptions))
        auth = {"Authorization": "Bearer secret"}
        url = f"{hub.http}/api/heatmap/symbols"
        added = await hub.client.post(url, json={"symbols": ["solusdt", "EURUSD"]}, headers=auth)
        assert added.status_code == 200, added.text
        sol = {"op": "subscribe", "channel": "books", "instId": "SOL-USDT-SWAP"}
        await eventually(lambda: sol in okx.subscriptions, seen=lambda: okx.subscriptions)
        status = await book_status(hub)
        assert status["unlisted"] == ["EURUSD"], "OKX lists no swap for it: status says so"
        removed = await hub.client.request(
            "DELETE", url, json={"symbols": ["SOLUSDT"]}, headers=auth
        )
        assert removed.status_code == 200, removed.text
        gone = {"op": "unsubscribe", "channel": "books", "instId": "SOL-USDT-SWAP"}
        await eventually(lambda: gone in okx.subscriptions, seen=lambda: okx.subscriptions)
