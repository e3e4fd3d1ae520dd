"""The fan-out's fast path against a real uvicorn: channel messages framed once and
written as the same bytes to every client, uvicorn's pings and the replies interleaved
with them, and the plain ASGI send path still serving when the fast path is off."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import math
import os
import time
import weakref
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

import hub.api.server
from hub.api.uvicorn_socket import missing_internals
from hub.api.websocket import Flusher
from hub.config import Settings
from tests.conftest import BINANCE, HubFactory, RunningHub, eventually
from tests.fakes.binance_server import FakeBinance, force_order

CHANNEL = "liquidations:BTCUSDT"


def test_the_uvicorn_internals_the_fast_path_needs_are_there() -> None:
    missing = missing_internals()
    assert missing == [], (
        f"uvicorn {uvicorn.__version__} moved what hub/api/uvicorn_socket.py relies on: "
        f"{missing}. The server would fall back to the slower ASGI send path; adapt the "
        "protocol subclass, or keep uvicorn within the range pinned in pyproject.toml."
    )


class RawClient:
    """A WebSocket client on a bare socket, to see the frames' very bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = StreamReader()
        self.frames: list[tuple[Opcode, bytes, bytes]] = []  # opcode, payload, whole frame

    @classmethod
    async def open(cls, running: RunningHub) -> RawClient:
        port = int(running.ws.rsplit(":", 1)[1].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13"
            "\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
        assert head.startswith(b"HTTP/1.1 101"), f"expected a 101 upgrade, got {head!r}"
        return cls(reader, writer)

    def send(self, body: dict[str, Any]) -> None:
        frame = Frame(Opcode.TEXT, json.dumps(body).encode())
        self.writer.write(frame.serialize(mask=True, extensions=[]))

    async def until(self, enough: int) -> list[tuple[Opcode, bytes, bytes]]:
        """Read until `enough` frames are in, keeping each frame's bytes as received."""
        buffer = b""
        async with asyncio.timeout(20):
            while len(self.frames) < enough:
                chunk = await self.reader.read(65_536)
                assert chunk, f"connection closed after {len(self.frames)} of {enough} frames"
                buffer += chunk
                while (parsed := _split(buffer)) is not None:
                    opcode, payload, size = parsed
                    self.frames.append((opcode, payload, buffer[:size]))
                    buffer = buffer[size:]
        return self.frames

    def close(self) -> None:
        self.writer.close()


def _split(buffer: bytes) -> tuple[Opcode, bytes, int] | None:
    """One whole unmasked frame at the head of `buffer`: opcode, payload, its size."""
    if len(buffer) < 2:
        return None
    length, offset = buffer[1] & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        length, offset = int.from_bytes(buffer[2:4], "big"), 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        length, offset = int.from_bytes(buffer[2:10], "big"), 10
    if len(buffer) < offset + length:
        return None
    return Opcode(buffer[0] & 0x0F), buffer[offset : offset + length], offset + length


async def start(start_hub: HubFactory, fake: FakeBinance, **options: Any) -> RunningHub:
    settings = Settings(binance_ws_url=fake.base_url, symbols=("BTCUSDT",), exchanges=BINANCE)
    running = await start_hub(settings, uvicorn_options=options)
    await fake.wait_for_connections(1)
    return running


async def push_events(fake: FakeBinance, count: int) -> None:
    now = int(time.time() * 1000) - 10_000
    for i in range(count):
        await fake.push(
            force_order("BTCUSDT", "SELL", f"{60000 + i}.00", "0.100", trade_time=now + i)
        )


async def subscribed_clients(running: RunningHub, count: int) -> list[RawClient]:
    """`count` raw clients on CHANNEL, each past its subscribed reply."""
    clients = [await RawClient.open(running) for _ in range(count)]
    for client in clients:
        client.send({"op": "subscribe", "id": 1, "channels": [CHANNEL]})
    for client in clients:
        await client.until(1)
    return clients


async def test_every_client_gets_the_very_same_frame_bytes(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await start(start_hub, fake_binance)
    clients = await subscribed_clients(running, 3)
    try:
        status = (await running.get("/api/heatmap/status")).json()["data"]["fanout"]
        assert (status["shared_frame_sessions"], status["asgi_sessions"]) == (3, 0), status
        await push_events(fake_binance, 20)
        received = [await client.until(21) for client in clients]
    finally:
        for client in clients:
            client.close()
    first = received[0][1:]
    assert [json.loads(payload)["seq"] for _, payload, _ in first] == list(range(1, 21))
    for other in received[1:]:
        assert [whole for _, _, whole in other[1:]] == [whole for _, _, whole in first], (
            "clients of one channel must get byte-identical frames"
        )


def asgi_calls() -> list[asyncio.Task[Any]]:
    """uvicorn's task per connection running the ASGI app (`run_asgi`)."""
    return [t for t in asyncio.all_tasks() if "run_asgi" in repr(t.get_coro())]


async def test_an_accepted_connection_keeps_no_asgi_call_and_its_end_frees_it(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await start(start_hub, fake_binance)
    fanout = running.hub.fanout
    clients = await subscribed_clients(running, 5)
    try:
        # Detached: each ASGI call returned, the connections stay open and served.
        await eventually(lambda: not asgi_calls(), seen=asgi_calls)
        sessions = [weakref.ref(session) for session in fanout.sessions]
        await push_events(fake_binance, 3)
        received = [await client.until(4) for client in clients]
        assert all(
            [json.loads(p)["seq"] for _, p, _ in frames[1:]] == [1, 2, 3] for frames in received
        ), received
        clients[0].send({"op": "unsubscribe", "id": 2, "channels": [CHANNEL]})
        reply = json.loads((await clients[0].until(5))[4][1])
        assert reply["op"] == "unsubscribed", f"expected the unsubscribe reply, got {reply}"
        clients[0].close()
        clients[1].writer.transport.abort()  # gone without a close frame
        await eventually(lambda: len(fanout.sessions) == 3, seen=lambda: len(fanout.sessions))
        status = (await running.get("/api/heatmap/status")).json()["data"]["fanout"]
        assert (status["shared_frame_sessions"], status["asgi_sessions"]) == (3, 0), status
    finally:
        for client in clients:
            client.close()
    await eventually(lambda: not fanout.sessions, seen=lambda: len(fanout.sessions))
    assert not fanout.subscribers.get(CHANNEL), "a closed client is still subscribed"
    # Nothing keeps a closed connection's objects: the protocol, its socket, writer and
    # session only refer to one another, so the collector frees them.
    gc.collect()
    alive = [ref() for ref in sessions if ref() is not None]
    assert not alive, f"expected every closed client's session freed, {len(alive)} remain"


async def test_a_write_delay_sends_a_clients_messages_in_fewer_writes(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    settings = Settings(
        binance_ws_url=fake_binance.base_url,
        symbols=("BTCUSDT",),
        exchanges=BINANCE,
        ws_write_delay_ms=1_000,
    )
    running = await start_hub(settings)
    await fake_binance.wait_for_connections(1)
    stats = running.hub.fanout.stats
    [client] = await subscribed_clients(running, 1)
    try:
        writes, deliveries = stats.writes, stats.deliveries
        now = int(time.time() * 1000) - 10_000
        began = time.monotonic()
        for i in range(20):  # 20 ms apart: without the delay, about a write each
            await fake_binance.push(
                force_order("BTCUSDT", "SELL", f"{60000 + i}.00", "0.100", trade_time=now + i)
            )
            await asyncio.sleep(0.02)
        frames = await client.until(21)
        # One write per second of delay the messages spanned, and one more for the edge;
        # a loaded machine that stretches the pushes only raises the bound.
        allowed = math.ceil(time.monotonic() - began) + 1
    finally:
        client.close()
    assert [json.loads(p)["seq"] for _, p, _ in frames[1:]] == list(range(1, 21)), frames
    written, delivered = stats.writes - writes, stats.deliveries - deliveries
    assert delivered == 20, f"expected 20 deliveries, saw {delivered}"
    assert written <= allowed, (
        f"expected the 20 messages in at most {allowed} writes (1 s each), saw {written}"
    )


async def test_pings_and_replies_interleave_with_shared_frames(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    # uvicorn pings every 50 ms and the client pings too, while events stream
    running = await start(start_hub, fake_binance, ws_ping_interval=0.05, ws_ping_timeout=10)
    async with connect(running.ws, ping_interval=0.05, compression=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "id": 0, "channels": [CHANNEL]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 15))["op"] == "subscribed"
        pusher = asyncio.create_task(push_events(fake_binance, 200))
        seqs: list[int] = []
        pongs: list[int] = []
        asked = 0
        async with asyncio.timeout(30):
            while len(seqs) < 200 or len(pongs) < asked:
                if asked < 20 and len(seqs) >= asked * 10:
                    await ws.send(json.dumps({"op": "ping", "id": asked}))
                    asked += 1
                message = json.loads(await ws.recv())
                if message.get("op") == "pong":
                    pongs.append(message["id"])
                elif message.get("type") == "liquidation":
                    seqs.append(message["seq"])
        await pusher
        assert seqs == list(range(1, 201)), f"expected seqs 1..200 in order, saw {seqs[:5]}..."
        assert pongs == list(range(asked)), f"expected every pong in order, saw {pongs}"
        # the client's protocol pings were answered among the data frames
        await asyncio.wait_for(await ws.ping(), 15)
        server_side = next(iter(running.hub.fanout.sessions))
        assert server_side.close is None, f"the session was closed: {server_side.close}"


async def test_the_asgi_path_serves_when_uvicorn_offers_no_raw_socket(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await start(start_hub, fake_binance, ws="websockets-sansio")
    async with connect(running.ws, compression=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "id": 0, "channels": [CHANNEL]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 15))["op"] == "subscribed"
        await push_events(fake_binance, 5)
        seqs = [json.loads(await asyncio.wait_for(ws.recv(), 15))["seq"] for _ in range(5)]
        status = (await running.get("/api/heatmap/status")).json()["data"]["fanout"]
    assert seqs == [1, 2, 3, 4, 5]
    assert (status["shared_frame_sessions"], status["asgi_sessions"]) == (0, 1), status


async def test_moved_internals_fall_back_with_a_warning_on_status(
    start_hub: HubFactory, fake_binance: FakeBinance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub.api.server, "missing_internals", lambda: ["conn"])
    running = await start(start_hub, fake_binance)
    async with connect(running.ws, compression=None) as ws:
        await ws.send(json.dumps({"op": "ping", "id": 1}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 15)) == {"op": "pong", "id": 1}
        status = (await running.get("/api/heatmap/status")).json()["data"]["fanout"]
    assert status["asgi_sessions"] == 1, status
    assert "lacks conn" in (status["fallback"] or ""), status
    await eventually(lambda: not running.hub.fanout.sessions)


class _Writer:
    def __init__(self, fails: bool) -> None:
        self.fails, self.flushed, self.aborted = fails, 0, False
        self.socket = self

    def flush(self) -> None:
        self.flushed += 1
        if self.fails:
            raise RuntimeError("a broken client")

    def abort(self) -> None:
        self.aborted = True


async def test_one_failing_client_neither_stops_the_others_nor_stays_open() -> None:
    flusher = Flusher()
    writers = [_Writer(fails=i == 1) for i in range(3)]
    for writer in writers:
        flusher.due(writer)  # type: ignore[arg-type]
    await eventually(lambda: all(w.flushed for w in writers), seen=lambda: writers)
    assert [(w.flushed, w.aborted) for w in writers] == [(1, False), (1, True), (1, False)]
