"""Local stand-in for Bybit's V5 public linear WebSocket (`allLiquidation.{SYMBOL}`) and
its instruments REST endpoint.

Bybit facts encoded here (shared/data/README.md, "Bybit"):
* `wss://.../v5/public/linear`; requests `{"op", "args", "req_id"?}`; replies
  `{"success", "ret_msg", "conn_id", "req_id", "op"}`; an unknown topic fails the request
  with `success: false`; the args of one connection total at most 21,000 characters.
* Keep-alive: `{"op":"ping"}` is answered `{"success":true,"ret_msg":"pong",...,"op":"ping"}`.
* A push: `{"topic":"allLiquidation.X","type":"snapshot","ts":..,"data":[{"T","s","S","v","p"}]}`,
  `data` an array, `S` the position side (`Buy`: a long liquidated), numbers as strings.
* `tickers.X`: a `snapshot` of every field first, then `delta`s with only the changed
  ones: `{"topic":"tickers.X","type":..,"cs":..,"ts":..,"data":{"symbol","markPrice",
  "openInterest" (base coin),...}}`, `data` one object.
* `GET /v5/market/instruments-info?category=linear` lists instruments, paginated by cursor.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.exchange_server import FakeConnection, FakeExchange
from tests.fakes.loopback import dumps

LISTED = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT", "BNBUSDT", "XRPUSDT")
MAX_ARGS_CHARS = 21_000


def liquidation(
    symbol: str = "BTCUSDT", side: str = "Buy", size: str = "0.010", price: str = "60000.1",
    trade_time: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    t = int(time.time() * 1000) if trade_time is None else trade_time
    return {"T": t, "s": symbol, "S": side, "v": size, "p": price}


def ticker_snapshot(symbol: str) -> dict[str, str]:
    """Bybit's documented linear ticker snapshot (its example's values)."""
    return {"symbol": symbol, "tickDirection": "PlusTick", "price24hPcnt": "0.017103",
            "lastPrice": "17216.00", "prevPrice24h": "16926.50", "highPrice24h": "17281.50",
            "lowPrice24h": "16915.00", "prevPrice1h": "17238.00", "markPrice": "17217.33",
            "indexPrice": "17227.36", "openInterest": "68744.761",
            "openInterestValue": "1183601235.91", "turnover24h": "1570383121.943499",
            "volume24h": "91705.276", "nextFundingTime": "1673280000000",
            "fundingRate": "-0.000212", "bid1Price": "17215.50", "bid1Size": "84.489",
            "ask1Price": "17216.00", "ask1Size": "83.020"}  # fmt: skip


class FakeBybit(FakeExchange):
    ws_path = "/v5/public/linear"
    name = "Bybit"

    def __init__(self, listed: tuple[str, ...] = LISTED, page_size: int = 4) -> None:
        super().__init__()
        self.listed = listed
        self.page_size = page_size

    async def push(self, symbol: str, items: list[dict[str, Any]]) -> int:
        frame = {
            "topic": f"allLiquidation.{symbol}",
            "type": "snapshot",
            "ts": int(time.time() * 1000),
            "data": items,
        }
        return await self.send_to(f"allLiquidation.{symbol}", dumps(frame))

    async def push_ticker(
        self, symbol: str, kind: str, ts: int | None = None, **fields: str
    ) -> int:
        """A `snapshot` (a full ticker, `fields` over documented values) or a `delta`
        (only `fields`)."""
        data = {**ticker_snapshot(symbol), **fields} if kind == "snapshot" else fields
        frame = {
            "topic": f"tickers.{symbol}",
            "type": kind,
            "cs": 24987956059,
            "ts": int(time.time() * 1000) if ts is None else ts,
            "data": {"symbol": symbol, **data},
        }
        return await self.send_to(f"tickers.{symbol}", dumps(frame))

    def unreadable(self, message: str | bytes) -> str | None:
        return dumps({"success": False, "ret_msg": "error:invalid json", "op": ""})

    def reply(self, conn: FakeConnection, request: Any) -> str | None:
        op, req_id = request.get("op"), request.get("req_id", "")
        reply = {"success": True, "ret_msg": "", "conn_id": "fake", "req_id": req_id, "op": op}
        if op == "ping":
            conn.pings += 1
            return dumps({**reply, "ret_msg": "pong"})
        args = request.get("args", [])
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            return dumps({**reply, "success": False, "ret_msg": f"error:unknown op {op}"})
        unknown = [a for a in args if _symbol(a) not in self.listed]
        if unknown:
            failure = f"error:handler not found,topic:{unknown[0]}"
            return dumps({**reply, "success": False, "ret_msg": failure})
        if op == "subscribe":
            wanted = conn.subscriptions | set(args)
            if sum(len(a) + 3 for a in wanted) > MAX_ARGS_CHARS:
                return dumps({**reply, "success": False, "ret_msg": "error:args too long"})
            conn.subscriptions = wanted
        else:
            conn.subscriptions -= set(args)
        return dumps(reply)

    def rest(self, path: str, query: str) -> tuple[int, Any]:
        if path != "/v5/market/instruments-info":
            return 404, {"retCode": 10001, "retMsg": "not found"}
        params = parse_qs(query)
        start = int(params.get("cursor", ["0"])[0] or 0)
        page = self.listed[start : start + self.page_size]
        following = start + self.page_size
        items = [
            {"symbol": s, "contractType": "LinearPerpetual", "status": "Trading"} for s in page
        ]
        if start == 0:
            items.append({"symbol": "BTC-27DEC26", "contractType": "LinearFutures",
                          "status": "Trading"})  # fmt: skip
        result = {
            "category": "linear",
            "list": items,
            "nextPageCursor": str(following) if following < len(self.listed) else "",
        }
        return 200, {"retCode": 0, "retMsg": "OK", "result": result, "time": 0}


def _symbol(topic: str) -> str:
    for prefix in ("allLiquidation.", "tickers."):
        if topic.startswith(prefix):
            return topic.removeprefix(prefix)
    return ""
