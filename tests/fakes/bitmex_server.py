"""Local stand-in for BitMEX's realtime WebSocket (`liquidation`, `instrument` tables) and
its active instruments REST endpoint.

BitMEX facts encoded here (tests/data/bitmex_liquidation_examples.json):
* `/realtime`; on connect a welcome frame (`info`, `version`, `timestamp`, `docs`,
  `heartbeatEnabled`, `limit`).
* `{"op":"subscribe","args":["liquidation", "instrument:XBTUSDT"]}`: an ack per topic
  (`{"success":true,"subscribe":TOPIC,"request":...}`), then that table's `partial` (the
  liquidation orders active now, usually none; the instrument's full row). An unknown
  topic gets `{"status":400,"error":"Unknown table: ...","request":...}`.
* Keep-alive: the text `ping` is answered with the text `pong`.
* Liquidation rows `{orderID, symbol, side, price, leavesQty}` arrive as `insert`, then
  `update` (leavesQty, price) and `delete` (orderID and symbol only); no timestamp.
* `GET /api/v1/instrument/active`: XBTUSD (inverse, 1 USD a contract), XBTUSDT and
  ETHUSDT (linear, 1e-6 XBT and 1e-5 ETH a contract), ETHUSD (quanto), a dated future.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

from tests.fakes import DATA
from tests.fakes.exchange_server import FakeConnection, FakeExchange
from tests.fakes.loopback import dumps

EXAMPLES = json.loads((DATA / "bitmex_liquidation_examples.json").read_text())
PARTIAL: dict[str, Any] = EXAMPLES["subscribe"]["partial_example"]
XBTUSD: dict[str, Any] = EXAMPLES["contract_size"]["example_instrument_row_excerpt"]
INSTRUMENTS = [
    XBTUSD,
    {**XBTUSD, "symbol": "XBTUSDT", "positionCurrency": "XBT", "quoteCurrency": "USDT",
     "multiplier": 1, "underlyingToPositionMultiplier": 1_000_000,
     "underlyingToSettleMultiplier": None, "isInverse": False, "settlCurrency": "USDt"},
    {**XBTUSD, "symbol": "ETHUSDT", "rootSymbol": "ETH", "quoteCurrency": "USDT",
     "multiplier": 1, "underlyingToPositionMultiplier": 100_000,
     "underlyingToSettleMultiplier": None, "isInverse": False},
    {**XBTUSD, "symbol": "ETHUSD", "rootSymbol": "ETH", "isQuanto": True, "isInverse": False,
     "multiplier": 100},
    {**XBTUSD, "symbol": "XBTZ26", "typ": "FFCCSX"},
]  # fmt: skip


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def order(
    order_id: str, symbol: str = "XBTUSDT", side: str = "Sell", price: float = 60000.0,
    leaves_qty: int = 150_000,
) -> dict[str, Any]:  # fmt: skip
    return {"orderID": order_id, "symbol": symbol, "side": side, "price": price,
            "leavesQty": leaves_qty}  # fmt: skip


def table_frame(action: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"table": "liquidation", "action": action, "data": rows}


class FakeBitmex(FakeExchange):
    ws_path = "/realtime"
    name = "BitMEX"

    def __init__(self) -> None:
        super().__init__()
        self.active: dict[str, dict[str, Any]] = {}  # orderID -> row, the table's content
        self._partials: dict[FakeConnection, list[str]] = {}

    def on_connect(self, conn: FakeConnection) -> list[asyncio.Task[None]]:
        welcome = {"info": "Welcome to the BitMEX Realtime API.", "version": "2.0.0",
                   "timestamp": iso(int(time.time() * 1000)),
                   "docs": "https://www.bitmex.com/app/wsAPI", "heartbeatEnabled": False,
                   "limit": {"remaining": 719}}  # fmt: skip
        return [asyncio.create_task(self.send(conn, dumps(welcome)))]

    async def insert(self, *rows: dict[str, Any]) -> int:
        self.active.update((r["orderID"], r) for r in rows)
        return await self._table("insert", list(rows))

    async def update(self, order_id: str, **fields: Any) -> int:
        self.active[order_id] = {**self.active[order_id], **fields}
        symbol = self.active[order_id]["symbol"]
        return await self._table("update", [{"orderID": order_id, "symbol": symbol, **fields}])

    async def delete(self, order_id: str) -> int:
        row = self.active.pop(order_id)
        return await self._table("delete", [{"orderID": order_id, "symbol": row["symbol"]}])

    async def push_instrument(self, symbol: str, **fields: Any) -> int:
        data = [{"symbol": symbol, "timestamp": iso(int(time.time() * 1000)), **fields}]
        frame = {"table": "instrument", "action": "update", "data": data}
        return await self.send_to(f"instrument:{symbol}", dumps(frame))

    async def _table(self, action: str, rows: list[dict[str, Any]]) -> int:
        return await self.send_to("liquidation", dumps(table_frame(action, rows)))

    text_ping = "ping"

    def unreadable(self, message: str | bytes) -> str | None:
        return dumps({"status": 400, "error": "Unable to parse request"})

    def reply(self, conn: FakeConnection, request: Any) -> str | None:
        if not isinstance(request, dict):
            return dumps({"status": 400, "error": "Unknown or missing op"})
        args = request.get("args")
        if request.get("op") not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            return dumps({"status": 400, "error": "Unknown or missing op", "request": request})
        unknown = [a for a in args if not self._known(a)]
        if unknown:
            return dumps({"status": 400, "error": f"Unknown table: {unknown[0]}",
                          "request": request})  # fmt: skip
        if request["op"] == "unsubscribe":
            conn.subscriptions.difference_update(args)
            return dumps({"success": True, "unsubscribe": args[-1], "request": request})
        conn.subscriptions.update(args)
        self._partials[conn] = list(args)
        return dumps({"success": True, "subscribe": args[-1], "request": request})

    def _known(self, topic: Any) -> bool:
        table, _, symbol = str(topic).partition(":")
        return table == "liquidation" or (
            table == "instrument" and any(i["symbol"] == symbol for i in INSTRUMENTS)
        )

    async def after_answer(self, conn: FakeConnection) -> None:
        for topic in self._partials.pop(conn, []):
            table, _, symbol = topic.partition(":")
            data: list[dict[str, Any]]
            if table == "liquidation":
                data = list(self.active.values())
            else:
                row = next(i for i in INSTRUMENTS if i["symbol"] == symbol)
                data = [{**row, "timestamp": iso(int(time.time() * 1000))}]
            await self.send(conn, dumps({**PARTIAL, "table": table, "data": data}))

    def rest(self, path: str, query: str) -> tuple[int, Any]:
        if path != "/api/v1/instrument/active":
            return 404, {"error": {"message": "Not Found", "name": "HTTPError"}}
        return 200, INSTRUMENTS
