"""What the exchange look-alikes share: one loopback server speaking WebSocket on the
exchange's path and answering its REST GETs (through `process_request`, before any
upgrade), and connection bookkeeping."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.loopback import LoopbackServer, json_response


@dataclass(eq=False)
class FakeConnection:
    ws: ServerConnection
    subscriptions: set[str] = field(default_factory=set)
    requests: list[Any] = field(default_factory=list)
    pings: int = 0


class FakeExchange(LoopbackServer):
    """Subclasses set `ws_path` and implement `answer` (a client message) and `rest`."""

    ws_path = "/"
    name = "exchange"

    def __init__(self) -> None:
        super().__init__()
        self.connections: list[FakeConnection] = []
        self.connection_count_total = 0
        self.rest_requests: list[str] = []
        self.rest_status = 200

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.ws_path}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def subscribed(self, subscription: str) -> list[FakeConnection]:
        return [c for c in self.connections if subscription in c.subscriptions]

    async def wait_for_subscription(
        self, subscription: str, n: int = 1, within: float = 15.0
    ) -> None:
        await self.wait_until(
            lambda: len(self.subscribed(subscription)) >= n, f"{n} x {subscription!r}", within
        )

    async def send_to(self, subscription: str, text: str) -> int:
        sent = 0
        for conn in self.subscribed(subscription):
            sent += await self.send(conn, text)
        return sent

    async def send(self, conn: FakeConnection, text: str) -> bool:
        """Send as the exchange frames it (`frame`); False when the peer is gone."""
        try:
            await conn.ws.send(self.frame(text))
        except ConnectionClosed:
            return False
        return True

    async def drop_all(self) -> None:
        conns = list(self.connections)
        for conn in conns:
            conn.ws.transport.abort()
        await self.wait_until(lambda: not any(c in self.connections for c in conns), "drop", 5.0)

    # for subclasses

    text_ping: str | None = None  # a keep-alive text the exchange answers with `pong`

    def answer(self, conn: FakeConnection, message: str | bytes) -> str | None:
        """The reply to a client message: its text keep-alive, or a JSON request."""
        if self.text_ping is not None and message == self.text_ping:
            conn.pings += 1
            return "pong"
        try:
            request = json.loads(message)
        except ValueError:
            return self.unreadable(message)
        conn.requests.append(request)
        return self.reply(conn, request)

    def reply(self, conn: FakeConnection, request: Any) -> str | None:
        """The reply to a JSON request (None: the exchange sends none)."""
        raise NotImplementedError

    def unreadable(self, message: str | bytes) -> str | None:
        """The reply to a message that is not JSON."""
        return None

    def rest(self, path: str, query: str) -> tuple[int, Any]:
        return 404, {"error": "not found"}

    def frame(self, text: str) -> str | bytes:
        """How the exchange puts a message on the wire (HTX compresses every one)."""
        return text

    def on_connect(self, conn: FakeConnection) -> list[asyncio.Task[None]]:
        """What the exchange starts on a new connection (a welcome, its own pings); the
        tasks end with the connection."""
        return []

    # internals

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if "upgrade" in request.headers.get("Connection", "").lower():
            if parts.path != self.ws_path:
                return ws.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
            return None
        self.rest_requests.append(request.path)
        status, body = self.rest(parts.path, parts.query)
        if self.rest_status != 200:
            status, body = self.rest_status, {"error": "unavailable"}
        return json_response(body, status)

    async def handler(self, ws: ServerConnection) -> None:
        conn = FakeConnection(ws)
        self.connections.append(conn)
        self.connection_count_total += 1
        self.changed()
        tasks = self.on_connect(conn)
        try:
            async for message in ws:
                reply = self.answer(conn, message)
                if reply is not None:
                    await ws.send(self.frame(reply))
                await self.after_answer(conn)
                self.changed()
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()
            self.connections.remove(conn)
            self.changed()

    async def after_answer(self, conn: FakeConnection) -> None:
        """Anything the exchange sends on its own after a request (OKX's replay)."""
