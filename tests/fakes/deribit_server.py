"""Local stand-in for Deribit's JSON-RPC WebSocket (public trades, incremental ticker,
heartbeats).

Deribit facts encoded here (tests/data/deribit_liquidation_examples.json):
* `/ws/api/v2`, JSON-RPC 2.0: a reply carries the request's `id` and `result`, or
  `error: {message, code}`.
* `public/subscribe` answers with the channels it took: `trades.{instrument}.100ms` and
  `incremental_ticker.{instrument}` of a listed instrument, `trades.future.any.100ms`;
  `.raw` is refused to an unauthenticated client (13778,
  `raw_subscriptions_not_available_for_unauthorized`); an unknown instrument is left out.
* `public/set_heartbeat` (interval >= 10) starts heartbeats: `{"method":"heartbeat",
  "params":{"type":"heartbeat"}}` and `test_request`s, to be answered with `public/test`;
  one unanswered closes the connection at once. The look-alike beats every
  `heartbeat_every` seconds whatever the interval asked (tests cannot wait 10 s).
* A push: `{"jsonrpc":"2.0","method":"subscription","params":{"channel","data":[trades]}}`,
  trades in the fixture's shape, a liquidation carrying `liquidation` (`M`, `T`, `MT`)
  and `direction` the taker's.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.fakes import DATA
from tests.fakes.exchange_server import FakeConnection, FakeExchange
from tests.fakes.loopback import dumps

EXAMPLES = json.loads((DATA / "deribit_liquidation_examples.json").read_text())
FIXTURE_TRADE: dict[str, Any] = EXAMPLES["examples"][0]["frame"]["params"]["data"][0]
LISTED = ("BTC-PERPETUAL", "ETH-PERPETUAL", "BTC_USDC-PERPETUAL", "SOL_USDC-PERPETUAL")
ALL_FUTURES = "trades.future.any.100ms"


def trade(
    instrument: str = "BTC-PERPETUAL", direction: str = "sell", amount: float = 1200.0,
    price: float = 60000.0, liquidation: str | None = "T", trade_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A trade of the fixture's shape; `liquidation` None: an ordinary trade."""
    t = int(time.time() * 1000) if timestamp is None else timestamp
    body = {**FIXTURE_TRADE, "instrument_name": instrument, "direction": direction,
            "amount": amount, "price": price, "timestamp": t, "mark_price": price,
            "trade_id": trade_id or f"{instrument}-{t}-{direction}-{amount}"}  # fmt: skip
    body.pop("liquidation", None)
    return body if liquidation is None else {**body, "liquidation": liquidation}


def trades_frame(instrument: str, trades: list[dict[str, Any]]) -> dict[str, Any]:
    params = {"channel": f"trades.{instrument}.100ms", "data": trades}
    return {"jsonrpc": "2.0", "method": "subscription", "params": params}


class FakeDeribit(FakeExchange):
    ws_path = "/ws/api/v2"
    name = "Deribit"

    def __init__(self, listed: tuple[str, ...] = LISTED, heartbeat_every: float = 5.0) -> None:
        super().__init__()
        self.listed = listed
        self.heartbeat_every = heartbeat_every
        self.closed_for_tests = 0
        self._beats: dict[FakeConnection, asyncio.Task[None]] = {}

    async def push_trades(self, instrument: str, trades: list[dict[str, Any]]) -> int:
        frame = trades_frame(instrument, trades)
        sent = 0
        for conn in self.connections:
            if (
                frame["params"]["channel"] in conn.subscriptions
                or ALL_FUTURES in conn.subscriptions
            ):
                sent += await self.send(conn, dumps(frame))
        return sent

    async def push_ticker(self, instrument: str, kind: str = "snapshot", **fields: Any) -> int:
        data = {"type": kind, "instrument_name": instrument,
                "timestamp": int(time.time() * 1000), **fields}  # fmt: skip
        channel = f"incremental_ticker.{instrument}"
        frame = {"jsonrpc": "2.0", "method": "subscription",
                 "params": {"channel": channel, "data": data}}  # fmt: skip
        return await self.send_to(channel, dumps(frame))

    def unreadable(self, message: str | bytes) -> str | None:
        return dumps({"jsonrpc": "2.0", "error": {"message": "bad_request", "code": 11050}})

    def reply(self, conn: FakeConnection, request: Any) -> str | None:
        method, params = request.get("method"), request.get("params") or {}
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id"),
                                 "usIn": 0, "usOut": 0, "usDiff": 0, "testnet": False}  # fmt: skip
        if method == "public/test":
            conn.pings += 1
            return dumps({**reply, "result": {"version": "1.2.26"}})
        if method == "public/set_heartbeat":
            if not isinstance(params.get("interval"), int) or params["interval"] < 10:
                return dumps({**reply, "error": {"message": "invalid_params", "code": -32602}})
            self._beats[conn] = asyncio.create_task(self._beat(conn))
            return dumps({**reply, "result": "ok"})
        channels = params.get("channels", [])
        if method not in ("public/subscribe", "public/unsubscribe") or not isinstance(
            channels, list
        ):
            return dumps({**reply, "error": {"message": "method_not_found", "code": -32601}})
        if any(str(c).endswith(".raw") for c in channels):
            error = {"message": "raw_subscriptions_not_available_for_unauthorized", "code": 13778}
            return dumps({**reply, "error": error})
        taken = [c for c in channels if self._known(c)]
        if method == "public/subscribe":
            conn.subscriptions.update(taken)
        else:
            conn.subscriptions.difference_update(taken)
        return dumps({**reply, "result": taken})

    def _known(self, channel: Any) -> bool:
        parts = str(channel).split(".")
        if channel == ALL_FUTURES:
            return True
        return (
            len(parts) >= 2
            and parts[0] in ("trades", "incremental_ticker")
            and (parts[1] in self.listed)
        )

    def on_connect(self, conn: FakeConnection) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._end_beats(conn))]

    async def _end_beats(self, conn: FakeConnection) -> None:
        try:
            await conn.ws.wait_closed()
        finally:
            beat = self._beats.pop(conn, None)
            if beat is not None:
                beat.cancel()

    async def _beat(self, conn: FakeConnection) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            await self.send(conn, dumps({"jsonrpc": "2.0", "method": "heartbeat",
                                         "params": {"type": "heartbeat"}}))  # fmt: skip
            before = conn.pings
            await self.send(conn, dumps({"jsonrpc": "2.0", "method": "heartbeat",
                                         "params": {"type": "test_request"}}))  # fmt: skip
            await asyncio.sleep(self.heartbeat_every)
            if conn.pings == before:
                self.closed_for_tests += 1
                await conn.ws.close(1000, "test_request not answered")
                return
