"""The Binance consumer against the look-alike server: frames, reconnects, keep-alive."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from hub.feeds.backoff import Backoff
from hub.feeds.binance import BinanceFeed
from hub.feeds.binance_wire import parse_frame
from hub.feeds.connection import Timing
from hub.models import LiquidationEvent
from tests.conftest import DATA, FAST_TIMING, eventually, fast_backoff
from tests.fakes.binance_server import FakeBinance, force_order


@contextlib.asynccontextmanager
async def running(feed: BinanceFeed) -> AsyncIterator[BinanceFeed]:
    task = asyncio.create_task(feed.run())
    try:
        yield feed
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_feed(
    fake: FakeBinance, symbols: set[str] | None, timing: Timing = FAST_TIMING
) -> tuple[BinanceFeed, list[LiquidationEvent]]:
    events: list[LiquidationEvent] = []
    return BinanceFeed(fake.base_url, symbols, events.append, timing, fast_backoff()), events


def test_every_documented_and_observed_frame_parses() -> None:
    examples = json.loads((DATA / "forceOrder_examples.json").read_text())
    frames = [f["frame"] for f in examples["observed_live_frames"]["frames"]]
    envelopes = examples["envelopes"]
    frames += [envelopes[k] for k in envelopes if k.endswith("_frame")]
    frames.append(examples["documented"]["usdm_forceOrder_payload"]["payload"])
    for frame in frames:
        parsed = parse_frame(json.dumps(frame).encode())
        assert parsed.anomaly is None, frame
        payload = frame.get("data", frame)["o"]
        event = parsed.event
        assert event is not None
        assert event.side == ("long" if payload["S"] == "SELL" else "short")
        assert event.price == float(payload["ap"])
        assert event.quantity == float(payload["z"])
        assert event.time == payload["T"]
        assert event.notional == pytest.approx(float(payload["ap"]) * float(payload["z"]))


def test_price_and_quantity_fall_back_when_unfilled() -> None:
    frame = force_order("BTCUSDT", "BUY", "60000.10", "0.500", ap="0", z="0")
    event = parse_frame(json.dumps(frame)).event
    assert event is not None
    assert (event.price, event.quantity, event.side) == (60000.1, 0.5, "short")


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (b"{nope", "malformed"),
        (b"[]", "malformed"),
        (b'{"stream":"x","data":{"e":"aggTrade","E":1}}', "unknown_event:aggTrade"),
        (b'{"e":"forceOrder","E":1,"o":{"s":"BTCUSDT","S":"HOLD","q":"1","p":"1"}}', "malformed"),
        (b'{"e":"forceOrder","E":1,"o":{"s":"BTCUSDT","S":"BUY","q":"x","p":"1"}}', "malformed"),
        (b'{"e":"forceOrder","E":1,"o":{"s":"BTCUSDT","S":"BUY","q":"-1","p":"1"}}', "malformed"),
        (b'{"e":"forceOrder","E":1}', "malformed"),
        (b'{"code":2,"msg":"Invalid request"}', "error_reply"),
        (b'{"hello":1}', "unexpected_frame"),
    ],
)
def test_bad_frames_are_classified(frame: bytes, kind: str) -> None:
    parsed = parse_frame(frame)
    assert parsed.event is None and parsed.anomaly == kind


async def test_combined_stream_url_and_events(fake_binance: FakeBinance) -> None:
    feed, events = make_feed(fake_binance, {"BTCUSDT", "ethusdt"})
    assert feed.url() == (
        f"{fake_binance.base_url}/stream?streams=btcusdt@forceOrder/ethusdt@forceOrder"
    )
    async with running(feed):
        await fake_binance.wait_for_subscription("ethusdt@forceOrder")
        await fake_binance.push(force_order("ETHUSDT", "SELL", "3000.00", "2.000"))
        await eventually(lambda: len(events) == 1)
    assert events[0].symbol == "ETHUSDT" and events[0].notional == 6000.0
    assert feed.status.events == 1 and feed.status.frames == 1


async def test_malformed_and_unknown_frames_are_counted_not_fatal(
    fake_binance: FakeBinance,
) -> None:
    feed, events = make_feed(fake_binance, {"BTCUSDT"})
    async with running(feed):
        await fake_binance.wait_for_subscription("btcusdt@forceOrder")
        await fake_binance.send_text("{broken")
        await fake_binance.send_text('{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade"}}')
        await fake_binance.send_text("{broken again")
        await fake_binance.push(force_order("BTCUSDT", "SELL", "60000.00", "0.010"))
        await eventually(lambda: len(events) == 1)
    assert feed.status.malformed == 2
    assert feed.status.anomalies == {"malformed": 2, "unknown_event:aggTrade": 1}
    assert fake_binance.connection_count_total == 1  # never reconnected over bad frames


async def test_all_market_stream_tracks_every_symbol(fake_binance: FakeBinance) -> None:
    feed, events = make_feed(fake_binance, None)
    assert feed.url().endswith("/stream?streams=!forceOrder@arr")
    async with running(feed):
        await fake_binance.wait_for_subscription("!forceOrder@arr")
        for symbol in ("DOGEUSDT", "XRPUSDT"):
            await fake_binance.push(force_order(symbol, "BUY", "1.0000", "10"))
        await eventually(lambda: len(events) == 2)
    assert {e.symbol for e in events} == {"DOGEUSDT", "XRPUSDT"}


async def test_symbols_added_and_removed_at_run_time(fake_binance: FakeBinance) -> None:
    feed, events = make_feed(fake_binance, {"BTCUSDT"})
    async with running(feed):
        await fake_binance.wait_for_subscription("btcusdt@forceOrder")
        await feed.add_symbols({"solusdt"})
        await fake_binance.wait_for_subscription("solusdt@forceOrder")
        await fake_binance.push(force_order("SOLUSDT", "SELL", "150.0000", "3"))
        await eventually(lambda: len(events) == 1)
        await feed.remove_symbols({"BTCUSDT"})
        connection = fake_binance.connections[0]
        await eventually(lambda: "btcusdt@forceOrder" not in connection.streams)
        methods = [r["method"] for r in connection.requests]
        assert methods == ["SUBSCRIBE", "UNSUBSCRIBE"]
        assert all(isinstance(r["id"], int) for r in connection.requests)
        assert feed.url().endswith("streams=solusdt@forceOrder")  # what a reconnect asks for


async def test_silent_upstream_trips_the_watchdog(fake_binance: FakeBinance) -> None:
    timing = Timing(ping_interval=0.1, watchdog_timeout=0.5, max_age=3600, open_timeout=2)
    feed, _ = make_feed(fake_binance, {"BTCUSDT"}, timing)
    async with running(feed):
        await fake_binance.wait_for_subscription("btcusdt@forceOrder")
        fake_binance.silent = True
        await eventually(lambda: feed.status.reconnects >= 1)
        assert "no frame or pong" in (feed.status.last_error or "")
        fake_binance.silent = False
        await eventually(lambda: feed.status.connected)


async def test_pings_and_pongs_keep_a_quiet_connection(fake_binance: FakeBinance) -> None:
    timing = Timing(ping_interval=0.1, watchdog_timeout=0.5, max_age=3600, open_timeout=2)
    feed, _ = make_feed(fake_binance, {"BTCUSDT"}, timing)
    async with running(feed):
        await fake_binance.wait_for_subscription("btcusdt@forceOrder")
        await asyncio.sleep(1.2)  # over twice the watchdog, with no data frame at all
    assert feed.status.reconnects == 0
    assert fake_binance.connection_count_total == 1


async def test_planned_reconnect_before_the_daily_cut(fake_binance: FakeBinance) -> None:
    timing = Timing(ping_interval=0.1, watchdog_timeout=5, max_age=0.3, open_timeout=2)
    feed, events = make_feed(fake_binance, {"BTCUSDT"}, timing)
    async with running(feed):
        await eventually(lambda: fake_binance.connection_count_total >= 3)
        await fake_binance.wait_for_subscription("btcusdt@forceOrder")
        await fake_binance.push(force_order("BTCUSDT", "SELL", "60000.00", "0.010"))
        await eventually(lambda: len(events) == 1)
    assert feed.status.last_error is None  # planned, not a failure


async def test_dead_upstream_backs_off_and_reports() -> None:
    events: list[LiquidationEvent] = []
    feed = BinanceFeed("ws://127.0.0.1:9", {"BTCUSDT"}, events.append, FAST_TIMING, fast_backoff())
    async with running(feed):
        await eventually(lambda: feed.status.reconnects >= 3)
    assert not feed.status.connected
    assert feed.status.last_error


def test_backoff_full_jitter_caps_and_resets() -> None:
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return high

    backoff = Backoff(base=0.5, cap=4, healthy_after=60, uniform=uniform)
    delays = [backoff.next_delay() for _ in range(6)]
    assert delays == [0.5, 1, 2, 4, 4, 4]
    assert all(low == 0 for low, _ in draws)  # full jitter: anywhere from zero
    backoff.connection_lasted(10)
    assert backoff.next_delay() == 4  # a short-lived connection keeps the backoff
    backoff.connection_lasted(61)
    assert backoff.next_delay() == 0.5


def test_the_bare_binance_root_is_moved_to_the_market_route() -> None:
    feed = BinanceFeed("wss://fstream.binance.com", {"BTCUSDT"}, lambda event: None)
    assert feed.url() == "wss://fstream.binance.com/market/stream?streams=btcusdt@forceOrder"
    local = BinanceFeed("ws://127.0.0.1:1234", {"BTCUSDT"}, lambda event: None)
    assert local.url() == "ws://127.0.0.1:1234/stream?streams=btcusdt@forceOrder"
