"""Each of the five added feeds against its look-alike: the subscriptions and REST calls
it makes, its exchange's own keep-alive (Bitget's and BitMEX's text ping, Gate's
futures.ping, HTX's GZIP op-pings, Deribit's heartbeat test requests), what a reconnect
sends again counted once, open interest on a market sink, and keep-alive answers never
counted as messages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hub.feeds.base import MarketUpdate
from hub.feeds.bitget import BitgetFeed
from hub.feeds.bitmex import BitmexFeed
from hub.feeds.connection import Timing
from hub.feeds.deribit import DeribitFeed
from hub.feeds.exchange import ExchangeFeed
from hub.feeds.gate import GateFeed
from hub.feeds.htx import HtxFeed
from hub.models import LiquidationEvent, MarkPriceUpdate, OpenInterestUpdate
from hub.tasks import cancel_and_wait
from tests.conftest import eventually, fast_backoff
from tests.fakes.bitget_server import FakeBitget, push_frame
from tests.fakes.bitget_server import row as bitget_row
from tests.fakes.bitmex_server import FakeBitmex, order
from tests.fakes.deribit_server import FakeDeribit, trade
from tests.fakes.exchange_server import FakeExchange
from tests.fakes.gate_server import FakeGate
from tests.fakes.gate_server import row as gate_row
from tests.fakes.htx_server import ALL, FakeHtx
from tests.fakes.htx_server import row as htx_row

# Fast keep-alive, but a watchdog that a loaded machine's pauses do not trip: these tests
# count reconnects and what they send again.
TIMING = Timing(ping_interval=0.1, watchdog_timeout=5.0, max_age=3600, open_timeout=5)


class Sinks:
    def __init__(self) -> None:
        self.events: list[LiquidationEvent] = []
        self.market: list[MarketUpdate] = []


def build(
    feed: type[ExchangeFeed], fake: FakeExchange, symbols: set[str] | None, sinks: Sinks,
    market: bool = False,
) -> Any:  # fmt: skip
    return feed(
        fake.ws_url, fake.rest_url, symbols, sinks.events.append, TIMING, fast_backoff(),
        market_sink=sinks.market.append if market else None,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def running(feed: ExchangeFeed) -> AsyncIterator[None]:
    task = asyncio.create_task(feed.run())
    try:
        yield
    finally:
        await cancel_and_wait([task])


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_bitget_liquidations_keep_alive_replays_and_tickers(fake_bitget: FakeBitget) -> None:
    sinks = Sinks()
    feed = build(BitgetFeed, fake_bitget, {"BTCUSDT", "ETHUSDT"}, sinks, market=True)
    async with running(feed):
        await fake_bitget.wait_for_subscription("liquidation:usdt-futures")
        await fake_bitget.wait_for_subscription("ticker:ETHUSDT")
        t = now_ms()
        rows = [bitget_row("BTCUSDT", "buy", "60000", "6000", t),
                bitget_row("XRPUSDT", "sell", "0.5", "50", t)]  # fmt: skip
        await fake_bitget.push(rows)
        await eventually(lambda: len(sinks.events) == 1, seen=lambda: sinks.events)
        [event] = sinks.events
        assert (event.side, event.quantity, event.time) == ("long", 0.1, t)
        await eventually(lambda: feed.status.ignored == 1)  # XRPUSDT is not tracked
        await eventually(lambda: fake_bitget.connections[0].pings >= 2)
        assert feed.status.frames <= 3, "acks and a push: no pong counted as a message"

        await fake_bitget.push_ticker("ETHUSDT", markPrice="3000.5", openInterest="120.5")
        await eventually(lambda: len(sinks.market) == 2, seen=lambda: sinks.market)
        assert sinks.market[1] == OpenInterestUpdate("bitget", "ETHUSDT", sinks.market[1].time,
                                                     120.5, 3000.5)  # fmt: skip

        fake_bitget.replay_on_subscribe = [push_frame(rows)]
        await fake_bitget.drop_all()
        await fake_bitget.wait_for_subscription("liquidation:usdt-futures")
        await fake_bitget.push([bitget_row("BTCUSDT", "sell", "60100", "601", t + 1)])
        await eventually(lambda: len(sinks.events) == 2, seen=lambda: sinks.events)
        assert sinks.events[1].side == "short" and feed.status.duplicates >= 1
        assert feed.status.reconnects >= 1


async def test_gate_contracts_first_then_every_contract_in_decimal_sizes(
    fake_gate: FakeGate,
) -> None:
    fake_gate.rest_status = 503
    sinks = Sinks()
    feed = build(GateFeed, fake_gate, {"BTCUSDT", "XRPUSDT"}, sinks, market=True)
    async with running(feed):
        await eventually(lambda: "contracts" in (feed.status.last_error or ""))
        assert not fake_gate.subscribed("liquidates:!all"), "no subscription without multipliers"
        fake_gate.rest_status = 200
        await fake_gate.wait_for_subscription("liquidates:!all")
        await fake_gate.wait_for_subscription("stats:BTC_USDT")
        assert feed.status.unlisted == ["XRPUSDT"]  # Gate lists no XRP_USDT here
        headers = fake_gate.connections[0].ws.request.headers  # type: ignore[union-attr]
        assert headers.get("X-Gate-Size-Decimal") == "1"

        t = now_ms()
        await fake_gate.push([gate_row("BTC_USDT", -12.5, 60000.0, t)])  # the live shape
        await fake_gate.push([gate_row("BTC_USDT", 30, 60010.0, t + 1),
                              gate_row("BTC_USDT", -7, 59990.0, t + 2)], shape="array")  # fmt: skip
        await eventually(lambda: len(sinks.events) == 3, seen=lambda: sinks.events)
        assert [(e.side, e.quantity) for e in sinks.events] == [
            ("long", pytest.approx(0.00125)), ("short", pytest.approx(0.003)),
            ("long", pytest.approx(0.0007)),
        ]  # fmt: skip
        await eventually(lambda: fake_gate.connections[0].pings >= 2)

        await fake_gate.push_stats("BTC_USDT", 52_000, "60005.5")
        await eventually(lambda: len(sinks.market) == 1)
        [update] = sinks.market
        assert isinstance(update, OpenInterestUpdate)
        assert (update.oi, update.price) == (pytest.approx(5.2), 60005.5)


async def test_htx_inflates_frames_answers_its_pings_and_polls_open_interest() -> None:
    async with FakeHtx(ping_every=0.05) as fake:
        fake.open_interest = {"BTC-USDT": (1500.0, 60000.0), "BTC-USDT-211203": (5.0, 1.0)}
        sinks = Sinks()
        feed = build(HtxFeed, fake, {"BTCUSDT"}, sinks, market=True)
        feed.open_interest_every_s = 0.1
        async with running(feed):
            await fake.wait_for_subscription(ALL)
            # HTX closes after five unanswered pings: six answered, and no close
            await eventually(lambda: fake.connections and fake.connections[0].pings >= 6)
            assert fake.closed_for_pongs == 0 and feed.status.reconnects == 0
            assert feed.status.frames <= 2, "HTX's pings are keep-alive, not messages"

            t = now_ms()
            await fake.push([htx_row("BTC-USDT", "sell", 0.5, 60000.0, t),
                             htx_row("ETH-USDT", "buy", 2.0, 3000.0, t)])  # fmt: skip
            await eventually(lambda: len(sinks.events) == 1, seen=lambda: sinks.events)
            assert (sinks.events[0].side, sinks.events[0].quantity) == ("long", 0.5)
            await fake.send_raw(b"\x1f\x8b not gzip")
            await eventually(lambda: feed.status.malformed == 1)

            await eventually(lambda: sinks.market, seen=lambda: sinks.market)
            update = sinks.market[0]
            assert isinstance(update, OpenInterestUpdate) and update.symbol == "BTCUSDT"
            assert (update.oi, update.price) == (1500.0, 60000.0)  # both sides, halved
            assert any(p.startswith("/linear-swap-api/v1/swap_open_interest")
                       for p in fake.rest_requests)  # fmt: skip


async def test_deribit_trades_heartbeats_and_the_symbols_it_does_not_list() -> None:
    async with FakeDeribit(heartbeat_every=0.05) as fake:
        sinks = Sinks()
        feed = build(DeribitFeed, fake, {"BTCUSDT", "BTCUSDC", "ADAUSDT"}, sinks, market=True)
        async with running(feed):
            await fake.wait_for_subscription("trades.BTC-PERPETUAL.100ms")
            await eventually(lambda: feed.status.unlisted == ["ADAUSDT"])
            requests = fake.connections[0].requests
            assert requests[0]["method"] == "public/set_heartbeat"
            assert requests[0]["params"]["interval"] >= 10
            await eventually(lambda: fake.connections[0].pings >= 3)  # test_requests answered
            assert fake.closed_for_tests == 0 and feed.status.reconnects == 0
            assert feed.status.frames <= 3, "heartbeats and public/test replies are keep-alive"

            t = now_ms()
            await fake.push_trades("BTC-PERPETUAL", [
                trade("BTC-PERPETUAL", "buy", 6000.0, 60000.0, "M", "1", t),
                trade("BTC-PERPETUAL", "sell", 12_000.0, 60000.0, None, "2", t),
            ])  # fmt: skip
            await fake.push_trades("BTC_USDC-PERPETUAL", [
                trade("BTC_USDC-PERPETUAL", "buy", 0.3, 60010.0, "T", "3", t),
            ])  # fmt: skip
            await eventually(lambda: len(sinks.events) == 2, seen=lambda: sinks.events)
            # M with the taker buying: the maker sold, a long; USD 6,000 at 60,000: 0.1 BTC
            assert [(e.symbol, e.side, e.quantity) for e in sinks.events] == [
                ("BTCUSDT", "long", pytest.approx(0.1)), ("BTCUSDC", "short", 0.3),
            ]  # fmt: skip

            await fake.push_ticker("BTC-PERPETUAL", mark_price=60000.0, open_interest=6e8)
            await eventually(lambda: len(sinks.market) == 2, seen=lambda: sinks.market)
            mark, oi = sinks.market
            assert isinstance(mark, MarkPriceUpdate) and isinstance(oi, OpenInterestUpdate)
            assert oi.oi == pytest.approx(10_000.0)  # USD 6e8 over the mark price


async def test_bitmex_instruments_first_each_order_once_and_timed_on_arrival(
    fake_bitmex: FakeBitmex,
) -> None:
    sinks = Sinks()
    feed = build(BitmexFeed, fake_bitmex, {"BTCUSDT", "SOLUSDT"}, sinks, market=True)
    async with running(feed):
        await fake_bitmex.wait_for_subscription("liquidation")
        await fake_bitmex.wait_for_subscription("instrument:XBTUSDT")
        assert fake_bitmex.rest_requests[0].startswith("/api/v1/instrument/active")
        assert feed.status.unlisted == ["SOLUSDT"]
        before = now_ms()
        await fake_bitmex.insert(order("a", "XBTUSDT", "Sell", 60000.0, 150_000))
        await fake_bitmex.update("a", leavesQty=100_000)
        await fake_bitmex.update("a", leavesQty=120_000, price=60010.0)  # a rise: no new order
        await fake_bitmex.delete("a")
        await fake_bitmex.insert(order("b", "XBTUSD", "Buy", 60000.0, 30_000))
        await eventually(lambda: len(sinks.events) == 2, seen=lambda: sinks.events)
        linear, inverse = sinks.events
        assert (linear.side, linear.quantity) == ("long", pytest.approx(0.15))
        assert (inverse.side, inverse.quantity) == ("short", pytest.approx(0.5))
        assert before <= linear.time <= now_ms()  # rows carry no time: the receive time
        await eventually(lambda: fake_bitmex.connections[0].pings >= 2)

        # order b is still active: the next connection's partial holds it again
        await fake_bitmex.drop_all()
        await fake_bitmex.wait_for_subscription("liquidation")
        await eventually(lambda: feed.status.duplicates >= 1)
        assert len(sinks.events) == 2

        await fake_bitmex.push_instrument("XBTUSDT", markPrice=60000.5, openInterest=2_000_000)
        await eventually(
            lambda: any(isinstance(u, OpenInterestUpdate) and u.oi == 2.0 for u in sinks.market),
            seen=lambda: sinks.market,
        )
