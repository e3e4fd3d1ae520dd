"""Replays of every source: the bundled eight-exchange demo, laps that start where the
last ended, REST lines, and `record` writing all configured exchanges into one file."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import signal
import sys
from bisect import bisect_left
from collections import defaultdict
from pathlib import Path

import pytest

from hub.config import EXCHANGES as ALL_EXCHANGES
from hub.feeds.replay import Recorder, ReplayFeed, ReplayLine, read_replay, read_replays
from hub.models import LiquidationEvent
from hub.service.sources import demo_files
from tests.conftest import eventually, free_port
from tests.fakes.binance_server import FakeBinance, force_order
from tests.fakes.bybit_server import FakeBybit, liquidation
from tests.fakes.okx_server import SUBSCRIPTION, FakeOkx, detail, push_frame

ROOT = Path(__file__).resolve().parent.parent
EXCHANGES = ("binance", "bybit", "okx")
INSTRUMENTS = "/api/v5/public/instruments?instType=SWAP"


def linear_instrument(inst_id: str, contract_value: str) -> dict[str, str]:
    return {"instId": inst_id, "ctVal": contract_value, "ctType": "linear"}


async def play(feed: ReplayFeed) -> None:
    await asyncio.wait_for(feed.run(), 30)


def lines_of(*rows: dict) -> list[ReplayLine]:
    return [ReplayLine(**{**row, "raw": json.dumps(row["raw"]).encode()}) for row in rows]


async def test_the_demo_holds_eight_exchanges_at_the_binance_prices() -> None:
    assert {p.name for p in demo_files()} >= {
        "demo_session.jsonl", "demo_bybit.jsonl", "demo_okx.jsonl", "demo_bitget.jsonl",
        "demo_gate.jsonl", "demo_htx.jsonl", "demo_deribit.jsonl", "demo_bitmex.jsonl",
    }  # fmt: skip
    lines = read_replays(demo_files())
    assert [line.t for line in lines] == sorted(line.t for line in lines)
    events: list[LiquidationEvent] = []
    feed = ReplayFeed(lines, events.append, speed=0)
    await play(feed)
    for exchange in ALL_EXCHANGES:
        source = feed.sources[exchange]
        assert not source.anomalies and not source.duplicates, source

    by_exchange: dict[str, list[LiquidationEvent]] = defaultdict(list)
    for event in events:
        by_exchange[event.exchange].append(event)
    assert set(by_exchange) == set(ALL_EXCHANGES)
    path: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for event in by_exchange["binance"]:
        path[event.symbol].append((event.time, event.price))
    for points in path.values():
        points.sort()
    for exchange in ALL_EXCHANGES[1:]:
        symbols = {e.symbol for e in by_exchange[exchange]}
        # Deribit has inverse perpetuals of BTC and ETH only, BitMEX lists no ADA or BNB
        assert symbols == set(path) or exchange in ("deribit", "bitmex"), (exchange, symbols)
        assert {"BTCUSDT", "ETHUSDT"} <= symbols <= set(path), exchange
        for event in by_exchange[exchange]:
            points = path[event.symbol]
            index = min(bisect_left(points, (event.time, 0.0)), len(points) - 1)
            near = points[index][1]
            assert abs(event.price / near - 1) < 0.03, (exchange, event, near)
    shares = {x: sum(e.notional for e in by_exchange[x]) / 1e6 for x in ALL_EXCHANGES}
    total = sum(shares.values())
    assert all(0.1 < shares[x] / total < 0.6 for x in EXCHANGES), shares  # the first three
    assert all(0.01 < shares[x] / total < 0.15 for x in ALL_EXCHANGES[3:]), shares


def binance_line(t: int, symbol: str, price: float) -> dict:
    order = force_order(symbol, "SELL", f"{price:.2f}", "1.000", trade_time=t)
    return {"t": t + 10, "source": "binance", "raw": {"stream": "x@forceOrder", "data": order}}


async def test_each_lap_starts_where_the_last_ended_and_prices_stay_in_range() -> None:
    rows = []
    for i in range(5):  # BTC rises 100 -> 110, ETH falls 50 -> 45
        rows.append(binance_line(1_000 + i * 100, "BTCUSDT", 100 + 2.5 * i))
        rows.append(binance_line(1_050 + i * 100, "ETHUSDT", 50 - 1.25 * i))
    events: list[LiquidationEvent] = []
    feed = ReplayFeed(lines_of(*rows), events.append, speed=1000, loop=True, shift_to_now=True)
    task = asyncio.create_task(feed.run())
    try:
        await eventually(lambda: feed.lap >= 4)  # the backfill and three live laps
    finally:
        task.cancel()
    for symbol, first, last in (("BTCUSDT", 100.0, 110.0), ("ETHUSDT", 50.0, 45.0)):
        mine = [e for e in events if e.symbol == symbol]
        laps = [mine[i : i + 5] for i in range(0, 20, 5)]
        for previous, following in itertools.pairwise(laps):
            assert following[0].price == pytest.approx(previous[-1].price), (symbol, laps)
        # An odd lap plays the path mirrored, back to where the session began; the next
        # plays it again as recorded: no drift, however long the demo runs.
        assert [laps[1][0].price, laps[1][-1].price] == pytest.approx([last, first])
        assert [e.price for e in laps[2]] == pytest.approx([e.price for e in laps[0]])
        assert {e.side for e in laps[1]} == {"short"} and {e.side for e in laps[0]} == {"long"}
        notionals = [e.notional for e in mine]
        assert notionals[5:10] == pytest.approx(notionals[:5])  # sizes scale the other way
        times = [e.time for e in mine]
        assert times == sorted(times), "the laps follow each other in time"


def okx_line(t: int, channel: str, raw: dict) -> dict:
    return {
        "t": t,
        "source": "okx",
        "raw": {"arg": {"channel": channel, "instId": "BTC-USDT-SWAP"}, **raw},
    }


async def test_an_odd_lap_mirrors_the_order_book_and_trades_with_the_liquidations() -> None:
    book = {
        "ts": "1",
        "checksum": 0,
        "bids": [["104", "3", "0", "1"]],
        "asks": [["105", "2", "0", "1"]],
    }
    trade = {"instId": "BTC-USDT-SWAP", "px": "105", "sz": "4", "side": "buy", "ts": "1"}
    rows = [
        binance_line(1_000, "BTCUSDT", 100.0),
        okx_line(1_100, "books", {"action": "snapshot", "data": [book]}),
        okx_line(1_200, "trades", {"data": [trade]}),
        binance_line(1_300, "BTCUSDT", 110.0),
    ]
    seen: list[tuple[int, ReplayLine]] = []
    feed = ReplayFeed(
        lines_of(*rows), lambda e: None, speed=1000, loop=True, shift_to_now=True,
        line_sinks={"okx": lambda line: seen.append((feed.lap, line))},
    )  # fmt: skip
    task = asyncio.create_task(feed.run())
    try:
        await eventually(lambda: any(lap == 2 for lap, _ in seen), seen=lambda: seen)
    finally:
        task.cancel()
    by_lap = defaultdict(list)
    for lap, line in seen:
        by_lap[lap].append(json.loads(bytes(line.raw)))
    # lap 1 plays p as 100 * 110 / p: the bid at 104 becomes an ask at 105.769..., the
    # taker buy at 105 a taker sell at 104.761..., notionals as recorded
    snapshot, trades = by_lap[1]
    mirrored = snapshot["data"][0]
    assert [float(x) for x in mirrored["asks"][0][:2]] == pytest.approx(
        [11000 / 104, 3 * 104 / (11000 / 104)], rel=1e-5
    ), mirrored
    assert [float(x) for x in mirrored["bids"][0][:2]] == pytest.approx(
        [11000 / 105, 2 * 105 / (11000 / 105)], rel=1e-5
    ), mirrored
    assert snapshot["action"] == "snapshot"
    (sold,) = trades["data"]
    assert (sold["side"], float(sold["px"])) == ("sell", pytest.approx(11000 / 105, rel=1e-5)), sold
    assert float(sold["sz"]) * float(sold["px"]) == pytest.approx(4 * 105, rel=1e-5), sold
    assert by_lap[2] == by_lap[0], "an even lap plays the book as recorded"


async def test_the_demo_carries_its_timeline_on_from_a_kept_state() -> None:
    rows = [binance_line(1_000 + i * 100, "BTCUSDT", 100.0 + i) for i in range(5)]
    lines = lines_of(*rows)
    first = ReplayFeed(lines, lambda e: None, speed=1, loop=True, shift_to_now=True)
    assert first.timeline is not None
    state = first.state()
    now = first.timeline.origin + 10 * first.timeline.period + 123
    newest = now - 250
    events: list[LiquidationEvent] = []
    again = ReplayFeed(lines, events.append, speed=1, loop=True, shift_to_now=True)
    again.resume(state, newest, now)
    assert again.timeline is not None
    assert again.timeline.origin == first.timeline.origin
    assert again.covers_from(now) == newest + 1, "it lays only what came after its history"
    stale = ReplayFeed(lines, lambda e: None, speed=1, loop=True, shift_to_now=True)
    stale.resume(state, now - 5 * stale.timeline.period, now)  # type: ignore[union-attr]
    assert stale.covers_from(now) == now - stale.timeline.period, "at most one lap back"  # type: ignore[union-attr]


async def test_rest_lines_unconfigured_exchanges_and_unknown_sources() -> None:
    t = 1_000
    push = push_frame("BTC-USDT-SWAP", [detail("buy", "7", "60000", t)])
    instruments = {"code": "0", "msg": "", "data": [linear_instrument("BTC-USDT-SWAP", "0.01")]}
    bybit = {
        "topic": "allLiquidation.BTCUSDT",
        "type": "snapshot",
        "ts": t,
        "data": [liquidation("BTCUSDT", "Buy", "1", "60000", t)],
    }
    rows = [
        {"t": t, "source": "okx", "rest": INSTRUMENTS, "raw": instruments},
        {"t": t + 1, "source": "okx", "raw": push},
        {"t": t + 2, "source": "bybit", "raw": bybit},
        {"t": t + 3, "source": "kraken", "raw": {"x": 1}},
    ]  # fmt: skip
    events: list[LiquidationEvent] = []
    feed = ReplayFeed(lines_of(*rows), events.append, speed=0, exchanges=("binance", "okx"))
    await play(feed)
    [event] = events
    assert (event.exchange, event.side, event.quantity) == ("okx", "short", pytest.approx(0.07))
    assert set(feed.sources) == {"okx"}
    assert feed.status.ignored == 1  # the Bybit line: a known exchange, not configured
    assert feed.status.anomalies == {"unknown_source:kraken": 1}


async def test_a_recorder_writes_frames_and_rest_bodies_that_replay_the_same(
    tmp_path: Path,
) -> None:
    out = io.BytesIO()
    recorder = Recorder(out, "okx")
    instruments = {"code": "0", "data": [linear_instrument("ETH-USDT-SWAP", "0.1")]}
    recorder.rest(5, INSTRUMENTS, json.dumps(instruments).encode())
    recorder(6, b"pong")  # keep-alive text is not a replay line
    push = push_frame("ETH-USDT-SWAP", [detail("sell", "3", "3000", 7)])
    recorder(7, json.dumps(push).encode())
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row.get("rest") for row in rows] == [INSTRUMENTS, None]
    path = tmp_path / "recorded.jsonl"
    path.write_bytes(out.getvalue())
    events: list[LiquidationEvent] = []
    await play(ReplayFeed(read_replay(path), events.append, speed=0))
    assert [(e.side, e.quantity) for e in events] == [("long", pytest.approx(0.3))]


async def test_record_writes_every_exchange_into_one_file(
    fake_binance: FakeBinance, fake_bybit: FakeBybit, fake_okx: FakeOkx, tmp_path: Path
) -> None:
    out = tmp_path / "all.jsonl"
    env = {
        **os.environ,
        "HEATMAP_SYMBOLS": "BTCUSDT",
        "BINANCE_WS_URL": fake_binance.base_url,
        "BYBIT_WS_URL": fake_bybit.ws_url,
        "BYBIT_REST_URL": fake_bybit.rest_url,
        "OKX_WS_URL": fake_okx.ws_url,
        "OKX_REST_URL": fake_okx.rest_url,
        "BINANCE_REST_URL": f"http://127.0.0.1:{free_port()}",  # open interest: nothing there
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub", "record", "--out", str(out), cwd=ROOT, env=env
    )
    try:
        await fake_binance.wait_for_subscription("btcusdt@forceOrder")
        await fake_bybit.wait_for_subscription("allLiquidation.BTCUSDT")
        await fake_okx.wait_for_subscription(SUBSCRIPTION)
        # one liquidation from each exchange, beside acks, pongs and market data
        await fake_binance.push(force_order("BTCUSDT", "SELL", "60000.0", "0.010"))
        await fake_bybit.push("BTCUSDT", [liquidation("BTCUSDT", "Sell", "0.5", "60010.0")])
        await fake_okx.push("BTC-USDT-SWAP", [detail("buy", "2", "60020.0")])

        def liquidations_recorded() -> set[str]:
            text = out.read_text() if out.exists() else ""
            marks = {"binance": "forceOrder", "bybit": "allLiquidation", "okx": "bkPx"}
            return {
                source
                for line in text.splitlines()
                for source, mark in marks.items()
                if mark in line and json.loads(line)["source"] == source
            }

        await eventually(
            lambda: liquidations_recorded() == set(EXCHANGES), seen=liquidations_recorded
        )
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {row["source"] for row in rows} == set(EXCHANGES)
    assert [row["rest"] for row in rows if "rest" in row] == [
        "/api/v5/public/instruments?instType=SWAP"
    ]
    events: list[LiquidationEvent] = []
    await play(ReplayFeed(read_replay(out), events.append, speed=0))
    assert sorted(e.exchange for e in events) == sorted(EXCHANGES)
