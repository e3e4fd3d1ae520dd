"""Local stand-in for OKX's V5 public WebSocket (`books`, `trades`) and the REST calls the
book feed makes (`/api/v5/public/instruments`, `/api/v5/market/books`).

OKX facts encoded here (tests/data/okx, docs/liquidity.md):
* `{"op": "subscribe"|"unsubscribe", "args": [{"channel", "instId"}]}` is answered per arg
  with `{"event": "subscribe", "arg": ..., "connId": ...}`; a bad request gets
  `{"event": "error", "code": "60012", ...}`.
* The text `ping` is answered with the text `pong`; with `idle_close` the server closes a
  connection that has sent nothing for that long (OKX: 30 s).
* Each `books` subscription of BTC-USDT-SWAP plays the next of `scripts`: a list of
  frames exactly as recorded (the generated session, with its planted faults), the last
  script repeating.
  A script without a snapshot line is the post-2026 behaviour: the book must come from
  REST, whose response carries `seqId`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.loopback import LoopbackServer, json_response

INSTRUMENT = "BTC-USDT-SWAP"  # the one the scripts are for


class FakeOkx(LoopbackServer):
    name = "OKX book"

    def __init__(
        self,
        scripts: Sequence[Sequence[bytes]],
        trades: Sequence[bytes] = (),
        rest_book: dict[str, Any] | None = None,
        contract_values: dict[str, str] | None = None,
        idle_close: float | None = None,
    ) -> None:
        self.scripts = [list(s) for s in scripts]
        self.trades = list(trades)
        self.rest_book = rest_book
        self.contract_values = contract_values or {"BTC-USDT-SWAP": "0.01"}
        self.idle_close = idle_close
        super().__init__()
        self.subscriptions: list[dict[str, str]] = []
        self.pings = 0
        self.rest_requests: list[str] = []
        self.connections = 0
        self._books_played = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v5/public"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path == "/ws/v5/public":
            return None
        self.rest_requests.append(request.path)
        query = parse_qs(parts.query)
        if parts.path == "/api/v5/public/instruments":
            rows = [
                {"instId": i, "instType": "SWAP", "ctType": "linear", "ctVal": v, "state": "live"}
                for i, v in self.contract_values.items()
            ]
            return json_response({"code": "0", "msg": "", "data": rows})
        if parts.path == "/api/v5/market/books" and self.rest_book is not None:
            if query.get("instId") == [INSTRUMENT]:
                return json_response({"code": "0", "msg": "", "data": [self.rest_book]})
            return json_response({"code": "51001", "msg": "Instrument ID does not exist"})
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        players: list[asyncio.Task[None]] = []
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_close):
                        message = await ws.recv()
                except TimeoutError:
                    await ws.close(4004, "no data for 30 s")  # as OKX does to an idle client
                    return
                if message == "ping":
                    self.pings += 1
                    await ws.send("pong")
                    continue
                try:
                    request = json.loads(message)
                    op, args = request["op"], request["args"]
                except (ValueError, KeyError, TypeError):
                    await ws.send(json.dumps({"event": "error", "code": "60012", "msg": "bad"}))
                    continue
                for arg in args:
                    self.subscriptions.append({"op": op, **arg})
                    await ws.send(json.dumps({"event": op, "arg": arg, "connId": "fake01"}))
                    if op != "subscribe" or arg.get("instId") != INSTRUMENT:
                        continue  # other instruments are subscribed, and stay quiet
                    if arg.get("channel") == "books":
                        players.append(asyncio.create_task(self._play_book(ws)))
                    if arg.get("channel") == "trades":
                        players.append(asyncio.create_task(self._play(ws, self.trades)))
        except ConnectionClosed:
            return
        finally:
            for task in players:
                task.cancel()

    async def _play_book(self, ws: ServerConnection) -> None:
        script = self.scripts[min(self._books_played, len(self.scripts) - 1)]
        self._books_played += 1
        await self._play(ws, script)

    @staticmethod
    async def _play(ws: ServerConnection, frames: list[bytes]) -> None:
        for index, frame in enumerate(frames):
            try:
                await ws.send(frame.decode())
            except ConnectionClosed:
                return
            if index % 50 == 49:
                await asyncio.sleep(0)
