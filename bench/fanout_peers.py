"""The hub's Python peers in `bench_fanout.py`: the same job done the usual way.

Each reads the same Binance look-alike the hub reads, normalises a frame with the hub's
own `parse_frame` (so the payload is the hub's `liquidation` message, about the same
bytes), and sends it to the subscribers of `liquidations:{SYMBOL}`:

- `socketio`: python-socketio's `AsyncServer` as an ASGI app on uvicorn, one room per
  channel; a client emits `subscribe` with the channel (acknowledged) and receives
  `message` events. This is what a Socket.IO service of this kind looks like.
- `broadcast`: websockets' own server on uvloop, a set of connections per channel and
  `websockets.broadcast` of the message encoded once; it speaks the hub's subscribe
  request, so the same load client serves both.
- `write floor`: the same server, but each message is framed once and its bytes handed
  to every subscriber's transport, nothing else: no backpressure, no slow-client rule,
  not a server to run. It is the least any server pays at one write a delivery, the
  floor the others are measured against.

Run as `python bench/fanout_peers.py KIND --port P --upstream URL --symbols A,B`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import orjson
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench.fanout_load import run_loop
from hub.fanout.codec import encode_message
from hub.fanout.frames import TEXT, frame
from hub.feeds.binance_wire import parse_frame, stream_name
from hub.models import ChannelMessage, LiquidationEvent

EPOCH = "bench"


async def liquidations(upstream: str, symbols: list[str]) -> AsyncIterator[LiquidationEvent]:
    streams = "/".join(stream_name(s) for s in symbols)
    # No keepalive: a peer busy emitting a backlog would miss its pong and drop the feed.
    url = f"{upstream}/stream?streams={streams}"
    async with connect(url, max_size=None, ping_interval=None) as websocket:
        async for frame in websocket:
            event = parse_frame(frame).event
            if event is not None:
                yield event


def channel_of(event: LiquidationEvent) -> str:
    return f"liquidations:{event.symbol}"


Send = Callable[[set[ServerConnection], bytes], None]


def send_broadcast(room: set[ServerConnection], payload: bytes) -> None:
    broadcast(room, payload.decode())


def send_raw(room: set[ServerConnection], payload: bytes) -> None:
    data = frame(payload, TEXT)
    for websocket in room:
        websocket.transport.write(data)


async def websockets_peer(port: int, upstream: str, symbols: list[str], send: Send) -> None:
    rooms: dict[str, set[ServerConnection]] = defaultdict(set)

    async def handler(websocket: ServerConnection) -> None:
        joined: list[str] = []
        try:
            async for text in websocket:
                request = orjson.loads(text)
                if request.get("op") == "subscribe":
                    for channel in request["channels"]:
                        rooms[channel].add(websocket)
                        joined.append(channel)
                    reply = {"op": "subscribed", "id": request.get("id"), "channels": joined}
                    await websocket.send(orjson.dumps(reply).decode())
        except ConnectionClosed:
            pass  # a load client leaving at the end of a run
        finally:
            for channel in joined:
                rooms[channel].discard(websocket)

    seqs: dict[str, int] = defaultdict(int)
    async with serve(handler, "127.0.0.1", port):
        async for event in liquidations(upstream, symbols):
            channel = channel_of(event)
            seqs[channel] += 1
            message = ChannelMessage(channel, "liquidation", seqs[channel], EPOCH, event)
            send(rooms[channel], encode_message(message))


async def broadcast_peer(port: int, upstream: str, symbols: list[str]) -> None:
    await websockets_peer(port, upstream, symbols, send_broadcast)


async def floor_peer(port: int, upstream: str, symbols: list[str]) -> None:
    await websockets_peer(port, upstream, symbols, send_raw)


async def socketio_peer(port: int, upstream: str, symbols: list[str]) -> None:
    import socketio
    import uvicorn

    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")

    @sio.on("subscribe")
    async def subscribe(sid: str, channel: str) -> str:
        await sio.enter_room(sid, channel)
        return "subscribed"

    config = uvicorn.Config(socketio.ASGIApp(sio), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    seqs: dict[str, int] = defaultdict(int)
    try:
        async for event in liquidations(upstream, symbols):
            channel = channel_of(event)
            seqs[channel] += 1
            data = msgspec.to_builtins(event)
            message = {"ch": channel, "type": "liquidation", "seq": seqs[channel]}
            message |= {"epoch": EPOCH, "data": data}
            await sio.emit("message", message, room=channel)
    finally:
        server.should_exit = True
        await serving


PEERS = {"broadcast": broadcast_peer, "socketio": socketio_peer, "write floor": floor_peer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=sorted(PEERS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the look-alike's /market URL")
    parser.add_argument("--symbols", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    run_loop(PEERS[args.kind](args.port, args.upstream, args.symbols.split(",")))


if __name__ == "__main__":
    main()
