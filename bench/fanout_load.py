"""The two ends every server of `bench_fanout.py` is measured between, each run in its own
process and driven over a `multiprocessing` pipe.

Upstream: the Binance look-alike of the tests (`FakeBinance`, `force_order`), pushing
`forceOrder` frames round-robin over the symbols at a paced rate. Each frame carries its
send time: the trade time `T` in ms, and the microseconds within that ms in the filled
quantity (`z` = 1.000xyz). Both pass through the hub's normalisation unchanged (`time`,
`quantity`), so a client reads upstream -> client latency to the microsecond from any
server that forwards the normalised event.

Load clients: a raw WebSocket client on an asyncio `Protocol` (uvloop when installed). It
does the opening handshake, masks what it sends, answers pings and otherwise only splits
frames and pulls the stamp out of each message with one regex: a full client library would
spend more CPU per message than the servers it measures, on the same two cores. Two
dialects: the hub's protocol (`{"op": "subscribe"}`, also spoken by the broadcast peer) and
Engine.IO 4 / Socket.IO 5 over a bare WebSocket (for python-socketio).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
from array import array
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import orjson

from tests.fakes.binance_server import FakeBinance, force_order

try:
    import uvloop
except ImportError:  # the `bench` extra is not installed: asyncio's own loop
    uvloop = None

PRICES = {
    "BTCUSDT": 60_000.0,
    "ETHUSDT": 3_000.0,
    "SOLUSDT": 150.0,
    "ADAUSDT": 0.5,
    "BNBUSDT": 600.0,
}
TICK_S = 0.002  # the pacer's wake-up; each wake-up sends what is due since the last
MAX_BURST = 2_000  # frames in one wake-up, so a stalled pacer does not flood at once
CONNECT_AT_ONCE = 64  # handshakes in flight per worker
CONNECT_ATTEMPTS = 3
STAMP = re.compile(rb'"quantity":1\.(\d+)[^}]*?"time":(\d+)')


def run_loop(main: Any) -> Any:
    return uvloop.run(main) if uvloop is not None else asyncio.run(main)


def now_us() -> int:
    return time.time_ns() // 1_000


# -- upstream ----------------------------------------------------------------------------


def upstream_process(symbols: list[str], conn: Connection) -> None:
    """Commands: ("rate", events_per_s) (0 pauses); ("connections",) -> live subscribed
    connections and connections ever opened; ("stamps",) -> {symbol: [send time µs]}
    since the last call; ("stop",). Replies ("ready", url) once listening."""
    run_loop(_upstream(symbols, conn))


async def _upstream(symbols: list[str], conn: Connection) -> None:
    async with FakeBinance(ping_interval=None) as server:
        conn.send(("ready", server.base_url))
        pacer = Pacer(server, symbols)
        task = asyncio.create_task(pacer.run())
        try:
            while True:
                command = await asyncio.to_thread(conn.recv)
                if command[0] == "stop":
                    return
                if command[0] == "rate":
                    pacer.set_rate(float(command[1]))
                    conn.send(("ok",))
                elif command[0] == "connections":
                    live = [c for c in server.connections if c.market and c.streams]
                    conn.send(("connections", len(live), server.connection_count_total))
                elif command[0] == "stamps":
                    stamps, pacer.stamps = pacer.stamps, {s: array("q") for s in symbols}
                    conn.send(("stamps", {s: a.tobytes() for s, a in stamps.items()}))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class Pacer:
    """Pushes frames at `rate` per second, round-robin over the symbols, each stamped."""

    def __init__(self, server: FakeBinance, symbols: list[str]) -> None:
        self.server = server
        self.symbols = symbols
        self.rate = 0.0
        self.stamps = {s: array("q") for s in symbols}
        self._began = 0.0
        self._sent = 0  # since `_began`
        self._next = 0
        self._random = random.Random(7)

    def set_rate(self, rate: float) -> None:
        self.rate, self._began, self._sent = rate, time.perf_counter(), 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            if self.rate <= 0:
                continue
            due = int((time.perf_counter() - self._began) * self.rate) - self._sent
            for _ in range(min(due, MAX_BURST)):
                await self.push_one()
            self._sent += due  # what could not be sent in time is not sent late

    async def push_one(self) -> None:
        symbol = self.symbols[self._next % len(self.symbols)]
        self._next += 1
        base = PRICES[symbol]
        price = f"{base * (1 + self._random.gauss(0, 0.002)):.4f}"
        side = "SELL" if self._random.random() < 0.55 else "BUY"
        sent = now_us()
        ms, us = divmod(sent, 1_000)
        quantity = f"1.{us:06d}"  # 1 + µs / 1e6: the sub-millisecond part of the send time
        frame = force_order(symbol, side, price, quantity, trade_time=ms, event_time=ms)
        self.stamps[symbol].append(sent)
        await self.server.push(frame)


# -- load clients ------------------------------------------------------------------------

HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
PATHS = {"hub": "/ws", "socketio": "/socket.io/?EIO=4&transport=websocket"}


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (FIN set, masked as RFC 6455 requires of clients)."""
    key = os.urandom(4)
    n = len(payload)
    header = bytes([0x80 | opcode])
    if n < 126:
        header += bytes([0x80 | n])
    elif n < 65_536:
        header += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + body


class Recorder:
    """Every stamped message a worker received: when it was sent upstream and when it came."""

    def __init__(self) -> None:
        self.sent = array("q")
        self.received = array("q")
        self.total = 0

    def reset(self) -> None:
        self.sent, self.received = array("q"), array("q")

    def message(self, payload: bytes) -> None:
        match = STAMP.search(payload)
        if match is None:
            return
        self.total += 1
        self.received.append(now_us())
        fraction, ms = match.groups()
        self.sent.append(int(ms) * 1_000 + int(fraction.ljust(6, b"0")[:6]))


class Client(asyncio.Protocol):
    """One connection subscribed to one channel; `ready` resolves once the server confirmed."""

    def __init__(self, dialect: str, host: str, channel: str, recorder: Recorder) -> None:
        self.dialect, self.host, self.channel, self.recorder = dialect, host, channel, recorder
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        key = "dGhlIHNhbXBsZSBub25jZQ=="  # the server only echoes its hash back
        text = HANDSHAKE.format(path=PATHS[self.dialect], host=self.host, key=key)
        transport.write(text.encode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before subscribed: {exc}"))

    def send_text(self, text: bytes) -> None:
        assert self.transport is not None
        self.transport.write(masked(0x1, text))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            if b" 101 " not in status:
                self._fail(f"handshake refused: {status.decode(errors='replace')}")
                return
            del buffer[: end + 4]
            self._upgraded = True
            if self.dialect == "hub":
                request = {"op": "subscribe", "id": 1, "channels": [self.channel]}
                self.send_text(orjson.dumps(request))
        offset, size = 0, len(buffer)
        while size - offset >= 2:
            opcode, length = buffer[offset] & 0x0F, buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                start += 2
                length = int.from_bytes(buffer[offset + 2 : start], "big")
            elif length == 127:
                start += 8
                length = int.from_bytes(buffer[offset + 2 : start], "big")
            if size < start + length:
                break
            payload = bytes(buffer[start : start + length])
            offset = start + length
            if opcode in (0x0, 0x1, 0x2):
                self._message(payload)
            elif opcode == 0x9:
                self.transport.write(masked(0xA, payload))  # type: ignore[union-attr]
            elif opcode == 0x8:
                self.transport.close()  # type: ignore[union-attr]
                break
        del buffer[:offset]

    def _message(self, payload: bytes) -> None:
        if self.dialect == "hub":
            if self.ready.done():
                self.recorder.message(payload)
            elif payload.startswith(b'{"op":"subscribed"'):
                self.ready.set_result(None)
            elif payload.startswith(b'{"op":"error"'):
                self._fail(payload.decode(errors="replace"))
            return
        # Engine.IO: 0 open, 2 ping, 4 message; Socket.IO inside: 0 connect, 2 event, 3 ack.
        if payload.startswith(b"42"):
            self.recorder.message(payload)
        elif payload == b"2":
            self.send_text(b"3")
        elif payload.startswith(b"0{"):
            self.send_text(b"40")
        elif payload.startswith(b"40"):
            self.send_text(b'421["subscribe",' + orjson.dumps(self.channel) + b"]")
        elif payload.startswith(b"431") and not self.ready.done():
            self.ready.set_result(None)

    def close(self) -> None:
        """A close frame (1000) first, so servers see a clean goodbye, then the socket."""
        if self.transport is not None and not self.closed:
            self.transport.write(masked(0x8, (1000).to_bytes(2, "big")))
            self.transport.close()

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.close()


def client_process(
    dialect: str, port: int, source_ip: str, channels: list[str], conn: Connection
) -> None:
    """Holds one connection per entry of `channels`, from `source_ip` (a loopback address).
    Commands: ("connect",) -> ("connected", n subscribed, first error), ("reset",), ("count",) ->
    messages so far, ("report",) -> (sent µs, received µs, closed), ("close",)."""
    run_loop(_clients(dialect, port, source_ip, channels, conn))


async def _clients(
    dialect: str, port: int, source_ip: str, channels: list[str], conn: Connection
) -> None:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    clients: list[Client] = []
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def open_one(channel: str) -> None:
        make: Callable[[], Client] = lambda: Client(dialect, f"127.0.0.1:{port}", channel, recorder)  # noqa: E731
        async with gate:
            _, client = await asyncio.wait_for(
                loop.create_connection(make, "127.0.0.1", port, local_addr=(source_ip, 0)), 30
            )
            clients.append(client)
            await asyncio.wait_for(client.ready, 30)

    async def open_retrying(channel: str) -> None:
        # A handshake can be reset or time out on an overloaded machine; a client retries.
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                return await open_one(channel)
            except (OSError, TimeoutError):
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.5)

    try:
        while True:
            command = await asyncio.to_thread(conn.recv)
            if command[0] == "connect":
                results = await asyncio.gather(
                    *(open_retrying(c) for c in channels), return_exceptions=True
                )
                errors = [r for r in results if isinstance(r, BaseException)]
                conn.send(("connected", len(results) - len(errors), repr(errors[:1])))
            elif command[0] == "reset":
                recorder.reset()
                conn.send(("ok",))
            elif command[0] == "count":
                conn.send(("count", recorder.total))
            elif command[0] == "report":
                closed = sum(c.closed for c in clients)
                conn.send(("report", recorder.sent.tobytes(), recorder.received.tobytes(), closed))
            elif command[0] == "close":
                return
    finally:
        for client in clients:
            client.close()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0.1)  # let the transports flush their close
