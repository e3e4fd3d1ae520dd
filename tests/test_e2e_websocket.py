"""The WebSocket contract (docs/protocol.md) against a real server: uvicorn on loopback
running the hub, real `websockets` clients (and, for the heartbeat, a raw socket).

Covered: a slow client never slows the others (and is conflated or closed 1013, with a
bounded queue on the server); resume with `since`; a few hundred malformed requests that
each get exactly one reply on a connection that stays open; the limits (subscriptions,
frame size, request rate, connection caps, formats); admin endpoints; MessagePack;
protocol keepalive.

The fuzz test uses Hypothesis under pytest-asyncio: `@given` on an async test runs every
example in the test's event loop, the loop the server fixture lives in, so one server and
one connection serve all the examples (hence the suppressed `function_scoped_fixture`
health check: the sharing is the point; after a failing example the next one reconnects,
so a failure still shrinks to a minimal frame list). `derandomize=True` and no example
database make every run send the same frames.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import random
import socket
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import hub.fanout.channel_state as channel_state
from hub.channels import WINDOWS, heatmap_channel
from hub.config import DEFAULT_SYMBOLS, Settings
from hub.fanout.protocol import Session
from hub.feeds.replay import ReplayFeed
from hub.service.hubs import ServeHub
from hub.service.sources import DEMO_REPLAY, Source
from tests.conftest import BINANCE, HubFactory, RunningHub, eventually
from tests.fakes.binance_server import FakeBinance, force_order
from tests.test_e2e_live import ClientHeatmap

JsonDict = dict[str, Any]
Frame = str | bytes
DEMO_BACKFILL_S = 90.0
DEMO_TEST_TIMEOUT_S = 240  # a demo test: its backfill, then its own work
ALL_HEATMAPS = [heatmap_channel(symbol, window) for symbol in DEFAULT_SYMBOLS for window in WINDOWS]


# -- helpers ----------------------------------------------------------------------------


def decode(frame: Frame) -> JsonDict:
    return msgspec.msgpack.decode(frame) if isinstance(frame, bytes) else json.loads(frame)


async def receive(ws: ClientConnection, within: float = 15.0) -> JsonDict:
    return decode(await asyncio.wait_for(ws.recv(), within))


async def next_reply(ws: ClientConnection, within: float = 5.0) -> JsonDict:
    """The next reply to a request (it has an `op`), skipping channel messages."""
    while True:
        message = await receive(ws, within)
        if "op" in message:
            return message


async def ask(ws: ClientConnection, body: JsonDict, binary: bool = False) -> JsonDict:
    await ws.send(msgspec.msgpack.encode(body) if binary else json.dumps(body))
    return await next_reply(ws)


async def close_code_after(ws: ClientConnection, within: float = 5.0) -> int | None:
    """Read (and drop) everything until the server closes; the close code it sent."""
    try:
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


def drop(ws: ClientConnection) -> None:
    """Vanish like a crashed client: no close handshake (needed for a client that never
    reads, whose close handshake could not complete)."""
    ws.transport.abort()


async def start_demo(start_hub: HubFactory, settings: Settings) -> RunningHub:
    """The bundled session at 10x, shifted to the present (so limits run on the wall
    clock), once its backfill pass (the whole file laid in the past) is over: then a steady
    ~35 events/s, ~200 heatmap diffs/s over the 45 channels, ~2 MB/s of JSON."""
    running = await start_hub(settings, demo=True, speed=10)
    feed = running.hub.feed
    assert isinstance(feed, ReplayFeed)
    # The backfill lays the whole session (eight exchanges) first: seconds on a quiet
    # machine, tens of seconds on a loaded one.
    await eventually(lambda: feed.status.frames > len(feed.lines), within=DEMO_BACKFILL_S)
    return running


async def quiet(running: RunningHub) -> None:
    """Let a busy replay deliver nothing more before the fixture stops the hub: a stop
    racing a wake-up of the publisher can hang (see the xfail test of `ServeHub.stop`)."""
    await running.hub.feed.remove_symbols(set(DEFAULT_SYMBOLS))
    await asyncio.sleep(0.1)


def port_of(running: RunningHub) -> int:
    port = urlsplit(running.ws).port
    assert port is not None
    return port


def now_ms() -> int:
    return int(time.time() * 1000)


async def live_hub(start_hub: HubFactory, fake: FakeBinance, **overrides: Any) -> RunningHub:
    settings = Settings(
        binance_ws_url=fake.base_url,
        symbols=("BTCUSDT", "ETHUSDT"),
        flush_ms=20,
        exchanges=BINANCE,
        **overrides,
    )
    running = await start_hub(settings)
    await fake.wait_for_subscription("btcusdt@forceOrder")
    return running


class Events:
    """Distinct BTCUSDT liquidations pushed through the fake Binance, one heatmap diff each."""

    def __init__(self, running: RunningHub, fake: FakeBinance) -> None:
        self.running = running
        self.fake = fake
        self.n = 0
        self.start = now_ms() - 10 * 60_000

    async def rest(self, window: str = "1h") -> JsonDict:
        response = await self.running.get(
            "/api/heatmap/liquidations/BTCUSDT/heatmap", timeWindow=window
        )
        assert response.status_code == 200, response.text
        data: JsonDict = response.json()["data"]
        return data

    async def push(self, symbol: str = "BTCUSDT") -> None:
        self.n += 1
        n = self.n
        payload = force_order(
            symbol,
            "SELL" if n % 3 else "BUY",
            f"{60_000 + (n % 17) * 37.5:.2f}",
            f"{0.01 + n / 1000:.3f}",
            trade_time=self.start + n * 250,
        )
        assert await self.fake.push(payload) == 1

    async def advance(self, count: int = 1) -> JsonDict:
        """Push `count` events, each waiting for its diffs (the clusters may follow at
        their pace in one more); the REST snapshot after them."""
        book = self.running.hub.processor.books["BTCUSDT"]
        for _ in range(count):
            before = await self.rest()
            await self.push()

            async def moved(before: JsonDict = before) -> bool:
                now = await self.rest()
                return (now["epoch"], now["seq"]) != (before["epoch"], before["seq"])

            await eventually(moved)
            await eventually(lambda: book.windows["1h"].settled)
        return await self.rest()


def same_heatmap(mine: ClientHeatmap, rest: JsonDict) -> None:
    view = mine.view()
    assert (view["epoch"], view["seq"]) == (rest["epoch"], rest["seq"])
    assert view["bins"] == sorted(rest["bins"])
    assert view["clusters"] == rest["clusters"]
    assert view["statistics"] == rest["statistics"]
    assert view["reference_price"] == rest["reference_price"]
    assert view["density"] == rest["density"]
    assert view["coverage"] == rest["coverage"]


# -- 1. a slow client never slows the others --------------------------------------------

PING_EVERY = 0.05  # s between one client's pings
PHASE = 2.5  # s of measurement per phase
NORMAL_CLIENTS = 30


class Pinger:
    """A well-behaved client: reads everything at once, and times app-level pings."""

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name
        self.liquidations = 0
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self._count = 0
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in self.ws:
                message = decode(frame)
                if message.get("op") == "pong":
                    future = self._waiting.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(time.perf_counter())
                elif message.get("type") == "liquidation":
                    self.liquidations += 1

    async def ping(self) -> float:
        self._count += 1
        key = f"{self.name}-{self._count}"
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        started = time.perf_counter()
        await self.ws.send(json.dumps({"op": "ping", "id": key}))
        return await asyncio.wait_for(future, 30) - started


async def measure(pingers: list[Pinger], seconds: float, seed: int) -> list[float]:
    """Round trips of every pinger pinging every ~PING_EVERY s for `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    rtts: list[float] = []

    async def run(pinger: Pinger, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0, PING_EVERY))  # spread the clients out
        while loop.time() < deadline:
            rtts.append(await pinger.ping())
            await asyncio.sleep(PING_EVERY * rng.uniform(0.5, 1.5))

    await asyncio.gather(*(run(p, random.Random(seed * 1000 + i)) for i, p in enumerate(pingers)))
    return rtts


def summary(rtts: list[float]) -> tuple[float, float]:
    """(median, p95) in ms."""
    return statistics.median(rtts) * 1000, statistics.quantiles(rtts, n=20)[-1] * 1000


async def stalled_client(running: RunningHub, channels: list[str]) -> ClientConnection:
    """A client that subscribes, then reads nothing: a tiny receive buffer, no compression
    and a one-message client queue, so TCP backpressure reaches the server within ms."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port_of(running)))
    ws = await connect(running.ws, sock=sock, compression=None, max_size=None, max_queue=1)
    await ws.send(json.dumps({"op": "subscribe", "id": "slow", "channels": channels}))
    return ws


def heatmap_session(running: RunningHub) -> Session | None:
    """The server-side session of the (only) client subscribed to heatmap channels."""
    for session in running.hub.fanout.sessions:
        if any(name.startswith("heatmap:") for name in session.subscriptions):
            return session
    return None


async def stalled_session(running: RunningHub, max_queue: int) -> Session:
    """The stalled client's session once its writer is stuck (the kernel buffers are full,
    which takes seconds: diffs are a few hundred bytes, and the buffers hold thousands of
    them): its queue stays full. A single full sample could be the subscribe's catch-up
    burst, hence two, apart."""

    def full() -> bool:
        session = heatmap_session(running)
        return session is not None and session.pending() >= max_queue

    await eventually(full, within=60)
    await asyncio.sleep(0.3)
    await eventually(full, within=60)
    session = heatmap_session(running)
    assert session is not None
    return session


class QueueWatch:
    """Samples every session's queue length on the server while it runs."""

    def __init__(self, running: RunningHub, max_queue: int) -> None:
        self.running = running
        self.max_queue = max_queue
        self.largest = 0
        self.over: list[tuple[int, int]] = []  # (pending, subscriptions) beyond the bound
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for session in list(self.running.hub.fanout.sessions):
                pending = session.pending()
                self.largest = max(self.largest, pending)
                # max_queue messages, plus at most one resync marker per heatmap channel
                # (a marker stands for a whole conflated channel and is never dropped)
                if pending > self.max_queue + len(session.subscriptions):
                    self.over.append((pending, len(session.subscriptions)))
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class ConflationCheck:
    """Follows the heatmap channels a client reads: every diff must follow on (the next
    seq of the same epoch); a snapshot with a seq jump is a resync, the diffs it replaced
    having been skipped."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[str, int]] = {}
        self.resynced: set[str] = set()

    def take(self, message: JsonDict) -> None:
        channel = message.get("ch", "")
        if not channel.startswith("heatmap:"):
            return
        position = (message["epoch"], message["seq"])
        held = self.last.get(channel)
        if message["type"] == "snapshot":
            if held is not None and held[0] == position[0] and position[1] > held[1]:
                self.resynced.add(channel)  # diffs held+1 .. seq replaced by this snapshot
        else:
            assert held is not None, f"{channel}: a diff before any snapshot"
            assert position == (held[0], held[1] + 1), (
                f"{channel}: diff {position} after {held} without a snapshot"
            )
        self.last[channel] = position


@pytest.mark.timeout(DEMO_TEST_TIMEOUT_S)
async def test_a_slow_client_never_slows_the_others(start_hub: HubFactory) -> None:
    # small enough for the slow client to overflow within a second, roomy enough for the
    # pingers when the machine is busy (they run in this very process)
    max_queue = 200
    settings = Settings(
        flush_ms=20,
        max_queue=max_queue,
        # long enough to outlast the measuring phase on a loaded machine: the session must
        # still be there, stuck, while the others are measured
        slow_close_ms=30_000,
        max_requests_per_second=10_000,  # the pingers are not what is tested here
    )
    running = await start_demo(start_hub, settings)
    pingers: list[Pinger] = []
    for i in range(NORMAL_CLIENTS):
        ws = await connect(running.ws, compression=None)
        assert (await ask(ws, {"op": "subscribe", "id": 0, "channels": ["liquidations:*"]}))[
            "op"
        ] == "subscribed"
        pingers.append(Pinger(ws, f"c{i}"))
    watch = QueueWatch(running, max_queue)
    try:
        without = await measure(pingers, PHASE, seed=1)
        liquidations_before = sum(p.liquidations for p in pingers)

        slow = await stalled_client(running, [*ALL_HEATMAPS, "liquidations:*"])

        def overflowing() -> bool:
            session = heatmap_session(running)
            return session is not None and session.dropped > 0

        # The catch-up (46 messages) fits in the queue: a drop means its writer is stuck.
        await eventually(overflowing, within=60)
        with_slow = await measure(pingers, PHASE, seed=2)
        session = heatmap_session(running)
        assert session is not None and session.dropped > 0
        assert sum(p.liquidations for p in pingers) > liquidations_before  # still flowing

        # The slow client reads at last: the present (fresh snapshots), or a 1013 close.
        conflation = ConflationCheck()
        read = 0
        code: int | None = None
        loop = asyncio.get_running_loop()
        # Generous: what the kernel buffers hold comes first (small diffs: a few thousand
        # messages), and a loaded machine reads them slowly.
        deadline = loop.time() + 30
        try:
            while loop.time() < deadline:
                conflation.take(await receive(slow, within=5))
                read += 1
                if conflation.resynced and deadline > loop.time() + 0.5:
                    deadline = loop.time() + 0.5  # and a little more: diffs follow on
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
        resynced = conflation.resynced
        drop(slow)
        await eventually(lambda: heatmap_session(running) is None)
        without_again = await measure(pingers, PHASE, seed=3)
    finally:
        await watch.stop()
        for pinger in pingers:
            drop(pinger.ws)
        await asyncio.gather(*(p.reader for p in pingers), return_exceptions=True)
        await quiet(running)

    assert code == 1013 or resynced, f"neither closed 1013 ({code}) nor resynced ({read} read)"
    assert not watch.over, f"a session queue went past its bound: {watch.over[:5]}"
    baseline = without + without_again
    base_median, base_p95 = summary(baseline)
    slow_median, slow_p95 = summary(with_slow)
    print(
        f"\nping RTT without a slow client: median {base_median:.1f} ms, p95 {base_p95:.1f} ms"
        f" ({len(baseline)} pings); with one: median {slow_median:.1f} ms, p95 "
        f"{slow_p95:.1f} ms ({len(with_slow)} pings); slow client: {read} messages "
        f"read, {len(resynced)} channels resynced, close {code}; largest queue "
        f"{watch.largest} (max_queue {max_queue})"
    )
    # How much the slow client costs the others is printed above, not asserted: a test
    # never asserts wall-clock speed (a loaded machine moves these by seconds). What is
    # asserted is that nothing waits on it: every ping of every other client was answered
    # while it was stuck, and liquidations kept flowing to them.
    assert len(with_slow) >= len(pingers), f"pings answered while stuck: {len(with_slow)}"


@pytest.mark.timeout(DEMO_TEST_TIMEOUT_S)
async def test_a_client_that_never_reads_is_dropped(start_hub: HubFactory) -> None:
    settings = Settings(flush_ms=20, max_queue=20, slow_close_ms=500, max_connections=1)
    running = await start_demo(start_hub, settings)
    stuck = await stalled_client(running, ALL_HEATMAPS)
    try:
        await stalled_session(running, settings.max_queue)
        # docs/protocol.md: still over the limit after slow_close_ms: close 1013. A peer that reads
        # nothing cannot get the close frame, but the server must let it go all the same.
        await eventually(lambda: not running.hub.fanout.sessions)
        async with connect(running.ws) as ws:  # its connection slot is free again
            assert await ask(ws, {"op": "ping", "id": 1}) == {"op": "pong", "id": 1}
    finally:
        drop(stuck)
        await quiet(running)


@pytest.mark.timeout(DEMO_TEST_TIMEOUT_S)
async def test_a_slow_client_still_gets_every_reply(start_hub: HubFactory) -> None:
    settings = Settings(flush_ms=20, max_queue=50, slow_close_ms=10_000)
    running = await start_demo(start_hub, settings)
    slow = await stalled_client(running, [*ALL_HEATMAPS, "liquidations:*"])
    try:
        session = await stalled_session(running, settings.max_queue)
        await slow.send(json.dumps({"op": "ping", "id": "while-slow"}))
        await asyncio.sleep(0.1)

        def pong_gone() -> bool:
            """Peeks at the queue only to know when to go on (a reply is an entry with no
            channel); if that no longer works, the wait below just runs out."""
            try:
                return all(channel is not None for channel, _ in session._outbox)
            except (AttributeError, TypeError, ValueError):
                return False

        # The queue turns over as messages keep coming: everything queued before the pong
        # is dropped, then the pong. A server that never drops a reply passes after 6 s.
        with contextlib.suppress(AssertionError):
            await eventually(pong_gone, within=6)
        # It reads at last, and asks again: both requests must have been answered.
        await slow.send(json.dumps({"op": "ping", "id": "reading"}))
        pongs: list[str] = []
        code: int | None = None
        try:
            while "reading" not in pongs:
                message = await receive(slow)
                if message.get("op") == "pong":
                    pongs.append(message["id"])
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
        assert pongs == ["while-slow", "reading"] or code == 1013, (pongs, code)
    finally:
        drop(slow)
        await quiet(running)


async def test_stopping_never_hangs_when_the_publisher_was_just_woken(tmp_path: Path) -> None:
    replay = tmp_path / "short.jsonl"
    replay.write_bytes(b"".join(DEMO_REPLAY.read_bytes().splitlines(keepends=True)[:20]))
    served = ServeHub(Settings(flush_ms=5_000), Source(replay=replay, speed=0))
    await served.start()
    tasks = list(served.ingest._tasks)
    try:
        await eventually(lambda: not served.feed.status.connected)
        await asyncio.sleep(0.05)  # the publisher waits for a wake-up (or the next flush)
        # An event arrives at the moment the hub is told to stop: the publisher's wait
        # has ended, and it has not run yet when it is cancelled. Deterministic on 3.11.
        served.ingest._wake.set()
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(served.stop(), 3)
        took = loop.time() - started
        assert took < 2 and all(task.done() for task in tasks), f"stop took {took:.1f} s"
    finally:
        for task in tasks:  # a second cancellation is not swallowed
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- 2. resume ----------------------------------------------------------------------------


async def test_resume_sends_the_missed_diffs_in_order(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await live_hub(start_hub, fake_binance)
    events = Events(running, fake_binance)
    await events.advance(3)
    heatmap = ClientHeatmap()
    async with connect(running.ws) as ws:
        reply = await ask(ws, {"op": "subscribe", "id": 1, "channels": ["heatmap:btcusdt"]})
        assert reply == {"op": "subscribed", "id": 1, "channels": ["heatmap:BTCUSDT:1h"]}
        first = await receive(ws)
        assert first["type"] == "snapshot"
        heatmap.take(first)
        rest = await events.advance(2)
        while heatmap.view()["seq"] < rest["seq"]:
            heatmap.take(await receive(ws))
    left_at = heatmap.view()
    same_heatmap(heatmap, rest)

    rest = await events.advance(5)  # missed while away
    assert rest["epoch"] == left_at["epoch"] and rest["seq"] >= left_at["seq"] + 5
    async with connect(running.ws) as ws:
        since = {"heatmap:btcusdt": {"epoch": left_at["epoch"], "seq": left_at["seq"]}}
        reply = await ask(
            ws, {"op": "subscribe", "id": 2, "channels": ["heatmap:BTCUSDT:1h"], "since": since}
        )
        assert reply["op"] == "subscribed"
        missed = [await receive(ws) for _ in range(rest["seq"] - left_at["seq"])]
        assert [(m["ch"], m["type"], m["epoch"]) for m in missed] == [
            ("heatmap:BTCUSDT:1h", "diff", left_at["epoch"])
        ] * len(missed)
        assert [m["seq"] for m in missed] == list(range(left_at["seq"] + 1, rest["seq"] + 1))
        for message in missed:
            heatmap.take(message)
        same_heatmap(heatmap, rest)
        # and it goes on live from there
        rest = await events.advance(1)
        while heatmap.view()["seq"] < rest["seq"]:  # the event's diff, and its clusters'
            live = await receive(ws)
            assert (live["type"], live["seq"]) == ("diff", heatmap.view()["seq"] + 1)
            heatmap.take(live)
        same_heatmap(heatmap, rest)


async def test_resume_from_a_position_the_server_no_longer_holds_gets_a_snapshot(
    start_hub: HubFactory, fake_binance: FakeBinance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keep only the last 3 messages of a channel (the documented floor is 60 s or 1,000), so
    # "too old" can be reached in a test.
    monkeypatch.setattr(channel_state, "HISTORY_MIN_MESSAGES", 3)
    monkeypatch.setattr(channel_state, "HISTORY_MIN_MS", 0)
    running = await live_hub(start_hub, fake_binance)
    events = Events(running, fake_binance)
    old = await events.advance(2)
    now = await events.advance(6)
    assert now["epoch"] == old["epoch"]
    channel = "heatmap:BTCUSDT:1h"

    async def resume(epoch: str, seq: int) -> list[JsonDict]:
        async with connect(running.ws) as ws:
            since = {channel: {"epoch": epoch, "seq": seq}}
            reply = await ask(
                ws, {"op": "subscribe", "id": 1, "channels": [channel], "since": since}
            )
            assert reply["op"] == "subscribed"
            messages: list[JsonDict] = []
            with contextlib.suppress(TimeoutError):
                while True:
                    messages.append(await receive(ws, within=0.3))
            return messages

    for epoch, seq, why in [
        (old["epoch"], old["seq"], "too old"),
        ("not-an-epoch", now["seq"] - 1, "wrong epoch"),
        (old["epoch"], now["seq"] + 100, "seq from the future"),
    ]:
        messages = await resume(epoch, seq)
        assert [(m["type"], m["epoch"], m["seq"]) for m in messages] == [
            ("snapshot", now["epoch"], now["seq"])
        ], why
        heatmap = ClientHeatmap()
        heatmap.take(messages[0])
        same_heatmap(heatmap, now)
    # Still held (the last 3), and up to date: nothing to send.
    assert [m["seq"] for m in await resume(now["epoch"], now["seq"] - 2)] == [
        now["seq"] - 1,
        now["seq"],
    ]
    assert await resume(now["epoch"], now["seq"]) == []


# -- 3. fuzz ------------------------------------------------------------------------------

INT64 = (-(2**63), 2**63 - 1)
MAX_FRAME = 64 * 1024  # the default max_frame_bytes
huge_ints = st.integers(-(2**80), 2**80)
json_leaves = st.none() | st.booleans() | huge_ints | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
valid_channels = st.sampled_from(
    [
        "heatmap:BTCUSDT",
        "heatmap:btcusdt:5m",
        "heatmap:ETHUSDT:30d",
        "liquidations:*",
        "liquidations:ETHUSDT",
        "alerts:*",
        "alerts:btcusdt",
        "liquidity:BTCUSDT",
    ]
)
channel_names = st.sampled_from(
    [
        "heatmap:BTCUSDT",
        "heatmap:btcusdt:5m",
        "heatmap:ETHUSDT:30d",
        "heatmap:BTCUSDT:2h",
        "heatmap:*",
        "heatmap:BTCUSDT:1h:x",
        "heatmap:XRPUSDT",
        "heatmap:",
        "heatmap",
        "liquidations:*",
        "liquidations:ETHUSDT",
        "alerts:*",
        "alerts:btcusdt",
        "liquidity:BTCUSDT",
        "liquidity:*",
        "candles:BTCUSDT",
        "",
        ":",
        "::::",
        "heatmap:ß",
        "alerts:BTC USDT",
        "liquidations:" + "A" * 200,
    ]
) | st.text(max_size=30)
requests = st.fixed_dictionaries(
    {},
    optional={
        "op": st.sampled_from(["subscribe", "unsubscribe", "ping", "pong", "", "PING"])
        | json_values,
        "id": huge_ints | st.text(max_size=10) | json_values,
        "channels": st.lists(channel_names | json_values, max_size=5) | json_values,
        "filter": st.fixed_dictionaries(
            {},
            optional={
                "min_z": st.floats() | json_values,
                "min_notional": huge_ints | json_values,
                "kinds": st.lists(
                    st.sampled_from(["cluster_new", "cascade", "nope"]) | json_values,
                    max_size=3,
                )
                | json_values,
                "side": st.sampled_from(["long", "short", "up"]) | json_values,
                "extra": json_values,
            },
        )
        | json_values,
        "since": st.dictionaries(
            channel_names,
            st.fixed_dictionaries(
                {},
                optional={
                    "epoch": st.text(max_size=8) | json_values,
                    "seq": huge_ints | json_values,
                },
            )
            | json_values,
            max_size=3,
        )
        | json_values,
    },
)
# Well-formed requests (mostly valid, sometimes not), so that subscribe, resume, filters
# and unsubscribe are reached and not only the decoder's errors.
finite = st.floats(allow_nan=False, allow_infinity=False)
plausible_requests = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["subscribe", "subscribe", "unsubscribe", "ping"]),
        "id": st.integers(*INT64) | st.text(max_size=10) | finite,
        "channels": st.lists(valid_channels, min_size=1, max_size=5)
        | st.lists(channel_names, min_size=1, max_size=5),
    },
    optional={
        "filter": st.fixed_dictionaries(
            {},
            optional={
                "min_z": finite,
                "min_notional": finite | st.integers(0, 10**9),
                "kinds": st.lists(
                    st.sampled_from(
                        ["cluster_new", "cluster_growth", "large_liquidation", "cascade"]
                    ),
                    max_size=4,
                ),
                "side": st.sampled_from(["long", "short"]),
            },
        ),
        "since": st.dictionaries(
            valid_channels | channel_names,
            st.fixed_dictionaries(
                {
                    "epoch": st.sampled_from(["BTCUSDT.0", "x"]) | st.text(max_size=8),
                    "seq": st.integers(-5, 2**63 - 1),
                }
            ),
            max_size=3,
        ),
    },
)
unknown_field = st.builds(
    lambda body, value: {**body, "extra": value}, plausible_requests, json_values
)


def _packed(value: Any) -> bytes:
    try:
        return msgspec.msgpack.encode(value)
    except (OverflowError, TypeError):  # an int beyond 64 bits: MessagePack cannot say it
        return b"\xc1" + json.dumps(value).encode()  # 0xc1 is never valid MessagePack


frames = st.one_of(
    plausible_requests.map(json.dumps),
    plausible_requests.map(_packed),
    requests.map(json.dumps),
    requests.map(_packed),
    unknown_field.map(json.dumps),
    json_values.map(json.dumps),
    json_values.map(_packed),
    st.text(max_size=200),
    st.binary(max_size=200),
    # deep nesting, unclosed, within the 64 KiB frame limit
    st.builds(
        lambda opener, depth: opener * min(depth, MAX_FRAME // len(opener)),
        st.sampled_from(["[", "{", '{"op":', "[{}", '{"a":['])
        | st.sampled_from([b"\x91", b"\x81\xa1a", b"\xdd\x00\x00\x00\x01"]),
        st.integers(1, 30_000),
    ),
    st.integers(1, 20_000).map(lambda depth: "[" * depth + "]" * depth),
    huge_ints.map(lambda n: json.dumps({"op": "ping", "id": n})),
)


def expected_id(frame: Frame) -> tuple[bool, Any]:
    """(known, id): the id a reply must echo, when the frame's id is one the protocol allows."""
    try:
        body = decode(frame) if isinstance(frame, bytes) else msgspec.json.decode(frame)
    except (msgspec.DecodeError, RecursionError, UnicodeError, ValueError, TypeError):
        return True, None
    if not isinstance(body, dict):
        return True, None
    value = body.get("id")
    if isinstance(value, bool):
        return True, None
    if isinstance(value, str) or (isinstance(value, int) and INT64[0] <= value <= INT64[1]):
        return True, value
    if isinstance(value, float) and math.isfinite(value):
        return True, value
    return False, None


class FuzzTarget:
    """One connection, many requests: each must get exactly one reply."""

    def __init__(self, running: RunningHub) -> None:
        self.running = running
        self.ws: ClientConnection | None = None
        self.sent = 0
        self.sentinels = 0
        self.closed: list[int | None] = []

    async def check(self, batch: list[Frame]) -> None:
        if self.ws is None or self.ws.state.name != "OPEN":
            # after a failure, a fresh connection: each example stands on its own and
            # Hypothesis can shrink the one that closed the socket
            self.ws = await connect(self.running.ws, max_size=None)
        ws = self.ws
        self.sentinels += 1
        sentinel = f"sentinel/{self.sentinels}"
        replies: list[JsonDict] = []
        try:
            for frame in batch:
                await ws.send(frame)
            await ws.send(json.dumps({"op": "ping", "id": sentinel}))
            while True:
                message = await receive(ws)
                if message.get("op") == "pong" and message.get("id") == sentinel:
                    break
                if "op" in message:  # not a channel message
                    replies.append(message)
        except ConnectionClosed as closed:
            self.closed.append(closed.rcvd.code if closed.rcvd else None)
            raise AssertionError(f"the server closed the socket: {closed}") from None
        self.sent += len(batch)
        assert len(replies) == len(batch), (batch, replies)
        for frame, reply in zip(batch, replies, strict=True):
            assert reply["op"] in ("pong", "subscribed", "unsubscribed", "error"), reply
            if reply["op"] == "error":
                assert isinstance(reply["code"], str) and reply["code"] != "rate_limited"
            known, request_id = expected_id(frame)
            if known:
                assert reply.get("id") == request_id, (frame, reply)


@pytest.fixture
async def fuzz_target(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> AsyncIterator[FuzzTarget]:
    running = await live_hub(start_hub, fake_binance, max_requests_per_second=100_000)
    target = FuzzTarget(running)
    yield target
    if target.ws is not None:
        await target.ws.close()
    assert not target.closed, f"closed by the server: {target.closed}"
    health = await running.get("/health")
    assert health.json() == {"success": True, "data": {"status": "ok"}}


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=st.lists(frames, min_size=1, max_size=4))
async def test_fuzzed_requests_each_get_one_reply(
    fuzz_target: FuzzTarget, batch: list[Frame]
) -> None:
    await fuzz_target.check(batch)


def hand_made_frames() -> Iterator[Frame]:
    yield "[" * 10_000
    yield "[" * 30_000 + "]" * 30_000
    yield '{"op":"subscribe","channels":' + "[" * 5_000 + "]" * 5_000 + "}"
    yield b"\x91" * 20_000  # MessagePack arrays nested 20,000 deep
    yield json.dumps({"op": "ping", "id": 2**64})
    yield json.dumps({"op": "ping", "id": -(2**63) - 1})
    yield json.dumps({"op": "ping", "id": 10**400})
    yield '{"op": "ping", "id": 1e400}'
    yield '{"op": "ping", "id": NaN}'
    yield json.dumps({"op": "ping", "id": True})
    yield json.dumps({"op": "ping", "id": [1]})
    yield json.dumps({"op": "ping", "id": {"a": 1}})
    yield json.dumps({"op": "ping", "id": None})
    yield json.dumps({"op": "ping"})
    yield json.dumps({"op": "ping", "id": "x", "op2": 1})
    yield '{"op": "ping", "id": 1, "op": "subscribe"}'  # a repeated key
    yield "null"
    yield "[]"
    yield '"subscribe"'
    yield "1e999999"
    yield ""
    yield b""
    yield b"\x80"  # an empty MessagePack map: no op
    yield msgspec.msgpack.encode({1: "ping", "op": "ping"})
    yield msgspec.msgpack.encode({b"op": "ping"})
    yield msgspec.msgpack.encode({"op": b"ping", "id": 1})
    yield msgspec.msgpack.encode(msgspec.msgpack.Ext(1, b"x"))
    yield b"\xc1"
    wrong = [None, True, 1, -1, 2**70, 1.5, "x", [], {}, [None], {"a": None}, "heatmap:BTCUSDT"]
    for field in ("op", "id", "channels", "filter", "since"):
        for value in wrong:
            body: JsonDict = {"op": "subscribe", "id": f"{field}", "channels": ["alerts:*"]}
            body[field] = value
            yield json.dumps(body)
    for value in wrong:
        yield json.dumps(
            {
                "op": "subscribe",
                "id": "f",
                "channels": ["alerts:*"],
                "filter": {"min_z": value, "kinds": value},
            }
        )
        yield json.dumps(
            {
                "op": "subscribe",
                "id": "s",
                "channels": ["heatmap:BTCUSDT"],
                "since": {"heatmap:BTCUSDT": value},
            }
        )
        yield json.dumps(
            {
                "op": "subscribe",
                "id": "s",
                "channels": ["heatmap:BTCUSDT"],
                "since": {"heatmap:BTCUSDT": {"epoch": value, "seq": value}},
            }
        )
    yield json.dumps({"op": "subscribe", "id": 9, "channels": ["heatmap:BTCUSDT"] * 1000})
    yield json.dumps({"op": "unsubscribe", "id": 10, "channels": ["heatmap:BTCUSDT:1h"]})
    yield json.dumps({"op": "unsubscribe", "id": 11, "channels": ["heatmap:BTCUSDT:1h"]})


async def test_hand_made_bad_requests_each_get_one_reply(fuzz_target: FuzzTarget) -> None:
    batch: list[Frame] = []
    for frame in hand_made_frames():
        size = len(frame.encode() if isinstance(frame, str) else frame)
        assert size <= MAX_FRAME  # within max_frame_bytes: an error, never a close
        batch.append(frame)
        if len(batch) == 8:
            await fuzz_target.check(batch)
            batch = []
    if batch:
        await fuzz_target.check(batch)
    assert fuzz_target.sent > 100


# -- 4. limits ----------------------------------------------------------------------------


async def test_too_many_subscriptions_is_an_error_and_the_socket_stays(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await live_hub(start_hub, fake_binance, max_subscriptions=3)
    async with connect(running.ws) as ws:
        three = ["liquidations:*", "alerts:*", "heatmap:BTCUSDT"]
        assert (await ask(ws, {"op": "subscribe", "id": 1, "channels": three}))[
            "op"
        ] == "subscribed"
        error = await ask(ws, {"op": "subscribe", "id": 2, "channels": ["alerts:ETHUSDT"]})
        assert (error["op"], error["id"], error["code"]) == ("error", 2, "too_many_subscriptions")
        # all or nothing: one new channel among known ones is still one too many
        error = await ask(
            ws, {"op": "subscribe", "id": 3, "channels": ["alerts:*", "liquidations:BTCUSDT"]}
        )
        assert error["code"] == "too_many_subscriptions"
        again = await ask(ws, {"op": "subscribe", "id": 4, "channels": ["heatmap:btcusdt:1h"]})
        assert again == {"op": "subscribed", "id": 4, "channels": ["heatmap:BTCUSDT:1h"]}
        assert (await ask(ws, {"op": "unsubscribe", "id": 5, "channels": ["alerts:*"]}))[
            "op"
        ] == "unsubscribed"
        assert (await ask(ws, {"op": "subscribe", "id": 6, "channels": ["alerts:ETHUSDT"]}))[
            "op"
        ] == "subscribed"
        assert await ask(ws, {"op": "ping", "id": 7}) == {"op": "pong", "id": 7}


async def test_an_oversize_frame_closes_with_1009(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await live_hub(start_hub, fake_binance, max_frame_bytes=1024)
    async with connect(running.ws) as ws:
        at_limit = json.dumps({"op": "ping", "id": ""})
        at_limit = json.dumps({"op": "ping", "id": "x" * (1024 - len(at_limit))})
        assert len(at_limit) == 1024
        assert (await ask(ws, json.loads(at_limit)))["op"] == "pong"
        await ws.send(json.dumps({"op": "ping", "id": "x" * 2000}))
        assert await close_code_after(ws) == 1009
    async with connect(running.ws) as ws:
        text = json.dumps({"op": "ping", "id": "é" * 600}, ensure_ascii=False)
        assert len(text) < 1024 < len(text.encode())  # the limit is in bytes
        await ws.send(text)
        assert await close_code_after(ws) == 1009
    async with connect(running.ws) as ws:
        await ws.send(b"\x00" * 1025)
        assert await close_code_after(ws) == 1009


async def test_flooding_is_rate_limited_then_closed_with_1008(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await live_hub(
        start_hub, fake_binance, max_requests_per_second=10, abuse_close_ms=500
    )
    async with connect(running.ws) as calm:
        for i in range(15):  # ~7 a second: never over the limit
            assert await ask(calm, {"op": "ping", "id": i}) == {"op": "pong", "id": i}
            await asyncio.sleep(0.14)

    async with connect(running.ws) as ws:
        loop = asyncio.get_running_loop()
        replies: list[tuple[float, JsonDict]] = []

        async def flood() -> None:
            with contextlib.suppress(ConnectionClosed):
                for i in range(1000):
                    await ws.send(json.dumps({"op": "ping", "id": i}))
                    await asyncio.sleep(0.005)

        flooder = asyncio.create_task(flood())
        started = loop.time()
        try:
            async with asyncio.timeout(5):
                while True:
                    replies.append((loop.time(), decode(await ws.recv())))
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            closed_at = loop.time()
        finally:
            flooder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flooder
    pongs = [r for _, r in replies if r["op"] == "pong"]
    limited = [(t, r) for t, r in replies if r.get("code") == "rate_limited"]
    assert [p["id"] for p in pongs[:10]] == list(range(10))  # the first 10 get through
    assert limited and limited[0][1] == {
        "op": "error",
        "id": None,
        "code": "rate_limited",
        "message": limited[0][1]["message"],
    }
    assert len(limited) <= 2 + (closed_at - started)  # one error per second, not one per request
    assert code == 1008
    assert 0.45 <= closed_at - limited[0][0] <= 2.5


async def test_the_request_rate_is_wall_clock_during_a_replay(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    replay = tmp_path / "short.jsonl"
    replay.write_bytes(b"".join(DEMO_REPLAY.read_bytes().splitlines(keepends=True)[:20]))
    running = await start_hub(Settings(max_requests_per_second=10), replay=replay, speed=0)
    await eventually(running.hub.feed.finished.is_set)  # type: ignore[attr-defined]
    async with connect(running.ws) as ws:
        for i in range(16):  # ~8 a second, for 2 s
            assert await ask(ws, {"op": "ping", "id": i}) == {"op": "pong", "id": i}
            await asyncio.sleep(0.12)


async def test_connection_caps_refuse_the_handshake(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    per_ip = await live_hub(start_hub, fake_binance, max_connections_per_ip=2)
    async with connect(per_ip.ws) as one, connect(per_ip.ws):
        with pytest.raises(InvalidStatus) as refused:
            await connect(per_ip.ws)
        assert refused.value.response.status_code == 429
        await one.close()
        await eventually(lambda: len(per_ip.hub.fanout.sessions) == 1)
        async with connect(per_ip.ws) as third:  # a slot is free again
            assert await ask(third, {"op": "ping", "id": 1}) == {"op": "pong", "id": 1}

    total = await live_hub(start_hub, fake_binance, max_connections=2)
    async with connect(total.ws), connect(total.ws):
        with pytest.raises(InvalidStatus) as refused:
            await connect(total.ws)
        assert refused.value.response.status_code == 503
    await eventually(lambda: not total.hub.fanout.sessions)
    # a burst of handshakes at once: exactly the cap gets in
    results = await asyncio.gather(*(connect(total.ws) for _ in range(6)), return_exceptions=True)
    opened = [r for r in results if isinstance(r, ClientConnection)]
    refusals = [r.response.status_code for r in results if isinstance(r, InvalidStatus)]
    try:
        assert len(opened) == 2 and refusals == [503] * 4, results
    finally:
        await asyncio.gather(*(ws.close() for ws in opened))


async def test_an_unknown_format_is_a_400(start_hub: HubFactory, fake_binance: FakeBinance) -> None:
    running = await live_hub(start_hub, fake_binance)
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{running.ws}?format=xml")
    assert refused.value.response.status_code == 400
    assert b"format" in refused.value.response.body
    assert not running.hub.fanout.sessions


async def test_an_empty_format_is_json_and_a_long_one_is_not_echoed_whole(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await live_hub(start_hub, fake_binance)
    async with connect(f"{running.ws}?format=") as ws:
        assert await ask(ws, {"op": "ping", "id": 1}) == {"op": "pong", "id": 1}
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{running.ws}?format={'x' * 2_000}")
    body = refused.value.response.body
    assert refused.value.response.status_code == 400 and len(body) < 500, body[:600]


# -- 5. admin -----------------------------------------------------------------------------


async def test_admin_adds_and_removes_symbols(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await live_hub(start_hub, fake_binance, admin_token="s3cret")
    url = f"{running.http}/api/heatmap/symbols"
    body = {"symbols": ["solusdt"]}
    client = running.client

    missing = await client.post(url, json=body)
    wrong = await client.post(url, json=body, headers={"Authorization": "Bearer s3cre"})
    scheme = await client.post(url, json=body, headers={"Authorization": "Basic s3cret"})
    assert [r.status_code for r in (missing, wrong, scheme)] == [401, 401, 401]
    assert missing.json()["success"] is False
    assert (await running.get("/api/heatmap/liquidations/SOLUSDT/heatmap")).status_code == 404

    auth = {"Authorization": "Bearer s3cret"}
    bad = await client.post(url, json={"symbols": ["SOL-USDT"]}, headers=auth)
    assert bad.status_code == 400
    added = await client.post(url, json=body, headers=auth)
    assert added.status_code == 200, added.text
    assert "SOLUSDT" in added.json()["data"]["symbols"]
    assert (await running.get("/api/heatmap/liquidations/SOLUSDT/heatmap")).status_code == 200
    await fake_binance.wait_for_subscription("solusdt@forceOrder")
    await eventually(lambda: "SOLUSDT" in running.hub.fanout.symbols)

    async with connect(running.ws) as ws:
        reply = await ask(ws, {"op": "subscribe", "id": 1, "channels": ["liquidations:SOLUSDT"]})
        assert reply["op"] == "subscribed"
        trade_time = now_ms() - 1000
        await fake_binance.push(force_order("SOLUSDT", "SELL", "150.00", "10", trade_time))
        event = await receive(ws)
        assert (event["ch"], event["type"], event["data"]["time"]) == (
            "liquidations:SOLUSDT",
            "liquidation",
            trade_time,
        )

    removed = await client.request("DELETE", url, json=body, headers=auth)
    assert removed.status_code == 200, removed.text
    assert "SOLUSDT" not in removed.json()["data"]["symbols"]
    assert (await running.get("/api/heatmap/liquidations/SOLUSDT/heatmap")).status_code == 404
    unauthorized = await client.request("DELETE", url, json={"symbols": ["BTCUSDT"]})
    assert unauthorized.status_code == 401

    def unsubscribed() -> bool:
        return not any("solusdt@forceOrder" in c.streams for c in fake_binance.connections)

    await eventually(unsubscribed)
    async with connect(running.ws) as ws:
        error = await ask(ws, {"op": "subscribe", "id": 2, "channels": ["heatmap:SOLUSDT"]})
        assert (error["op"], error["code"]) == ("error", "unknown_symbol")


async def test_admin_endpoints_are_off_without_a_token(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await live_hub(start_hub, fake_binance)
    url = f"{running.http}/api/heatmap/symbols"
    auth = {"Authorization": "Bearer anything"}
    added = await running.client.post(url, json={"symbols": ["SOLUSDT"]}, headers=auth)
    removed = await running.client.request(
        "DELETE", url, json={"symbols": ["BTCUSDT"]}, headers=auth
    )
    assert (added.status_code, removed.status_code) == (404, 404)
    assert (await running.get("/api/heatmap/liquidations/BTCUSDT/heatmap")).status_code == 200


# -- 6. MessagePack -----------------------------------------------------------------------


async def test_msgpack_connection_answers_binary_whatever_the_request_frame(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await live_hub(start_hub, fake_binance)
    events = Events(running, fake_binance)
    rest = await events.advance(2)
    async with connect(f"{running.ws}?format=msgpack") as ws:

        async def binary_reply() -> JsonDict:
            frame = await asyncio.wait_for(ws.recv(), 5)
            assert isinstance(frame, bytes), frame
            return decode(frame)

        await ws.send(msgspec.msgpack.encode({"op": "ping", "id": 1}))
        assert await binary_reply() == {"op": "pong", "id": 1}
        await ws.send(json.dumps({"op": "ping", "id": "text"}))  # JSON text is a request
        assert await binary_reply() == {"op": "pong", "id": "text"}
        await ws.send("not json")
        assert (await binary_reply())["code"] == "bad_request"
        await ws.send(b"\xc1")
        assert (await binary_reply())["code"] == "bad_request"
        request = {"op": "subscribe", "id": 2, "channels": ["heatmap:btcusdt"]}
        await ws.send(msgspec.msgpack.encode(request))
        assert await binary_reply() == {
            "op": "subscribed",
            "id": 2,
            "channels": ["heatmap:BTCUSDT:1h"],
        }
        snapshot = await binary_reply()
        assert (snapshot["type"], snapshot["seq"]) == ("snapshot", rest["seq"])
        heatmap = ClientHeatmap()
        heatmap.take(snapshot)
        rest = await events.advance(1)
        while heatmap.view()["seq"] < rest["seq"]:  # the event's diff, and its clusters'
            heatmap.take(await binary_reply())
        same_heatmap(heatmap, rest)

    async with connect(running.ws) as ws:  # and the other way round
        await ws.send(msgspec.msgpack.encode({"op": "ping", "id": 3}))
        frame = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(frame, str) and json.loads(frame) == {"op": "pong", "id": 3}


# -- 7. keepalive -------------------------------------------------------------------------


def _frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(opcode, payload) of the complete unmasked server frames in `data` (small ones)."""
    while len(data) >= 2:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        assert length < 126, "only small control frames are expected here"
        if len(data) < 2 + length:
            return
        yield opcode, data[2 : 2 + length]
        data = data[2 + length :]


async def test_a_peer_that_never_answers_pings_is_disconnected(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    interval = 0.25
    settings = Settings(
        binance_ws_url=fake_binance.base_url,
        symbols=("BTCUSDT",),
        ws_ping_interval=interval,
        exchanges=BINANCE,
    )
    # as hub.api.server.run configures uvicorn from the settings
    options = {"ws_ping_interval": interval, "ws_ping_timeout": interval}
    running = await start_hub(settings, uvicorn_options=options)
    async with connect(running.ws) as polite:  # answers pings by itself
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(running))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port_of(running)}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13"
            "\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
        loop = asyncio.get_running_loop()
        upgraded = loop.time()
        assert head.startswith(b"HTTP/1.1 101"), head
        assert len(running.hub.fanout.sessions) == 2
        received = b""
        try:
            async with asyncio.timeout(30):  # 2 pings and their timeout, with room for load
                while chunk := await reader.read(4096):  # reads, never answers
                    received += chunk
            gone = loop.time() - upgraded
        finally:
            writer.close()
        opcodes = [opcode for opcode, _ in _frames(received)]
        assert 0x9 in opcodes, "the server never pinged"
        assert interval <= gone, f"closed after {gone:.2f} s, before a ping was even due"
        await eventually(lambda: len(running.hub.fanout.sessions) == 1)
        await asyncio.sleep(3 * interval)
        assert await ask(polite, {"op": "ping", "id": 1}) == {"op": "pong", "id": 1}
