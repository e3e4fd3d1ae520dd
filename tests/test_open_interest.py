"""Open interest and mark price: the documented shapes, the poller against a local Binance
REST look-alike (every failure a state, never a crash), the mark price stream through the
WebSocket look-alike, and recording and replaying both."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator

import msgspec
import pytest

from hub.feeds.binance_market import parse_mark_price_frame, parse_open_interest
from hub.feeds.open_interest import BinanceOpenInterest
from hub.feeds.replay import Recorder, ReplayFeed, read_replay
from hub.models import MarkPriceUpdate, OpenInterestUpdate
from tests.conftest import DATA, FAST_TIMING, eventually, fast_backoff
from tests.fakes.binance_open_interest import FakeOpenInterest
from tests.fakes.binance_server import FakeBinance

EXAMPLES = json.loads((DATA / "open_interest_mark_price_examples.json").read_text())
Update = OpenInterestUpdate | MarkPriceUpdate


def test_the_documented_answer_and_frame_parse() -> None:
    body = EXAMPLES["openInterest_rest"]["example"]["response"]
    update = parse_open_interest(json.dumps(body))
    assert update == OpenInterestUpdate("binance", "BTCUSDT", 1589437530011, 10659.509)
    message = EXAMPLES["markPrice_stream"]["example"]["message"]
    expected = [MarkPriceUpdate("binance", "BTCUSDT", 1562305380000, 11794.15)]
    for frame in (message, {"stream": "btcusdt@markPrice@1s", "data": message}, [message]):
        parsed = parse_mark_price_frame(json.dumps(frame))
        assert (parsed.updates, parsed.anomaly) == (expected, None), frame
    all_market = {"stream": "!markPrice@arr@1s", "data": [message, {**message, "s": "ETHUSDT"}]}
    assert [u.symbol for u in parse_mark_price_frame(json.dumps(all_market)).updates] == [
        "BTCUSDT",
        "ETHUSDT",
    ]
    assert parse_mark_price_frame('{"result":null,"id":1}') == ([], None, "")


@pytest.mark.parametrize(
    ("frame", "anomaly"),
    [
        ("not json", "malformed"),
        ('{"e":"markPriceUpdate","s":"BTCUSDT","p":"-1","E":1}', "malformed"),
        ('{"e":"markPriceUpdate","s":"BTCUSDT","p":"abc","E":1}', "malformed"),
        ('{"e":"markPriceUpdate","s":"BTC/USDT","p":"1","E":1}', "malformed"),
        ('{"e":"kline","s":"BTCUSDT","p":"1","E":1}', "unknown_event:kline"),
    ],
)
def test_a_bad_mark_price_frame_is_an_anomaly(frame: str, anomaly: str) -> None:
    parsed = parse_mark_price_frame(frame)
    assert (parsed.updates, parsed.anomaly) == ([], anomaly)


@pytest.mark.parametrize(
    "body",
    ['{"openInterest":"x","symbol":"BTCUSDT","time":1}', '{"symbol":"BTCUSDT"}', "[]", "{", ""],
)
def test_a_bad_open_interest_body_is_a_value_error(body: str) -> None:
    with pytest.raises(ValueError, match="open interest"):
        parse_open_interest(body)


@contextlib.asynccontextmanager
async def polling(
    rest: FakeOpenInterest, ws_url: str, symbols: set[str], interval: float = 0.2
) -> AsyncIterator[tuple[BinanceOpenInterest, list[Update]]]:
    updates: list[Update] = []
    source = BinanceOpenInterest(
        rest.url,
        ws_url,
        symbols,
        updates.append,
        poll_interval=interval,
        request_timeout=0.5,
        timing=FAST_TIMING,
        backoff=fast_backoff(),
    )
    task = asyncio.create_task(source.run())
    try:
        yield source, updates
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def open_interest(updates: list[Update], symbol: str) -> list[float]:
    return [u.oi for u in updates if isinstance(u, OpenInterestUpdate) and u.symbol == symbol]


async def test_each_symbol_is_polled_and_its_answer_delivered(
    fake_binance: FakeBinance,
) -> None:
    async with FakeOpenInterest() as rest:
        rest.open_interest = {"BTCUSDT": 100.0, "ETHUSDT": 2_000.0}
        async with polling(rest, fake_binance.base_url, {"BTCUSDT", "ETHUSDT"}) as (source, got):
            await eventually(lambda: open_interest(got, "ETHUSDT") == [2_000.0])
            rest.open_interest["BTCUSDT"] = 105.5
            await eventually(lambda: 105.5 in open_interest(got, "BTCUSDT"), seen=lambda: got)
            await eventually(lambda: source.status.connected, seen=lambda: source.status)
            status = source.status
            assert status.name == "open_interest" and status.last_error is None
            assert status.frames >= 3 and status.last_frame_at is not None
        polled = {symbol for _, symbol in rest.requests}
        assert polled == {"BTCUSDT", "ETHUSDT"}


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("error", "HTTP 500"),
        ("malformed", "open interest body"),
        ("wrong_symbol", "the answer is for ETHUSDT"),
        ("hang", "ReadTimeout"),
    ],
)
async def test_a_failing_poll_is_a_state_and_polling_recovers(
    fake_binance: FakeBinance, mode: str, error: str
) -> None:
    async with FakeOpenInterest() as rest:
        rest.open_interest = {"BTCUSDT": 100.0}
        rest.mode = mode
        async with polling(rest, fake_binance.base_url, {"BTCUSDT"}) as (source, got):
            await eventually(
                lambda: error in (source.status.last_error or ""), seen=lambda: source.status
            )
            assert not source.status.connected
            assert open_interest(got, "BTCUSDT") == []
            rest.mode = "ok"
            await eventually(lambda: open_interest(got, "BTCUSDT") != [])
            await eventually(lambda: source.poll_ok, seen=lambda: source.status)


async def test_a_rate_limit_pauses_polling_for_the_time_asked(fake_binance: FakeBinance) -> None:
    async with FakeOpenInterest() as rest:
        rest.open_interest = {"BTCUSDT": 100.0}
        rest.mode, rest.retry_after = "rate_limited", "1"
        async with polling(rest, fake_binance.base_url, {"BTCUSDT"}, interval=0.05) as (
            source,
            got,
        ):
            await eventually(lambda: len(rest.requests) >= 2, seen=lambda: rest.requests)
            assert "HTTP 429" in (source.status.last_error or "")
            first, second = rest.requests[0][0], rest.requests[1][0]
            assert second - first >= 1.0, "the next request waits for Retry-After"
            rest.mode = "ok"
            await eventually(lambda: open_interest(got, "BTCUSDT"))


async def test_an_unreachable_rest_host_is_a_state(fake_binance: FakeBinance) -> None:
    rest = FakeOpenInterest()  # never started: nothing listens on its port
    async with polling(rest, fake_binance.base_url, {"BTCUSDT"}) as (source, _):
        await eventually(lambda: "ConnectError" in (source.status.last_error or ""))
        assert not source.status.connected


async def test_mark_prices_arrive_from_the_market_route_and_symbols_follow(
    fake_binance: FakeBinance,
) -> None:
    message = EXAMPLES["markPrice_stream"]["example"]["message"]
    async with (
        FakeOpenInterest() as rest,
        polling(rest, fake_binance.base_url, {"BTCUSDT"}) as (source, got),
    ):
        await fake_binance.wait_for_subscription("btcusdt@markPrice@1s")

        async def pushed() -> bool:
            await fake_binance.push_stream("btcusdt@markPrice@1s", message)
            return any(isinstance(u, MarkPriceUpdate) for u in got)

        await eventually(pushed)
        assert MarkPriceUpdate("binance", "BTCUSDT", 1562305380000, 11794.15) in got
        await source.add_symbols({"ETHUSDT"})
        await fake_binance.wait_for_subscription("ethusdt@markPrice@1s")
        await fake_binance.push_stream("ethusdt@markPrice@1s", {**message, "s": "ETHUSDT"})
        await eventually(lambda: any(u.symbol == "ETHUSDT" for u in got))
        await fake_binance.push_stream("ethusdt@markPrice@1s", {**message, "p": "nope"})
        await eventually(lambda: source.status.malformed >= 1, seen=lambda: source.status)


async def test_polled_answers_and_frames_are_recorded_and_replayed(
    fake_binance: FakeBinance, tmp_path: object
) -> None:
    out = io.BytesIO()
    recorder = Recorder(out, "binance")
    message = EXAMPLES["markPrice_stream"]["example"]["message"]
    async with FakeOpenInterest() as rest:
        rest.open_interest = {"BTCUSDT": 100.0}
        async with polling(rest, fake_binance.base_url, {"BTCUSDT"}) as (source, got):
            source.add_frame_listener(recorder)
            source.add_rest_listener(recorder.rest)
            await fake_binance.wait_for_subscription("btcusdt@markPrice@1s")
            await fake_binance.push_stream("btcusdt@markPrice@1s", message)
            await eventually(
                lambda: (
                    any(isinstance(u, MarkPriceUpdate) for u in got)
                    and open_interest(got, "BTCUSDT")
                )
            )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    rest_lines = [line for line in lines if "rest" in line]
    assert rest_lines and rest_lines[0]["rest"] == "/fapi/v1/openInterest"
    assert rest_lines[0]["raw"]["symbol"] == "BTCUSDT" and rest_lines[0]["source"] == "binance"
    path = tmp_path / "session.jsonl"  # type: ignore[operator]
    path.write_bytes(out.getvalue())
    replayed: list[Update] = []
    feed = ReplayFeed(read_replay(path), lambda event: None, speed=0, market_sink=replayed.append)
    await feed.run()
    assert [u for u in replayed if isinstance(u, MarkPriceUpdate)] == [
        u for u in got if isinstance(u, MarkPriceUpdate)
    ][: sum(isinstance(u, MarkPriceUpdate) for u in replayed)]
    assert open_interest(replayed, "BTCUSDT") == open_interest(got, "BTCUSDT")[: len(rest_lines)]


async def test_a_replay_with_unknown_rest_paths_and_bad_bodies_goes_on(tmp_path: object) -> None:
    path = tmp_path / "bad.jsonl"  # type: ignore[operator]
    lines = [
        {"t": 1, "source": "binance", "rest": "/fapi/v1/premiumIndex", "raw": {"x": 1}},
        {"t": 2, "source": "binance", "rest": "/fapi/v1/openInterest", "raw": {"x": 1}},
        {"t": 3, "source": "binance", "rest": "/fapi/v1/openInterest",
         "raw": {"openInterest": "5.5", "symbol": "BTCUSDT", "time": 3}},
    ]  # fmt: skip
    path.write_bytes(b"".join(msgspec.json.encode(line) + b"\n" for line in lines))
    replayed: list[Update] = []
    feed = ReplayFeed(read_replay(path), lambda event: None, speed=0, market_sink=replayed.append)
    await feed.run()
    assert replayed == [OpenInterestUpdate("binance", "BTCUSDT", 3, 5.5)]
    assert feed.status.malformed == 1
    assert "unknown_rest:/fapi/v1/premiumIndex" in feed.status.anomalies
