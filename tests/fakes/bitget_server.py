"""Local stand-in for Bitget's UTA (v3) public WebSocket (`liquidation`, `ticker`).

Bitget facts encoded here (tests/data/bitget_liquidation_examples.json):
* `/v3/ws/public`; `{"op":"subscribe","args":[{"instType","topic"[,"symbol"]}]}` is
  acknowledged `{"event":"subscribe","arg":{...}}`; a bad argument gets
  `{"event":"error","code":..,"msg":..}`. `liquidation` takes no symbol: one subscription
  per product line carries every symbol.
* Keep-alive: the text `ping` is answered with the text `pong`.
* A push: the documented frame, `{"data":[{"symbol","side","price","amount","ts"}],
  "arg":{"instType","topic"},"action":"update","ts"}`; `side` the position's, `amount`
  quote notional, every value a string; several symbols in one push, rows 10-20 s old.
  A fresh subscription may send recent rows again (`replay_on_subscribe`).
* `ticker`: `{"data":[{"markPrice","openInterest",...}],"arg":{"instType","topic",
  "symbol"},"action":"snapshot"|"update","ts"}`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.fakes import DATA
from tests.fakes.exchange_server import FakeConnection, FakeExchange
from tests.fakes.loopback import dumps

EXAMPLES = json.loads((DATA / "bitget_liquidation_examples.json").read_text())
DOCUMENTED_PUSH: dict[str, Any] = EXAMPLES["examples"][0]["frame"]
LISTED = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT", "BNBUSDT")


def row(
    symbol: str = "BTCUSDT", side: str = "buy", price: str = "60000", amount: str = "6000",
    ts: int | None = None,
) -> dict[str, str]:  # fmt: skip
    """A row of the documented push (`amount` in USDT)."""
    t = int(time.time() * 1000) if ts is None else ts
    return {**DOCUMENTED_PUSH["data"][0], "symbol": symbol, "side": side, "price": price,
            "amount": amount, "ts": str(t)}  # fmt: skip


def push_frame(rows: list[dict[str, str]], inst_type: str = "usdt-futures") -> dict[str, Any]:
    return {**DOCUMENTED_PUSH, "data": rows,
            "arg": {"instType": inst_type, "topic": "liquidation"},
            "ts": int(time.time() * 1000)}  # fmt: skip


class FakeBitget(FakeExchange):
    ws_path = "/v3/ws/public"
    name = "Bitget"

    def __init__(self, listed: tuple[str, ...] = LISTED) -> None:
        super().__init__()
        self.listed = listed
        self.replay_on_subscribe: list[dict[str, Any]] = []

    async def push(self, rows: list[dict[str, str]], inst_type: str = "usdt-futures") -> int:
        return await self.send_to(f"liquidation:{inst_type}", dumps(push_frame(rows, inst_type)))

    async def push_ticker(self, symbol: str, action: str = "snapshot", **fields: str) -> int:
        arg = {"instType": "usdt-futures", "topic": "ticker", "symbol": symbol}
        frame = {"data": [fields], "action": action, "ts": int(time.time() * 1000), "arg": arg}
        return await self.send_to(f"ticker:{symbol}", dumps(frame))

    text_ping = "ping"

    def unreadable(self, message: str | bytes) -> str | None:
        return dumps({"event": "error", "code": "30012", "msg": "invalid request"})

    def reply(self, conn: FakeConnection, request: Any) -> str | None:
        args = request.get("args")
        names = [self._subscription(a) for a in args] if isinstance(args, list) else [None]
        if request.get("op") not in ("subscribe", "unsubscribe") or None in names or not args:
            return dumps({"event": "error", "code": "30001", "msg": "channel does not exist"})
        if request["op"] == "subscribe":
            conn.subscriptions.update(n for n in names if n is not None)
        else:
            conn.subscriptions.difference_update(names)
        return dumps({"event": request["op"], "arg": args[-1]})  # one ack stands for them

    def _subscription(self, arg: Any) -> str | None:
        if not isinstance(arg, dict):
            return None
        if arg.get("topic") == "liquidation" and "symbol" not in arg:
            return f"liquidation:{arg.get('instType')}"
        if arg.get("topic") == "ticker" and arg.get("symbol") in self.listed:
            return f"ticker:{arg['symbol']}"
        return None

    async def after_answer(self, conn: FakeConnection) -> None:
        if conn.requests and conn.requests[-1].get("op") == "subscribe":
            for frame in self.replay_on_subscribe:
                await self.send(conn, dumps(frame))
