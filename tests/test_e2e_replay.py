"""User journey: a script pulls events, leverage tiers and exports after a replay, and a
MessagePack bot and a JSON browser watch the same channel."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hub.config import Settings
from hub.service import hubs
from hub.service.sources import DEMO_REPLAY
from tests.conftest import DATA, HubFactory, RunningHub, eventually
from tests.test_e2e_websocket import quiet

EXPECTED = json.loads((DATA / "sample_session.expected.json").read_text())


@pytest.fixture
async def replayed(start_hub: HubFactory) -> RunningHub:
    settings = Settings(flush_ms=20, allowed_origins=("https://ok.example",))
    running = await start_hub(settings, replay=Path(DEMO_REPLAY), speed=0)
    feed = running.hub.feed

    async def finished() -> bool:
        return feed.status.frames == EXPECTED["lines"] and not feed.status.connected

    await eventually(finished, within=20)
    await running.hub.flush_now()
    return running


async def test_events_newest_first_with_filters(replayed: RunningHub) -> None:
    body = (
        await replayed.get("/api/heatmap/liquidations/solusdt", timeWindow="1h", limit="10000")
    ).json()
    events = body["data"]
    assert len(events) == EXPECTED["per_symbol"]["SOLUSDT"]["events"]
    times = [e["time"] for e in events]
    assert times == sorted(times, reverse=True)
    longs = (
        await replayed.get("/api/heatmap/liquidations/SOLUSDT", side="long", limit="10000")
    ).json()["data"]
    assert len(longs) == EXPECTED["per_symbol"]["SOLUSDT"]["long_events"]
    assert {e["side"] for e in longs} == {"long"}
    five = (await replayed.get("/api/heatmap/liquidations/SOLUSDT", limit="5")).json()["data"]
    assert five == events[:5]
    big = [e for e in events if e["notional"] >= 1_000_000]
    assert big and all(e["outlier"] for e in big)
    assert sum(e["outlier"] for e in events) < len(events) / 10
    recent = (
        await replayed.get("/api/heatmap/liquidations/SOLUSDT", timeWindow="5m", limit="10000")
    ).json()["data"]
    assert 0 < len(recent) < len(events)
    assert all(e["time"] >= events[0]["time"] - 5 * 60_000 for e in recent)


async def test_leverage_tiers_add_up(replayed: RunningHub) -> None:
    data = (await replayed.get("/api/heatmap/liquidations/BTCUSDT/leverage")).json()["data"]
    assert data["estimated"] is True
    tiers = data["tiers"]
    assert [t["tier"] for t in tiers] == ["1-5x", "5-10x", "10-25x", "25-50x", "50-100x", "100x+"]
    assert sum(t["share"] for t in tiers) == pytest.approx(1.0)
    assert sum(t["count"] for t in tiers) >= EXPECTED["per_symbol"]["BTCUSDT"]["events"] - 2


async def test_export_csv_and_json(replayed: RunningHub) -> None:
    response = await replayed.get("/api/heatmap/export/ADAUSDT", format="csv")
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == [
        "exchange",
        "symbol",
        "side",
        "price",
        "quantity",
        "notional",
        "time",
        "est_leverage",
        "tier",
    ]
    assert len(rows) - 1 == EXPECTED["per_symbol"]["ADAUSDT"]["events"]
    total = sum(float(row[5]) for row in rows[1:])
    assert total == pytest.approx(EXPECTED["per_symbol"]["ADAUSDT"]["total_notional"], rel=1e-9)
    as_json = await replayed.get("/api/heatmap/export/ADAUSDT", format="json")
    assert "attachment" in as_json.headers["content-disposition"]
    assert len(as_json.json()["data"]) == len(rows) - 1
    bad = await replayed.get("/api/heatmap/export/ADAUSDT", format="xml")
    assert bad.status_code == 400


async def test_export_parquet_streamed_in_chunks_holds_what_json_does(
    replayed: RunningHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks of 100 rows: the body is written a chunk (a Parquet row group) at a time.
    monkeypatch.setattr(hubs, "ROWS_CHUNK", 100)
    args = {"timeWindow": "24h"}
    as_json = (await replayed.get("/api/heatmap/export/BTCUSDT", format="json", **args)).json()
    response = await replayed.get("/api/heatmap/export/BTCUSDT", format="parquet", **args)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].endswith('.parquet"')
    table = pq.read_table(io.BytesIO(response.content))
    events = as_json["data"]
    assert len(events) == EXPECTED["per_symbol"]["BTCUSDT"]["events"] > 100
    assert table.num_rows == len(events)
    assert pq.ParquetFile(io.BytesIO(response.content)).num_row_groups > 1
    assert table.to_pylist() == events, "the same rows, fields and values as the JSON export"
    csv_rows = list(csv.DictReader(io.StringIO(
        (await replayed.get("/api/heatmap/export/BTCUSDT", format="csv", **args)).text
    )))  # fmt: skip
    assert [int(row["time"]) for row in csv_rows] == [e["time"] for e in events]
    assert [e["time"] for e in events] == sorted(e["time"] for e in events), "oldest first"


async def receive(ws: Any, binary: bool) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), 15)
    assert isinstance(frame, bytes) is binary
    return msgspec.msgpack.decode(frame) if binary else json.loads(frame)


async def test_msgpack_and_json_clients_see_the_same_data(replayed: RunningHub) -> None:
    request = {"op": "subscribe", "id": 1, "channels": ["heatmap:ETHUSDT:15m"]}
    async with connect(replayed.ws) as text, connect(f"{replayed.ws}?format=msgpack") as packed:
        await text.send(json.dumps(request))
        await packed.send(msgspec.msgpack.encode(request))
        assert (await receive(text, False))["op"] == "subscribed"
        assert (await receive(packed, True)) == {
            "op": "subscribed",
            "id": 1,
            "channels": ["heatmap:ETHUSDT:15m"],
        }
        from_text, from_packed = await receive(text, False), await receive(packed, True)
        assert from_text["type"] == "snapshot"
        assert from_text == from_packed
        assert from_text["data"]["statistics"]["event_count"] > 0


async def test_origin_allow_list(replayed: RunningHub) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(replayed.ws, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with connect(replayed.ws, origin="https://ok.example") as ws:
        await ws.send(json.dumps({"op": "ping", "id": 1}))
        assert json.loads(await ws.recv()) == {"op": "pong", "id": 1}
    async with connect(replayed.ws) as ws:  # no Origin: a bot, allowed
        await ws.send(json.dumps({"op": "ping", "id": 2}))
        assert json.loads(await ws.recv()) == {"op": "pong", "id": 2}


async def test_prometheus_metrics(replayed: RunningHub) -> None:
    response = await replayed.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = response.text.splitlines()
    # liquidations per exchange; the replay (the file) is their sum, never counted again
    assert 'hub_source_events_total{source="binance"} 4987' in lines, lines
    events = [line for line in lines if line.startswith("hub_source_events_total{")]
    assert events == ['hub_source_events_total{source="binance"} 4987'], events
    assert 'hub_symbol_events{symbol="BTCUSDT"} 1128' in lines
    assert "# TYPE hub_clients gauge" in lines
    for line in lines:
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2


@pytest.mark.timeout(240)  # the demo's backfill on a loaded machine
async def test_per_exchange_views_add_up_to_the_live_heatmap(start_hub: HubFactory) -> None:
    replayed = await start_hub(Settings(flush_ms=20), demo=True, speed=1)
    feed = replayed.hub.feed
    await eventually(lambda: feed.status.frames > len(feed.lines), within=90)
    await quiet(replayed)  # then the numbers hold still
    window = replayed.hub.processor.books["BTCUSDT"].windows["24h"]

    async def published() -> bool:
        # The 24h window publishes at its own pace: wait until it shows all it holds.
        await replayed.hub.flush_now()
        return not window.pending

    await eventually(published, within=30)
    path = "/api/heatmap/liquidations/BTCUSDT/heatmap"
    live = (await replayed.get(path, timeWindow="24h")).json()["data"]
    by_exchange = live["statistics"]["by_exchange"]
    assert {"binance", "bybit", "okx"} <= set(by_exchange), by_exchange
    total = sum(x["count"] for x in by_exchange.values())
    assert total == live["statistics"]["event_count"]
    okx = (await replayed.get(path, timeWindow="24h", exchange="okx")).json()["data"]
    assert set(okx["statistics"]["by_exchange"]) == {"okx"}
    assert okx["statistics"]["event_count"] == by_exchange["okx"]["count"]
    assert okx["statistics"]["long_notional"] == pytest.approx(by_exchange["okx"]["long_notional"])
    assert sum(b[3] for b in okx["bins"]) == by_exchange["okx"]["count"]
    every = (await replayed.get(path, timeWindow="24h", exchange=",".join(by_exchange))).json()
    view = every["data"]
    assert (view["bins"], view["statistics"]) == (live["bins"], live["statistics"]), (
        "a view of every exchange is the window itself"
    )
    assert view["density"] == live["density"]
    timeline = "/api/heatmap/liquidations/BTCUSDT/timeline"
    matrix = (await replayed.get(timeline, timeWindow="24h", exchange="okx")).json()["data"]
    placed = sum(sum(row) for row in matrix["long"]) + sum(sum(row) for row in matrix["short"])
    outside = matrix["outside"]["long"] + matrix["outside"]["short"]
    okx_total = by_exchange["okx"]["long_notional"] + by_exchange["okx"]["short_notional"]
    assert placed + outside == pytest.approx(okx_total)
    unified = (await replayed.get("/api/heatmap/unified/BTCUSDT", exchange="okx")).json()["data"]
    assert set(unified["heatmap"]["statistics"]["by_exchange"]) == {"okx"}
    two = await replayed.get("/api/heatmap/unified/BTCUSDT", timeWindow="24h", exchange="okx,bybit")
    summed = two.json()["data"]["heatmap"]["statistics"]
    assert set(summed["by_exchange"]) == {"okx", "bybit"}, summed
    assert summed["event_count"] == by_exchange["okx"]["count"] + by_exchange["bybit"]["count"]
    bad = await replayed.get(path, exchange="mtgox")
    assert bad.status_code == 400 and "mtgox" in bad.json()["error"]
