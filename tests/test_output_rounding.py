"""No float noise in what clients read (13798.482000000002 becomes 13798.482)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest
import websockets

from hub.analytics.processor import ProcessorConfig
from hub.config import Settings
from hub.feeds.binance_wire import Order, normalize
from hub.models import round_notional, round_significant
from hub.rounding import rounded_float
from hub.service.sources import DEMO_REPLAY
from tests.conftest import HubFactory, eventually
from tests.test_e2e_websocket import DEMO_BACKFILL_S, DEMO_TEST_TIMEOUT_S
from tests.test_processor import replay

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT", "BNBUSDT")


def floats(value: object, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(value, float):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from floats(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            yield from floats(item, f"{path}[]")


def noisy(value: float) -> bool:
    """Spelled with more than 15 significant digits: binary round-off, not data."""
    text = repr(value)
    return "e" not in text and len(text.replace("-", "").replace(".", "").lstrip("0")) > 15


def test_rounding_helpers() -> None:
    assert 59993.4 * 0.23 == 13798.482000000002
    assert round_notional(59993.4 * 0.23) == 13798.482
    assert round_significant(0.1 + 0.2) == 0.3
    assert round_significant(123456789.123456) == 123456789.1
    assert round_significant(0.000123456789012) == 0.000123456789
    assert round_significant(0.0) == 0.0 and math.isnan(round_significant(math.nan))


def test_normalized_notional_is_price_times_quantity_without_noise() -> None:
    order = Order(s="BTCUSDT", S="SELL", q="0.23", p="59990", ap="59993.4", z="0.23", T=1)
    assert normalize(order).notional == 13798.482


async def test_rest_bodies_carry_no_float_noise(start_hub: HubFactory) -> None:
    running = await start_hub(Settings(flush_ms=20), replay=Path(DEMO_REPLAY), speed=0)
    feed = running.hub.feed
    await eventually(lambda: feed.status.frames > 0 and not feed.status.connected)
    await running.hub.flush_now()
    api = "/api/heatmap"
    for symbol in SYMBOLS:
        for path, params in (
            (f"{api}/liquidations/{symbol}/heatmap", {"timeWindow": "24h"}),
            (f"{api}/liquidations/{symbol}/heatmap", {"timeWindow": "5m"}),
            (f"{api}/liquidations/{symbol}", {"timeWindow": "24h", "limit": "10000"}),
            (f"{api}/liquidations/{symbol}/leverage", {"timeWindow": "24h"}),
            (f"{api}/export/{symbol}", {"timeWindow": "24h", "format": "json"}),
        ):
            body = (await running.get(path, **params)).json()
            assert body["success"], (path, body)
            bad = [(where, value) for where, value in floats(body) if noisy(value)]
            assert not bad, f"{path} {params}: float noise at {bad[:5]}"
        tiers = (await running.get(f"{api}/liquidations/{symbol}/leverage")).json()["data"]
        assert sum(row["share"] for row in tiers["tiers"]) == pytest.approx(1.0, abs=1e-9)


async def test_events_without_leverage_are_those_with_no_price_path_yet(
    start_hub: HubFactory,
) -> None:
    """The estimate needs the recent price path before the event (two prices within 4 h):
    a symbol's first events have none, and say so with an empty leverage and tier."""
    running = await start_hub(Settings(flush_ms=20), replay=Path(DEMO_REPLAY), speed=0)
    feed = running.hub.feed
    await eventually(lambda: feed.status.frames > 0 and not feed.status.connected)
    for symbol in SYMBOLS:
        export = await running.get(f"/api/heatmap/export/{symbol}", timeWindow="30d", format="json")
        events = export.json()["data"]
        unknown = [i for i, e in enumerate(events) if e["est_leverage"] is None]
        assert unknown == [0, 1], f"{symbol}: events without an estimate at {unknown[:10]}"
        assert all(events[i]["tier"] is None for i in unknown)
        assert all(e["tier"] is not None for e in events[2:])


def over_promised(value: float) -> bool:
    """More digits than docs/protocol.md promises (ten significant, or a millionth)."""
    return rounded_float(value) != value


def over_promised_in(body: object) -> list[tuple[str, float]]:
    return [(where, value) for where, value in floats(body) if over_promised(value)]


@pytest.mark.timeout(DEMO_TEST_TIMEOUT_S)
async def test_every_output_keeps_the_promised_digits(start_hub: HubFactory) -> None:
    """REST, WebSocket (JSON and MessagePack), export (CSV, JSON, Parquet) and status of
    the demo with its OKX book: OKX sizes (contracts x contract value), liquidity mids,
    timeline sums and lags are where noise came from."""
    running = await start_hub(
        Settings(flush_ms=50, okx_ws_url="ws://127.0.0.1:9/unused"), demo=True
    )
    feed = running.hub.feed
    await eventually(lambda: feed.status.frames > len(feed.lines) // 2, within=DEMO_BACKFILL_S)
    api = "/api/heatmap"
    ws_json, ws_msgpack = [], []

    async def listen(fmt: str, into: list[object]) -> None:
        async with websockets.connect(f"{running.ws}?format={fmt}", max_size=None) as ws:
            channels = [
                f"{kind}:{s}"
                for s in SYMBOLS
                for kind in ("heatmap", "liquidations", "liquidity", "predicted")
            ]
            await ws.send(json.dumps({"op": "subscribe", "id": 1, "channels": channels}))
            while True:
                frame = await ws.recv()
                into.append(
                    msgspec.msgpack.decode(frame) if fmt == "msgpack" else json.loads(frame)
                )

    listeners = [
        asyncio.create_task(listen("json", ws_json)),
        asyncio.create_task(listen("msgpack", ws_msgpack)),
    ]
    try:

        async def served() -> bool:
            return (await running.get(f"{api}/liquidity/BTCUSDT")).status_code == 200

        await eventually(served, within=DEMO_BACKFILL_S)
        paths: list[tuple[str, dict[str, str]]] = [(f"{api}/status", {})]
        for symbol in SYMBOLS:
            paths += [
                (f"{api}/liquidations/{symbol}/heatmap", {"timeWindow": "24h"}),
                (f"{api}/liquidations/{symbol}", {"timeWindow": "24h", "limit": "10000"}),
                (f"{api}/liquidations/{symbol}/leverage", {"timeWindow": "24h"}),
                (f"{api}/liquidations/{symbol}/timeline", {"timeWindow": "1h", "buckets": "120"}),
                (f"{api}/liquidity/{symbol}", {}),
                (f"{api}/unified/{symbol}", {}),
                (f"{api}/predicted/{symbol}", {}),
                (f"{api}/predicted/{symbol}/timeline", {"timeWindow": "1h"}),
                (f"{api}/export/{symbol}", {"timeWindow": "24h", "format": "json"}),
            ]
        for path, params in paths:
            response = await running.get(path, **params)
            assert response.status_code == 200, (path, response.text[:200])
            bad = over_promised_in(response.json())
            assert not bad, f"{path} {params}: expected at most the promised digits, seen {bad[:5]}"
        for symbol in SYMBOLS:
            csv_body = (await running.get(f"{api}/export/{symbol}", timeWindow="24h")).text
            rows = list(csv.DictReader(io.StringIO(csv_body)))
            assert rows, symbol
            numbers = [float(row[f]) for row in rows for f in ("price", "quantity", "notional")]
            numbers += [float(row["est_leverage"]) for row in rows if row["est_leverage"]]
            bad_csv = [n for n in numbers if over_promised(n)]
            assert not bad_csv, f"{symbol} csv: expected the promised digits, seen {bad_csv[:5]}"
            parquet = await running.get(
                f"{api}/export/{symbol}", timeWindow="24h", format="parquet"
            )
            table = pq.read_table(io.BytesIO(parquet.content)).to_pylist()
            bad_parquet = over_promised_in(table)
            assert not bad_parquet, f"{symbol} parquet: seen {bad_parquet[:5]}"
        await eventually(lambda: len(ws_json) > 50 and len(ws_msgpack) > 50)
    finally:
        for task in listeners:
            task.cancel()
    kinds = {m.get("type") for m in ws_json}
    assert {"snapshot", "liquidity"} <= kinds, kinds
    for fmt, messages in (("json", ws_json), ("msgpack", ws_msgpack)):
        bad = over_promised_in(messages)
        assert not bad, f"WebSocket {fmt}: expected the promised digits, seen {bad[:5]}"


def test_alerts_carry_no_float_noise_and_say_their_units() -> None:
    _, alerts, _ = replay(ProcessorConfig(), flush_ms=1_000)
    assert {a.kind for a in alerts} == {
        "large_liquidation", "cascade", "cluster_new", "cluster_growth"
    }  # fmt: skip
    for alert in alerts:
        for field in ("price", "notional", "z_score"):
            value = getattr(alert, field)
            assert not noisy(value), f"{alert.id}: {field} {value!r} carries float noise"
        assert "$" in alert.detail, f"{alert.id}: no unit in {alert.detail!r}"
