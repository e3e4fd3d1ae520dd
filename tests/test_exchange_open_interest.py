"""Bybit `tickers` and OKX `open-interest` and `mark-price` on the liquidation connections,
against the look-alikes sending the documented frames: subscribed per tracked symbol,
following symbols added and removed, normalized to base-coin open interest (Bybit's deltas
merged onto the last values) and mark prices, counted on the exchange's own status, and
recorded so that a replay hands the same updates to the market sink; the same for the
frames of the added exchanges that carry open interest (Bitget, Gate, Deribit, BitMEX).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.feeds.base import Feed, MarketUpdate
from hub.feeds.bybit import BybitFeed
from hub.feeds.okx import OkxLiquidationFeed
from hub.feeds.replay import Recorder, ReplayFeed, read_replay
from hub.models import LiquidationEvent, MarkPriceUpdate, OpenInterestUpdate
from hub.tasks import cancel_and_wait
from tests.conftest import FAST_TIMING, eventually, fast_backoff
from tests.fakes.bybit_server import FakeBybit
from tests.fakes.okx_server import SUBSCRIPTION, FakeOkx


@contextlib.asynccontextmanager
async def running(feed: Feed, source: str, out: io.BytesIO) -> AsyncIterator[None]:
    recorder = Recorder(out, source)
    feed.add_frame_listener(recorder)
    feed.add_rest_listener(recorder.rest)
    task = asyncio.create_task(feed.run())
    try:
        yield
    finally:
        await cancel_and_wait([task])


async def replayed(out: io.BytesIO, tmp_path: Path) -> tuple[list[MarketUpdate], ReplayFeed]:
    """What a replay of the recording hands to the market sink."""
    path = tmp_path / "recorded.jsonl"
    path.write_bytes(out.getvalue())
    market: list[MarketUpdate] = []
    events: list[LiquidationEvent] = []
    feed = ReplayFeed(read_replay(path), events.append, speed=0, market_sink=market.append)
    await feed.run()
    assert events == [], "no liquidation was recorded"
    return market, feed


def oi(update: MarketUpdate) -> float | None:
    return update.oi if isinstance(update, OpenInterestUpdate) else None


async def test_bybit_tickers_are_open_interest_and_mark_prices_with_deltas_merged(
    fake_bybit: FakeBybit, tmp_path: Path
) -> None:
    market: list[MarketUpdate] = []
    feed = BybitFeed(
        fake_bybit.ws_url,
        fake_bybit.rest_url,
        {"BTCUSDT"},
        lambda event: None,
        FAST_TIMING,
        fast_backoff(),
        market_sink=market.append,
    )
    out = io.BytesIO()
    async with running(feed, "bybit", out):
        await fake_bybit.wait_for_subscription("tickers.BTCUSDT")
        await fake_bybit.wait_for_subscription("allLiquidation.BTCUSDT")
        await fake_bybit.push_ticker("BTCUSDT", "snapshot")
        await fake_bybit.push_ticker("BTCUSDT", "delta", markPrice="17300.5")
        await fake_bybit.push_ticker("BTCUSDT", "delta", openInterest="68800.5")
        await fake_bybit.push_ticker("BTCUSDT", "delta", bid1Price="17299")
        await eventually(lambda: len(market) == 4, seen=lambda: market)
        assert [type(u).__name__ for u in market] == [
            "MarkPriceUpdate", "OpenInterestUpdate", "MarkPriceUpdate", "OpenInterestUpdate"
        ]  # fmt: skip
        assert {(u.exchange, u.symbol) for u in market} == {("bybit", "BTCUSDT")}
        # openInterest is base coin, as is; a delta's open interest takes the last mark price
        assert [(oi(u), u.price) for u in market] == [
            (None, 17217.33), (68744.761, 17217.33), (None, 17300.5), (68800.5, 17300.5)
        ]  # fmt: skip
        await eventually(lambda: feed.status.frames >= 4)
        assert feed.status.ignored == 0 and feed.status.malformed == 0
        assert feed.status.events == 0  # liquidations only

        await feed.add_symbols({"ETHUSDT"})
        await fake_bybit.wait_for_subscription("tickers.ETHUSDT")
        await feed.remove_symbols({"BTCUSDT"})
        await eventually(lambda: not fake_bybit.subscribed("tickers.BTCUSDT"))
        await eventually(lambda: not fake_bybit.subscribed("allLiquidation.BTCUSDT"))

    again, replay = await replayed(out, tmp_path)
    assert again == market
    assert replay.sources["bybit"].ignored == 0 and replay.sources["bybit"].anomalies == {}


async def test_a_bybit_feed_without_a_market_sink_subscribes_no_tickers(
    fake_bybit: FakeBybit,
) -> None:
    feed = BybitFeed(fake_bybit.ws_url, fake_bybit.rest_url, {"BTCUSDT"}, lambda event: None)
    async with running(feed, "bybit", io.BytesIO()):
        await fake_bybit.wait_for_subscription("allLiquidation.BTCUSDT")
        await eventually(lambda: bool(fake_bybit.connections[0].requests))
        assert fake_bybit.connections[0].subscriptions == {"allLiquidation.BTCUSDT"}


async def test_okx_open_interest_is_subscribed_per_listed_swap_in_base_coin(
    fake_okx: FakeOkx, tmp_path: Path
) -> None:
    market: list[MarketUpdate] = []
    feed = OkxLiquidationFeed(
        fake_okx.ws_url,
        fake_okx.rest_url,
        {"BTCUSDT", "XRPUSDT"},  # OKX's look-alike lists no XRP swap
        lambda event: None,
        FAST_TIMING,
        fast_backoff(),
        market_sink=market.append,
    )
    out = io.BytesIO()
    async with running(feed, "okx", out):
        await fake_okx.wait_for_subscription("open-interest:BTC-USDT-SWAP")
        await fake_okx.wait_for_subscription(SUBSCRIPTION)
        assert feed.status.last_error is None  # the unlisted swap was never asked for
        assert feed.status.unlisted == ["XRPUSDT"]
        await fake_okx.push_open_interest("BTC-USDT-SWAP", 22_161.13, 60_000.0)
        await eventually(lambda: len(market) == 1, seen=lambda: market)
        [update] = market
        assert isinstance(update, OpenInterestUpdate)
        # oiCcy (base coin), not oi (contracts: 100 times as many at ctVal 0.01)
        assert (update.exchange, update.symbol, update.oi) == ("okx", "BTCUSDT", 22_161.13)
        assert update.price is None  # the channel has none: the levels use the mark price
        assert feed.status.ignored == 0 and feed.status.malformed == 0

        await feed.add_symbols({"ETHUSDT"})
        await fake_okx.wait_for_subscription("open-interest:ETH-USDT-SWAP")
        await fake_okx.push_open_interest("ETH-USDT-SWAP", 500.5, 3_000.0)
        await eventually(lambda: len(market) == 2, seen=lambda: market)
        assert (market[1].symbol, oi(market[1])) == ("ETHUSDT", 500.5)
        # the mark price, on the same connection
        await fake_okx.wait_for_subscription("mark-price:BTC-USDT-SWAP")
        await fake_okx.push_mark_price("BTC-USDT-SWAP", "60012.5", 1_800_000_000_000)
        await eventually(lambda: len(market) == 3, seen=lambda: market)
        assert market[2] == MarkPriceUpdate("okx", "BTCUSDT", 1_800_000_000_000, 60_012.5)
        await feed.remove_symbols({"BTCUSDT"})
        await eventually(lambda: not fake_okx.subscribed("open-interest:BTC-USDT-SWAP"))
        assert not fake_okx.subscribed("mark-price:BTC-USDT-SWAP")
        assert fake_okx.subscribed(SUBSCRIPTION)  # liquidations of every swap stay

    again, replay = await replayed(out, tmp_path)
    assert again == market
    assert replay.sources["okx"].ignored == 0 and replay.sources["okx"].anomalies == {}


@pytest.mark.parametrize("exchange", ["bybit", "okx"])
async def test_a_replay_hands_tickers_to_the_market_sink_of_tracked_symbols_only(
    exchange: str, tmp_path: Path
) -> None:
    frames = {
        "bybit": b'{"topic":"tickers.ETHUSDT","type":"snapshot","ts":5,'
        b'"data":{"symbol":"ETHUSDT","markPrice":"3000","openInterest":"10"}}',
        "okx": b'{"arg":{"channel":"open-interest","instId":"ETH-USDT-SWAP"},'
        b'"data":[{"instId":"ETH-USDT-SWAP","oi":"100","oiCcy":"10","ts":"5"}]}',
    }
    path = tmp_path / "one.jsonl"
    path.write_bytes(b'{"t":5,"source":"%s","raw":%s}\n' % (exchange.encode(), frames[exchange]))
    market: list[MarketUpdate] = []
    feed = ReplayFeed(read_replay(path), lambda e: None, speed=0, market_sink=market.append)
    await feed.run()
    assert [oi(u) for u in market if isinstance(u, OpenInterestUpdate)] == [10.0]
    assert all(u.exchange == exchange and u.time == 5 for u in market)
    assert feed.sources[exchange].ignored == 0
    skipped = ReplayFeed(
        read_replay(path), lambda e: None, speed=0, symbols={"BTCUSDT"}, market_sink=market.append
    )
    await skipped.run()
    assert len(market) == (2 if exchange == "bybit" else 1)  # ETHUSDT is not tracked
    assert not any(isinstance(u, MarkPriceUpdate) and u.exchange == "okx" for u in market)


ADDED_OPEN_INTEREST = {
    # exchange: (REST lines before, the frame, open interest in base coin, mark price)
    "bitget": (
        [],
        b'{"arg":{"instType":"usdt-futures","topic":"ticker","symbol":"ETHUSDT"},'
        b'"action":"snapshot","ts":5,"data":[{"markPrice":"3000","openInterest":"10"}]}',
        10.0,
        3000.0,
    ),
    "gate": (
        [(b"/api/v4/futures/usdt/contracts", b'[{"name":"ETH_USDT","quanto_multiplier":"0.01"}]')],
        b'{"time":5,"time_ms":5000,"channel":"futures.contract_stats","event":"update",'
        b'"result":[{"time":5,"contract":"ETH_USDT","open_interest":1000,"mark_price":"3000"}]}',
        10.0,
        3000.0,
    ),
    "deribit": (
        [],
        b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":'
        b'"incremental_ticker.ETH-PERPETUAL","data":{"type":"snapshot","instrument_name":'
        b'"ETH-PERPETUAL","timestamp":5,"mark_price":3000,"open_interest":30000}}}',
        10.0,
        3000.0,
    ),
    "bitmex": (
        [(b"/api/v1/instrument/active",
          b'[{"symbol":"ETHUSDT","rootSymbol":"ETH","quoteCurrency":"USDT","typ":"FFWCSX",'
          b'"underlyingToPositionMultiplier":100000}]')],
        b'{"table":"instrument","action":"partial","data":[{"symbol":"ETHUSDT",'
        b'"timestamp":"1970-01-01T00:00:00.005Z","markPrice":3000,"openInterest":1000000}]}',
        10.0,
        3000.0,
    ),
}  # fmt: skip


@pytest.mark.parametrize("exchange", sorted(ADDED_OPEN_INTEREST))
async def test_a_replay_of_the_added_exchanges_hands_their_open_interest_on(
    exchange: str, tmp_path: Path
) -> None:
    rest, frame, oi, mark = ADDED_OPEN_INTEREST[exchange]
    source = exchange.encode()
    lines = [b'{"t":1,"source":"%s","rest":"%s","raw":%s}' % (source, p, b) for p, b in rest]
    lines.append(b'{"t":5,"source":"%s","raw":%s}' % (source, frame))
    path = tmp_path / "one.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    market: list[MarketUpdate] = []
    feed = ReplayFeed(read_replay(path), lambda e: None, speed=0, market_sink=market.append)
    await feed.run()
    [update] = [u for u in market if isinstance(u, OpenInterestUpdate)]
    at = 5_000 if exchange == "gate" else 5  # Gate's contract_stats time is in seconds
    assert (update.exchange, update.symbol, update.time) == (exchange, "ETHUSDT", at)
    assert (update.oi, update.price) == (pytest.approx(oi), mark)
    assert feed.sources[exchange].anomalies == {} and feed.status.anomalies == {}
