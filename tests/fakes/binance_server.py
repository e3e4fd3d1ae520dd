"""Local stand-in for Binance USD-M futures market WebSocket streams (forceOrder, and any
other stream a test pushes with `push_stream`).

Binance facts encoded here (see shared/data/README.md, "Binance" section):

* Since 2026-04 forceOrder is served only under the ``/market`` route:
  ``/market/stream?streams=a/b`` (combined: ``{"stream": name, "data": payload}``) and
  ``/market/ws/<stream>`` or bare ``/market/ws`` (raw payloads). The unrouted root
  (``/stream``, ``/ws``) still accepts connections and acks SUBSCRIBE but never sends
  forceOrder, which is exactly what a client with a stale base URL experiences.
* Stream names are ``<lowercase symbol>@forceOrder`` and ``!forceOrder@arr``
  (all symbols). Matching is exact, so a client sending ``BTCUSDT@forceOrder`` gets its
  ack but no data, as it would from the real server.
* Control requests ``{"method", "params", "id"}``: success is ``{"result": null, "id": N}``;
  errors are ``{"code": 2, "msg": "Invalid request: ..."}``. ``id`` must be an unsigned int.
* More than 10 incoming messages per second closes the connection; the safe stream
  bound per connection is 200 (the docs conflict between 200 and 1024).
* The server sends protocol PING frames and expects PONGs; payloads are compact JSON with
  every number a string except ``E``, ``T`` and the undocumented ``st``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response

from tests.fakes.loopback import LoopbackServer, dumps

ALL_MARKET = "!forceOrder@arr"
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_BAD_ID = "Invalid request: request ID must be an unsigned integer"
_UNKNOWN = "Invalid request: unknown variant `{}`, expected one of " + ", ".join(_METHODS)


class _FakeServerConnection(ServerConnection):
    """Counts real PONG frames and can stop processing input while keeping the socket."""

    pongs_received = 0
    silenced = False
    _held = b""

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.PONG:
            self.pongs_received += 1
        super().process_event(event)

    def data_received(self, data: bytes) -> None:
        # The sans-I/O protocol answers pings as soon as bytes are parsed, so holding the
        # bytes back is the only way to really not answer. Unlike transport.pause_reading(),
        # the transport keeps reading, so a peer that goes away is still noticed.
        if self.silenced:
            self._held += data
            return
        super().data_received(data)

    def eof_received(self) -> bool | None:
        self._held = b""
        return super().eof_received()

    def set_silenced(self, silenced: bool) -> None:
        self.silenced = silenced
        held, self._held = self._held, b""
        if not silenced and held and not self.transport.is_closing():
            super().data_received(held)


@dataclass(eq=False)
class FakeConnection:
    ws: _FakeServerConnection
    path: str
    market: bool  # on /market, i.e. a route that actually delivers forceOrder
    combined: bool  # frames wrapped in {"stream","data"}; SET_PROPERTY may change it
    streams: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    pings_sent: int = 0
    _recent: deque[float] = field(default_factory=deque)

    @property
    def pongs_received(self) -> int:
        return self.ws.pongs_received


def _route(raw_path: str) -> tuple[bool, bool, list[str]] | None:
    """(market, combined, streams) for a request path, or None for an unknown path."""
    parts = urlsplit(raw_path)
    segments = [s for s in parts.path.split("/") if s]
    market = bool(segments) and segments[0] == "market"
    if market:
        segments = segments[1:]
    if segments == ["stream"]:
        names = parse_qs(parts.query).get("streams", [""])[0]
        return market, True, [s for s in names.split("/") if s]
    if segments and segments[0] == "ws":
        return market, False, segments[1:]
    return None


def force_order(
    symbol: str = "BTCUSDT",
    side: str = "SELL",
    price: str = "60000.10",
    qty: str = "0.010",
    trade_time: int | None = None,
    event_time: int | None = None,
    ap: str | None = None,
    z: str | None = None,
    extra_live_fields: bool = True,
    l: str | None = None,  # noqa: E741 - Binance's field name
) -> dict[str, Any]:
    """A forceOrder payload in the 2026 live shape (defaults: now, ap=price, z=qty, l=z)."""
    t = int(time.time() * 1000) if trade_time is None else trade_time
    z = qty if z is None else z
    order: dict[str, Any] = {
        "s": symbol, "S": side, "o": "LIMIT", "f": "IOC", "q": qty, "p": price,
        "ap": price if ap is None else ap, "X": "FILLED", "l": z if l is None else l,
        "z": z, "T": t,
    }  # fmt: skip
    if extra_live_fields:
        order["ps"], order["st"] = symbol, 1
    # Live 2026 frames are pushed at the end of a 1000 ms snapshot window: E - T ~ 1 s.
    return {"e": "forceOrder", "E": t + 1005 if event_time is None else event_time, "o": order}


class FakeBinance(LoopbackServer):
    name = "Binance"
    # Its own keep-alive loop (`ping_interval`), so that pings can be counted and silenced.
    connection_class = _FakeServerConnection

    def __init__(
        self,
        *,
        ping_interval: float | None = None,
        max_streams: int = 200,
        max_incoming_per_sec: int = 10,
    ) -> None:
        super().__init__()
        self.ping_interval = ping_interval
        self.max_streams = max_streams
        self.max_incoming_per_sec = max_incoming_per_sec
        self.connections: list[FakeConnection] = []
        self.connection_count_total = 0
        self._silent = False

    def before_stop(self) -> None:
        # Held input would otherwise stall every close handshake until close_timeout.
        for conn in list(self.connections):
            conn.ws.set_silenced(False)

    @property
    def root_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/market"

    @property
    def silent(self) -> bool:
        return self._silent

    @silent.setter
    def silent(self, value: bool) -> None:
        self._silent = value
        for conn in list(self.connections):
            conn.ws.set_silenced(value)

    # The timeout parameters are part of the contract other test code calls.
    async def wait_for_connections(self, n: int = 1, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        def ready() -> bool:
            live = [c for c in self.connections if c.market and (c.streams or not c.combined)]
            return len(live) >= n

        await self.wait_until(ready, f"{n} /market connection(s)", timeout)

    async def wait_for_subscription(self, stream: str, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        def ready() -> bool:
            return any(c.market and stream in c.streams for c in self.connections)

        await self.wait_until(ready, f"a /market subscription to {stream!r}", timeout)

    async def push(self, payload: dict[str, Any]) -> int:
        if self._silent:
            return 0
        wanted = {f"{payload['o']['s'].lower()}@forceOrder", ALL_MARKET}
        sent = 0
        for conn in list(self.connections):
            if not conn.market:
                continue
            # One frame per matching subscription, as Binance does for overlapping streams.
            for stream in sorted(conn.streams & wanted):
                frame = {"stream": stream, "data": payload} if conn.combined else payload
                if await self._send(conn, dumps(frame)):
                    sent += 1
        return sent

    async def push_stream(self, stream: str, payload: Any) -> int:
        """Send `payload` on every /market connection subscribed to `stream` (any stream
        other than forceOrder, such as `btcusdt@markPrice@1s`)."""
        if self._silent:
            return 0
        sent = 0
        for conn in list(self.connections):
            if conn.market and stream in conn.streams:
                frame = {"stream": stream, "data": payload} if conn.combined else payload
                sent += await self._send(conn, dumps(frame))
        return sent

    async def send_text(self, text: str) -> None:
        if self._silent:
            return
        for conn in list(self.connections):
            if conn.market:
                await self._send(conn, text)

    async def drop_all(self) -> None:
        conns = list(self.connections)
        for conn in conns:
            conn.ws.transport.abort()
        for conn in conns:
            await conn.ws.wait_closed()
        await self.wait_until(lambda: not any(c in self.connections for c in conns), "drop", 2.0)

    async def close_all(self, code: int = 1000, reason: str = "") -> None:
        conns = list(self.connections)
        for conn in conns:
            conn.ws.set_silenced(False)  # the close handshake needs the peer's reply
        await asyncio.gather(*(c.ws.close(code, reason) for c in conns))

    # internals

    @staticmethod
    async def _send(conn: FakeConnection, text: str) -> bool:
        try:
            await conn.ws.send(text)
        except ConnectionClosed:
            return False
        return True

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        route = _route(request.path)
        if route is None:
            return ws.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        if len(route[2]) > self.max_streams:
            return ws.respond(HTTPStatus.BAD_REQUEST, "Too many streams\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        assert isinstance(ws, _FakeServerConnection) and ws.request is not None
        route = _route(ws.request.path)
        assert route is not None  # unknown paths were rejected during the handshake
        conn = FakeConnection(ws, ws.request.path, route[0], route[1], set(route[2]))
        self.connections.append(conn)
        self.connection_count_total += 1
        ws.set_silenced(self._silent)
        self.changed()
        pinger = asyncio.create_task(self._keepalive(conn)) if self.ping_interval else None
        try:
            async for message in ws:
                if self._over_rate(conn):
                    await ws.close(1008, "Too many requests")
                    break
                reply = self._answer(conn, message)
                await ws.send(dumps(reply))
                self.changed()
        except ConnectionClosed:
            pass
        finally:
            if pinger is not None:
                pinger.cancel()
            self.connections.remove(conn)
            self.changed()

    async def _keepalive(self, conn: FakeConnection) -> None:
        assert self.ping_interval is not None
        while True:
            await asyncio.sleep(self.ping_interval)
            if self._silent:
                continue
            try:
                await conn.ws.ping()
            except ConnectionClosed:
                return
            conn.pings_sent += 1

    def _over_rate(self, conn: FakeConnection) -> bool:
        now = asyncio.get_running_loop().time()
        conn._recent.append(now)
        while conn._recent and conn._recent[0] <= now - 1.0:
            conn._recent.popleft()
        return len(conn._recent) > self.max_incoming_per_sec

    def _answer(self, conn: FakeConnection, message: str | bytes) -> dict[str, Any]:
        try:
            req = json.loads(message)
        except ValueError as exc:
            return {"code": 2, "msg": f"Invalid request: {exc}"}
        if not isinstance(req, dict):
            return {"code": 2, "msg": "Invalid request: expected a JSON object"}
        conn.requests.append(req)
        rid = req.get("id")
        if type(rid) is not int or rid < 0:
            msg = _BAD_ID if "id" in req else "Invalid request: missing field `id`"
            return {"code": 2, "msg": msg}
        method, params = req.get("method"), req.get("params", [])

        def error(code: int, msg: str) -> dict[str, Any]:
            return {"code": code, "msg": msg, "id": rid}

        if method not in _METHODS:
            return error(2, _UNKNOWN.format(method))
        if not isinstance(params, list):
            return error(2, "Invalid request: params must be an array")
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(conn.streams), "id": rid}
        if method in ("GET_PROPERTY", "SET_PROPERTY"):
            if not params or params[0] != "combined":
                return error(0, "Unknown property")
            if method == "GET_PROPERTY":
                return {"result": conn.combined, "id": rid}
            if len(params) != 2 or not isinstance(params[1], bool):
                return error(1, "Invalid value type: expected Boolean")
            conn.combined = params[1]
            return {"result": None, "id": rid}
        if not all(isinstance(p, str) for p in params):
            return error(2, "Invalid request: stream names must be strings")
        if method == "SUBSCRIBE":
            if len(conn.streams | set(params)) > self.max_streams:
                return error(2, f"Invalid request: too many streams (max {self.max_streams})")
            conn.streams.update(params)
        else:
            conn.streams.difference_update(params)
        return {"result": None, "id": rid}
