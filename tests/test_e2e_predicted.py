"""User journey: predicted liquidation levels, from Binance open interest and mark prices
(or Bybit's tickers and OKX's open interest) to a WebSocket client and REST, in one
process and across `ingest`/`web` on Redis.

Local look-alikes serve the mark price stream and the open interest REST; a client keeps
`predicted:{SYMBOL}` by docs/protocol.md's rules alone (snapshot, then diffs replacing fields) and
must agree with REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from hub.config import Settings
from hub.feeds.replay import read_replays
from hub.service.hubs import ServeHub
from hub.service.sources import DATA, DEMO_REPLAY, Source
from tests.conftest import (
    BINANCE,
    FAST_TIMING,
    HubFactory,
    all_exchanges,
    eventually,
    fast_backoff,
    http_client,
    web_process,
)
from tests.fakes.binance_open_interest import FakeOpenInterest
from tests.fakes.binance_server import FakeBinance, force_order
from tests.fakes.bybit_server import FakeBybit
from tests.fakes.okx_server import FakeOkx
from tests.redis_server import RedisServer

CHANNEL = "predicted:BTCUSDT"
MARK = "btcusdt@markPrice@1s"


class ClientLevels:
    """A client's predicted levels, by docs/protocol.md: a diff holds new absolute values."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None

    def take(self, message: dict[str, Any]) -> None:
        assert message["ch"] == CHANNEL, message
        if message["type"] == "snapshot":
            self.state = {**message["data"], "epoch": message["epoch"], "seq": message["seq"]}
            return
        assert self.state is not None, "a diff came before any snapshot"
        assert message["epoch"] == self.state["epoch"]
        assert message["seq"] == self.state["seq"] + 1, "seq gap"
        self.state["seq"] = message["seq"]
        for key in ("levels", "consumed", "reference_price", "mark"):
            if key in message["data"]:
                self.state[key] = message["data"][key]

    def levels(self) -> list[dict[str, Any]]:
        return self.state["levels"] if self.state else []

    def consumed(self) -> list[dict[str, Any]]:
        return self.state["consumed"] if self.state else []


async def follow(ws: ClientConnection, client: ClientLevels) -> None:
    async for raw in ws:
        message = json.loads(raw)
        if message.get("ch") == CHANNEL:
            client.take(message)


@contextlib.asynccontextmanager
async def subscribed(url: str) -> AsyncIterator[ClientLevels]:
    client = ClientLevels()
    async with connect(url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "id": 1, "channels": ["predicted:btcusdt"]}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 15))
        assert reply == {"op": "subscribed", "id": 1, "channels": [CHANNEL]}
        task = asyncio.create_task(follow(ws, client))
        try:
            yield client
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def mark(price: float) -> dict[str, Any]:
    now, text = int(time.time() * 1000), f"{price:.2f}"
    return {"e": "markPriceUpdate", "E": now, "s": "BTCUSDT", "p": text, "i": text, "P": text,
            "r": "0.0001", "T": now + 3_600_000}  # fmt: skip


def binance_only(fake_binance: FakeBinance, rest: FakeOpenInterest, **more: Any) -> Settings:
    """Binance's look-alikes for liquidations, mark prices and open interest, nothing else."""
    return Settings(
        binance_ws_url=fake_binance.base_url,
        binance_rest_url=rest.url,
        symbols=("BTCUSDT",),
        exchanges=BINANCE,
        flush_ms=20,
        **more,
    )


async def rest_levels(client: httpx.AsyncClient, http: str, **params: str) -> dict[str, Any]:
    response = await client.get(f"{http}/api/heatmap/predicted/btcusdt", params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def drive_open_interest(
    fake: FakeBinance, rest: FakeOpenInterest, client: ClientLevels
) -> None:
    """Mark price at 60,000, open interest 1,000 then 1,010: levels open; the price falls
    to 59,650: the 100x long level (near 59,700) is consumed."""
    rest.open_interest["BTCUSDT"] = 1_000.0
    await fake.wait_for_subscription(MARK)

    async def priced() -> bool:
        await fake.push_stream(MARK, mark(60_000.0))
        return client.state is not None and client.state["reference_price"] == 60_000.0

    await eventually(priced, seen=lambda: client.state)
    baseline = len(rest.requests)
    await eventually(lambda: len(rest.requests) > baseline + 1)  # polled with a price known
    rest.open_interest["BTCUSDT"] = 1_010.0
    await eventually(lambda: len(client.levels()) == 8, seen=lambda: client.levels())
    notional = sum(level["notional"] for level in client.levels())
    assert notional == pytest.approx(10 * 60_000.0, rel=1e-3)
    for level in client.levels():
        assert (level["price"] < 60_000.0) == (level["side"] == "long"), level
    await fake.push_stream(MARK, mark(59_650.0))
    await eventually(lambda: client.consumed() != [], seen=lambda: client.state)
    [consumed] = client.consumed()
    assert (consumed["side"], consumed["leverage"]) == ("long", 100.0)
    assert all(level["leverage"] != 100.0 or level["side"] == "short" for level in client.levels())


async def check_levels_over_time(
    client: httpx.AsyncClient, http: str, levels: ClientLevels
) -> None:
    """`GET .../predicted/{symbol}/timeline` holds each level the channel holds, in the
    buckets from its `opened` to its `consumed` (or the last one while it is open)."""
    response = await client.get(
        f"{http}/api/heatmap/predicted/BTCUSDT/timeline",
        params={"timeWindow": "5m", "buckets": "300"},
    )
    assert response.status_code == 200, response.text
    body = response.json()["data"]
    times, axis = body["times"], body["prices"]
    assert len(times) == len(body["long"]) == len(body["short"]) == 300
    assert body["levels"] == len(levels.levels()) + len(levels.consumed())

    def bucket(time: int) -> int:  # before the window: the first
        return max([0, *(i for i, start in enumerate(times) if start <= time)])

    def column(level: dict[str, Any]) -> list[float]:
        j = round((level["price"] - axis["start"]) / axis["step"])
        return [row[j] for row in body[level["side"]]]

    [crossed] = levels.consumed()
    assert crossed["opened"] < crossed["consumed"]
    cells = column(crossed)
    first, last = bucket(crossed["opened"]), bucket(crossed["consumed"])
    assert all(v >= crossed["notional"] for v in cells[first : last + 1]), cells
    assert not any(cells[last + 1 :]), f"the consumed level goes on after bucket {last}: {cells}"
    for level in levels.levels():
        cells = column(level)
        assert cells[-1] >= level["notional"] and not any(cells[: bucket(level["opened"])])


async def test_open_interest_and_mark_price_reach_the_channel_and_rest(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    async with FakeOpenInterest() as rest:
        running = await start_hub(
            binance_only(fake_binance, rest), open_interest=True, oi_poll_interval=0.2
        )
        async with subscribed(running.ws) as client:
            await eventually(lambda: client.state is not None)
            await drive_open_interest(fake_binance, rest, client)
            await eventually(
                lambda: running.hub.fanout.predicted(CHANNEL).seq == client.state["seq"]  # type: ignore[union-attr, index]
            )
            body = await rest_levels(running.client, running.http, timeWindow="5m")
            assert body["levels"] == client.levels()
            assert body["consumed"] == client.consumed()
            assert body["reference_price"] == 60_000.0
            assert body["model"]["parameters"]["maintenance_margin"] == 0.005
            assert body["validation"]["liquidations"] == 0
            # the mark price rides the channel, at most once a second
            await eventually(
                lambda: (client.state or {}).get("mark", {}).get("price") == 59_650.0,
                seen=lambda: client.state,
            )
            assert client.state is not None and client.state["mark"]["exchange"] == "binance"
            await check_levels_over_time(running.client, running.http, client)
        source = (await running.get("/api/heatmap/status")).json()["data"]["sources"]
        assert source["open_interest"]["connected"] is True
        assert source["open_interest"]["messages"] >= 3
        assert source["open_interest"]["last_error"] is None


async def test_bybit_and_okx_open_interest_rises_open_levels(
    start_hub: HubFactory, fake_binance: FakeBinance, fake_bybit: FakeBybit, fake_okx: FakeOkx
) -> None:
    """Without Binance: Bybit's tickers give the mark price and open interest, OKX's
    open interest (which has no price) is priced at it; each exchange's rise opens levels."""
    settings = all_exchanges(
        fake_binance, fake_bybit, fake_okx, symbols=("BTCUSDT",), exchanges=("bybit", "okx")
    )
    running = await start_hub(settings, open_interest=True)
    await fake_bybit.wait_for_subscription("tickers.BTCUSDT")
    await fake_okx.wait_for_subscription("open-interest:BTC-USDT-SWAP")
    book = running.hub.ingest.predicted.book("BTCUSDT")
    assert book is not None, "BTCUSDT is tracked"
    t0 = int(time.time() * 1000)

    async def total(expected: float) -> bool:
        await running.hub.flush_now()
        levels = (await rest_levels(running.client, running.http))["levels"]
        return sum(level["notional"] for level in levels) == pytest.approx(expected, rel=1e-3)

    await fake_bybit.push_ticker("BTCUSDT", "snapshot", t0, markPrice="60000", openInterest="1000")
    await eventually(lambda: book.price == 60_000.0, seen=lambda: book.price)
    await fake_okx.push_open_interest("BTC-USDT-SWAP", 500.0, 60_000.0, t0)
    await eventually(lambda: "okx" in book.intervals, seen=lambda: book.intervals)
    await fake_okx.push_open_interest("BTC-USDT-SWAP", 505.0, 60_000.0, t0 + 1)
    await eventually(lambda: total(5 * 60_000.0))  # OKX's 5 BTC at Bybit's mark price
    await fake_bybit.push_ticker("BTCUSDT", "delta", t0 + 2, openInterest="1010")
    await eventually(lambda: total(15 * 60_000.0))  # a delta with open interest alone

    source = (await running.get("/api/heatmap/status")).json()["data"]["sources"]
    assert source["open_interest"]["exchanges"] == ["bybit", "okx"]
    assert source["open_interest"]["connected"] is True
    assert source["bybit"]["messages"] >= 2 and source["okx"]["messages"] >= 2
    assert source["bybit"]["ignored"] == 0 and source["okx"]["ignored"] == 0


async def test_okx_alone_gives_the_mark_price_for_its_levels_and_candles(
    start_hub: HubFactory, fake_binance: FakeBinance, fake_bybit: FakeBybit, fake_okx: FakeOkx
) -> None:
    settings = all_exchanges(
        fake_binance, fake_bybit, fake_okx, symbols=("BTCUSDT",), exchanges=("okx",)
    )
    running = await start_hub(settings, open_interest=True)
    await fake_okx.wait_for_subscription("mark-price:BTC-USDT-SWAP")
    t0 = int(time.time() * 1000)
    await fake_okx.push_mark_price("BTC-USDT-SWAP", "60000", t0)
    await fake_okx.push_open_interest("BTC-USDT-SWAP", 500.0, 60_000.0, t0)
    await fake_okx.push_open_interest("BTC-USDT-SWAP", 505.0, 60_000.0, t0 + 1)
    await fake_okx.push_mark_price("BTC-USDT-SWAP", "60100.5", t0 + 2)

    async def priced() -> bool:
        await running.hub.flush_now()
        levels = (await rest_levels(running.client, running.http))["levels"]
        return sum(level["notional"] for level in levels) == pytest.approx(5 * 60_000.0, rel=1e-3)

    await eventually(priced)
    timeline = (await running.get("/api/heatmap/liquidations/BTCUSDT/timeline")).json()["data"]
    candles = [c for c in timeline["candles"] if c is not None]  # one, or two across a minute
    joined = (
        candles[0][1],
        max(c[2] for c in candles),
        min(c[3] for c in candles),
        candles[-1][4],
    )
    assert joined == (60_000.0, 60_100.5, 60_000.0, 60_100.5), timeline["candles"]


async def test_a_liquidation_at_an_open_level_counts_in_validation(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    async with FakeOpenInterest() as rest:
        running = await start_hub(
            binance_only(fake_binance, rest), open_interest=True, oi_poll_interval=0.2
        )
        async with subscribed(running.ws) as client:
            await eventually(lambda: client.state is not None)
            await drive_open_interest(fake_binance, rest, client)
            level = client.consumed()[0]["price"]
            await fake_binance.push(force_order("BTCUSDT", "SELL", f"{level + 5:.2f}", "1.000"))
            far = next(
                lv for lv in client.levels() if lv["side"] == "short" and lv["leverage"] == 10
            )
            await fake_binance.push(
                force_order("BTCUSDT", "BUY", f"{far['price'] - 2000:.2f}", "1.000")
            )

            async def scored() -> bool:
                await running.hub.flush_now()
                body = await rest_levels(running.client, running.http, k="0")
                return body["validation"]["liquidations"] == 2

            await eventually(scored)
            validation = (await rest_levels(running.client, running.http, k="0"))["validation"]
            assert validation["hit_notional"] == pytest.approx(level + 5, rel=1e-6)
            assert validation["k"] == 0 and validation["draws"] == 200


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/api/heatmap/predicted/DOGEUSDT", 404, "not tracked"),
        ("/api/heatmap/predicted/BTCUSDT?timeWindow=2h", 400, "timeWindow"),
        ("/api/heatmap/predicted/BTCUSDT?k=-1", 400, "k: must be between"),
        ("/api/heatmap/predicted/BTCUSDT?k=x", 400, "k: 'x' is not an integer"),
    ],
)
async def test_bad_requests_get_clear_errors(
    start_hub: HubFactory, fake_binance: FakeBinance, path: str, status: int, error: str
) -> None:
    running = await start_hub(
        Settings(binance_ws_url=fake_binance.base_url, symbols=("BTCUSDT",), exchanges=BINANCE)
    )
    await eventually(lambda: running.hub.fanout.predicted(CHANNEL) is not None)
    response = await running.client.get(f"{running.http}{path}")
    assert response.status_code == status, response.text
    assert error in response.json()["error"]


async def test_predicted_channels_name_one_tracked_symbol(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await start_hub(
        Settings(binance_ws_url=fake_binance.base_url, symbols=("BTCUSDT",), exchanges=BINANCE)
    )
    async with connect(running.ws) as ws:
        for id_, channel, code in ((1, "predicted:*", "bad_channel"),
                                   (2, "predicted:DOGEUSDT", "unknown_symbol"),
                                   (3, "predicted:BTCUSDT:1h", "bad_channel")):  # fmt: skip
            await ws.send(json.dumps({"op": "subscribe", "id": id_, "channels": [channel]}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 15))
            assert (reply["op"], reply["id"], reply["code"]) == ("error", id_, code), reply


async def test_a_replayed_session_gives_levels_and_a_validation(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    # about twelve minutes of the demo: liquidations, open interest and mark prices
    lines = read_replays([DEMO_REPLAY, DATA / "demo_oi.jsonl"])[:6_000]
    replay = tmp_path / "session.jsonl"
    with replay.open("wb") as out:
        for line in lines:
            head = {"t": line.t, "source": line.source}
            if line.rest is not None:
                head["rest"] = line.rest
            out.write(json.dumps(head)[:-1].encode() + b',"raw":' + bytes(line.raw) + b"}\n")
    running = await start_hub(Settings(flush_ms=20), replay=replay, speed=0)
    await eventually(lambda: running.hub.feed.status.frames == len(lines))
    await running.hub.flush_now()

    async def ready() -> bool:
        body = await rest_levels(running.client, running.http, timeWindow="1h")
        return bool(body["levels"]) and body["validation"]["liquidations"] > 0

    await eventually(ready)
    body = await rest_levels(running.client, running.http, timeWindow="1h")
    validation = body["validation"]
    assert 0 <= validation["hit_share"] <= 1 and 0 <= validation["baseline_share"] <= 1
    assert validation["covered_share"] > 0.5
    assert body["consumed"], "twelve minutes of falling prices cross some levels"
    unified = (await running.get("/api/heatmap/unified/BTCUSDT")).json()["data"]
    reference = body["reference_price"]
    nearest = sorted(abs(level["price"] - reference) for level in body["levels"])[:10]
    assert [abs(level["price"] - reference) for level in unified["predicted"]] == nearest, (
        f"unified should list the 10 open levels nearest {reference}: {unified['predicted']}"
    )


async def test_levels_reach_a_web_process_over_redis(
    start_hub: HubFactory, fake_binance: FakeBinance, redis_server: RedisServer
) -> None:
    async with FakeOpenInterest() as rest:
        settings = binance_only(fake_binance, rest, redis_url=redis_server.url)
        # `serve` with REDIS_URL is an ingest publishing to Redis (plus its own fan-out)
        await start_hub(settings, open_interest=True, oi_poll_interval=0.2)
        async with web_process(settings) as web:

            async def subscribable() -> bool:
                async with connect(web.ws) as ws:
                    await ws.send(json.dumps({"op": "subscribe", "id": 1, "channels": [CHANNEL]}))
                    return json.loads(await asyncio.wait_for(ws.recv(), 15))["op"] == "subscribed"

            await eventually(subscribable)
            async with subscribed(web.ws) as client:
                await eventually(lambda: client.state is not None)
                await drive_open_interest(fake_binance, rest, client)
                http = web.http
                async with http_client() as rest_client:

                    async def same_as_the_socket() -> bool:
                        body = await rest_levels(rest_client, http)
                        assert client.state is not None
                        return body["seq"] == client.state["seq"] and (
                            body["levels"],
                            body["consumed"],
                        ) == (client.levels(), client.consumed())

                    await eventually(same_as_the_socket)
                    await check_levels_over_time(rest_client, http, client)


def test_sources_are_built_for_live_only() -> None:
    hub = ServeHub(Settings(), Source(timing=FAST_TIMING, backoff=fast_backoff()))
    assert hub.ingest.open_interest is not None
    replayed = ServeHub(Settings(), Source(demo=True))
    assert replayed.ingest.open_interest is None
