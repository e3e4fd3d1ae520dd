"""What the Bybit and OKX look-alikes share: one loopback server speaking WebSocket on the
exchange's path and answering its REST GETs (through `process_request`, before any
upgrade), connection bookkeeping, and waiting for a condition without sleeping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


@dataclass(eq=False)
class FakeConnection:
    ws: ServerConnection
    subscriptions: set[str] = field(default_factory=set)
    requests: list[Any] = field(default_factory=list)
    pings: int = 0


class FakeExchange:
    """Subclasses set `ws_path` and implement `answer` (a client message) and `rest`."""

    ws_path = "/"
    name = "exchange"

    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []
        self.connection_count_total = 0
        self.rest_requests: list[str] = []
        self.rest_status = 200
        self._server: Server | None = None
        self._changed = asyncio.Event()
        self._port: int | None = None

    async def start(self) -> None:
        # Restart on the same port, so a client's URL stays valid across an outage.
        self._server = await serve(
            self._handler, "127.0.0.1", self._port or 0,
            process_request=self._process_request, ping_interval=None, close_timeout=1.0,
        )  # fmt: skip
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> FakeExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        assert self._port is not None, f"Fake {self.name} not started"
        return self._port

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
        await self._wait(
            lambda: len(self.subscribed(subscription)) >= n, f"{n} x {subscription!r}", within
        )

    async def send_to(self, subscription: str, text: str) -> int:
        sent = 0
        for conn in self.subscribed(subscription):
            try:
                await conn.ws.send(text)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    async def drop_all(self) -> None:
        conns = list(self.connections)
        for conn in conns:
            conn.ws.transport.abort()
        await self._wait(lambda: not any(c in self.connections for c in conns), "drop", 5.0)

    # for subclasses

    def answer(self, conn: FakeConnection, message: str | bytes) -> str | None:
        raise NotImplementedError

    def rest(self, path: str, query: str) -> tuple[int, Any]:
        return 404, {"error": "not found"}

    # internals

    def _bump(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, ready: Callable[[], bool], what: str, limit: float) -> None:
        try:
            async with asyncio.timeout(limit):
                while not ready():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"Fake {self.name}: no {what} within {limit}s") from None

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if "upgrade" in request.headers.get("Connection", "").lower():
            if parts.path != self.ws_path:
                return ws.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
            return None
        self.rest_requests.append(request.path)
        status, body = self.rest(parts.path, parts.query)
        if self.rest_status != 200:
            status, body = self.rest_status, {"error": "unavailable"}
        payload = dumps(body).encode()
        headers = Headers(
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        )
        return Response(status, HTTPStatus(status).phrase, headers, payload)

    async def _handler(self, ws: ServerConnection) -> None:
        conn = FakeConnection(ws)
        self.connections.append(conn)
        self.connection_count_total += 1
        self._bump()
        try:
            async for message in ws:
                reply = self.answer(conn, message)
                if reply is not None:
                    await ws.send(reply)
                await self.after_answer(conn)
                self._bump()
        except ConnectionClosed:
            pass
        finally:
            self.connections.remove(conn)
            self._bump()

    async def after_answer(self, conn: FakeConnection) -> None:
        """Anything the exchange sends on its own after a request (OKX's replay)."""
