"""Local stand-in for OKX's V5 public WebSocket (`liquidation-orders`) and its
instruments REST endpoint.

OKX facts encoded here (shared/data/README.md, "OKX liquidations"):
* `/ws/v5/public`; `{"op":"subscribe","args":[{"channel":"liquidation-orders",
  "instType":"SWAP"}]}` is acknowledged `{"event":"subscribe","arg":{...},"connId":..}`; a
  bad request gets `{"event":"error","code":"60018","msg":..}`.
* Keep-alive: the text `ping` is answered with the text `pong`.
* A push: `{"arg":{...},"data":[{"instId","instType","details":[{"side","posSide","bkPx",
  "sz","ts"}]}]}`: `side` is the liquidation order's (`buy`: a short liquidated), `sz` in
  contracts, every number a string. A fresh subscription may replay recent liquidations
  (`replay_on_subscribe`).
* `{"channel":"open-interest","instId":"BTC-USDT-SWAP"}` per instrument, several in one
  request; a push: `{"arg":{...},"data":[{"instId","instType","oi","oiCcy","oiUsd","ts"}]}`
  (`oi` contracts, `oiCcy` base coin). An unlisted instId is an error (60018).
* `{"channel":"mark-price","instId":"BTC-USDT-SWAP"}` likewise; a push:
  `{"arg":{...},"data":[{"instId","instType","markPx","ts"}]}`.
* `GET /api/v5/public/instruments?instType=SWAP`: `{"code":"0","msg":"","data":[{"instId",
  "ctVal","ctType",...}]}`.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.exchange_server import FakeConnection, FakeExchange
from tests.fakes.loopback import dumps

CHANNEL = {"channel": "liquidation-orders", "instType": "SWAP"}
SUBSCRIPTION = "liquidation-orders:SWAP"
CONTRACT_VALUES = {
    "BTC-USDT-SWAP": "0.01",
    "ETH-USDT-SWAP": "0.1",
    "SOL-USDT-SWAP": "1",
    "ADA-USDT-SWAP": "100",
    "BNB-USDT-SWAP": "0.01",
}


def detail(
    side: str = "buy", size: str = "13", price: str = "60000.1", trade_time: int | None = None
) -> dict[str, Any]:
    t = int(time.time() * 1000) if trade_time is None else trade_time
    pos_side = "short" if side == "buy" else "long"
    return {"bkLoss": "0", "bkPx": price, "ccy": "", "posSide": pos_side, "side": side,
            "sz": size, "ts": str(t)}  # fmt: skip


def push_frame(inst_id: str, details: list[dict[str, Any]]) -> dict[str, Any]:
    family = inst_id.removesuffix("-SWAP")
    return {
        "arg": CHANNEL,
        "data": [{"details": details, "instFamily": family, "instId": inst_id,
                  "instType": "SWAP", "uly": family}],
    }  # fmt: skip


class FakeOkx(FakeExchange):
    ws_path = "/ws/v5/public"
    name = "OKX"

    def __init__(self, contract_values: dict[str, str] | None = None) -> None:
        super().__init__()
        self.contract_values = dict(CONTRACT_VALUES if contract_values is None else contract_values)
        self.replay_on_subscribe: list[dict[str, Any]] = []  # frames sent after each subscribe

    async def push(self, inst_id: str, details: list[dict[str, Any]]) -> int:
        return await self.send_to(SUBSCRIPTION, dumps(push_frame(inst_id, details)))

    async def push_open_interest(
        self, inst_id: str, oi_ccy: float, price: float, ts: int | None = None
    ) -> int:
        """The documented push; `oi` in contracts from this instrument's contract value."""
        contracts = oi_ccy / float(self.contract_values[inst_id])
        item = {"instId": inst_id, "instType": "SWAP", "oi": f"{contracts:.8f}",
                "oiCcy": f"{oi_ccy:.8f}", "oiUsd": f"{oi_ccy * price:.8f}",
                "ts": str(int(time.time() * 1000) if ts is None else ts)}  # fmt: skip
        frame = {"arg": {"channel": "open-interest", "instId": inst_id}, "data": [item]}
        return await self.send_to(f"open-interest:{inst_id}", dumps(frame))

    async def push_mark_price(self, inst_id: str, price: str, ts: int | None = None) -> int:
        item = {"instId": inst_id, "instType": "SWAP", "markPx": price,
                "ts": str(int(time.time() * 1000) if ts is None else ts)}  # fmt: skip
        frame = {"arg": {"channel": "mark-price", "instId": inst_id}, "data": [item]}
        return await self.send_to(f"mark-price:{inst_id}", dumps(frame))

    text_ping = "ping"

    def unreadable(self, message: str | bytes) -> str | None:
        failure = f"Invalid request: {message!r}"
        return dumps({"event": "error", "code": "60012", "msg": failure})

    def reply(self, conn: FakeConnection, request: Any) -> str | None:
        args = request.get("args")
        names = [self._subscription(a) for a in args] if isinstance(args, list) else [None]
        if request.get("op") not in ("subscribe", "unsubscribe") or None in names or not args:
            return dumps({"event": "error", "code": "60018", "msg": "Wrong URL or channel"})
        if request["op"] == "subscribe":
            conn.subscriptions.update(names)  # type: ignore[arg-type]
        else:
            conn.subscriptions.difference_update(names)
        # OKX acknowledges each argument; one acknowledgement stands for them here
        return dumps({"event": request["op"], "arg": args[-1], "connId": "fake"})

    def _subscription(self, arg: Any) -> str | None:
        if arg == CHANNEL:
            return SUBSCRIPTION
        if isinstance(arg, dict) and arg.get("channel") in ("open-interest", "mark-price"):
            inst_id = arg.get("instId")
            return f"{arg['channel']}:{inst_id}" if inst_id in self.contract_values else None
        return None

    async def after_answer(self, conn: FakeConnection) -> None:
        if (
            SUBSCRIPTION in conn.subscriptions
            and conn.requests
            and conn.requests[-1].get("op") == "subscribe"
        ):
            for frame in self.replay_on_subscribe:
                await conn.ws.send(dumps(frame))

    def rest(self, path: str, query: str) -> tuple[int, Any]:
        if path != "/api/v5/public/instruments":
            return 404, {"code": "50000", "msg": "not found", "data": []}
        if parse_qs(query).get("instType") != ["SWAP"]:
            return 200, {"code": "51000", "msg": "Parameter instType error", "data": []}
        data = [
            {"instId": inst_id, "instType": "SWAP", "ctVal": value, "ctType": "linear",
             "ctValCcy": inst_id.split("-")[0], "state": "live"}
            for inst_id, value in self.contract_values.items()
        ]  # fmt: skip
        data.append({"instId": "BTC-USD-SWAP", "instType": "SWAP", "ctVal": "100",
                     "ctType": "inverse", "ctValCcy": "USD", "state": "live"})  # fmt: skip
        return 200, {"code": "0", "msg": "", "data": data}
