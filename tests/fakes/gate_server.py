"""Local stand-in for Gate's USDT-settled futures WebSocket (`futures.public_liquidates`,
`futures.contract_stats`) and its contracts REST endpoint.

Gate facts encoded here (tests/data/gateio_liquidation_examples.json):
* `/v4/ws/usdt`; `{"time","channel","event":"subscribe","payload":[...]}` is acknowledged
  `{"time","time_ms","channel","event":"subscribe","result":{"status":"success"}}`; a bad
  payload gets an `error` object (code 2, "invalid argument"). `["!all"]` covers every
  contract of `futures.public_liquidates`; `futures.contract_stats` takes
  `[contract, interval]`.
* Keep-alive: `{"time","channel":"futures.ping"}` is answered `futures.pong`.
* A push, in the shape `shape` names: "live" (a bare `result` object, string price, the
  row time in `time`, ms: the frames of 2026-08), "array" (several rows of one contract,
  the doc since 2026-08-20) or "english" (an array, number price, `time_ms`). `size` is
  signed contracts (negative: a long liquidated): a string when the handshake carried
  `X-Gate-Size-Decimal: 1`, else an integer truncated toward zero.
* `GET /api/v4/futures/usdt/contracts`: the documented contract row per contract, with
  its `quanto_multiplier`.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from tests.fakes import DATA
from tests.fakes.exchange_server import FakeConnection, FakeExchange
from tests.fakes.loopback import dumps

EXAMPLES = json.loads((DATA / "gateio_liquidation_examples.json").read_text())
CONTRACT_ROW: dict[str, Any] = EXAMPLES["contract_size"]["example_response"]
MULTIPLIERS = {
    "BTC_USDT": "0.0001",
    "ETH_USDT": "0.01",
    "SOL_USDT": "1",
    "ADA_USDT": "10",
    "BNB_USDT": "0.001",
}


def row(contract: str = "BTC_USDT", size: float = -100.0, price: float = 60000.0,
        ts: int | None = None) -> dict[str, Any]:  # fmt: skip
    """One liquidation: `size` signed contracts, rendered on the wire by `push`."""
    return {"contract": contract, "size": size, "price": price,
            "time": int(time.time() * 1000) if ts is None else ts}  # fmt: skip


def push_frame(wire: list[dict[str, Any]], shape: str = "live") -> dict[str, Any]:
    """A push of rows already as on the wire (`wire_row`); the live shape of one row is a
    bare object."""
    result: Any = wire[0] if shape == "live" and len(wire) == 1 else wire
    now = int(time.time() * 1000)
    return {"time": now // 1000, "time_ms": now, "channel": "futures.public_liquidates",
            "event": "update", "result": result}  # fmt: skip


class FakeGate(FakeExchange):
    ws_path = "/v4/ws/usdt"
    name = "Gate"

    def __init__(self, multipliers: dict[str, str] | None = None) -> None:
        super().__init__()
        self.multipliers = dict(MULTIPLIERS if multipliers is None else multipliers)

    async def push(self, rows: list[dict[str, Any]], shape: str = "live") -> int:
        sent = 0
        for conn in self.subscribed("liquidates:!all"):
            decimal = conn.ws.request is not None and (
                conn.ws.request.headers.get("X-Gate-Size-Decimal") == "1"
            )
            wire = [wire_row(r, decimal, shape) for r in rows]
            sent += await self.send(conn, dumps(push_frame(wire, shape)))
        return sent

    async def push_stats(self, contract: str, open_interest: float, mark: str) -> int:
        now = int(time.time())
        stats = {"time": now, "contract": contract, "open_interest": open_interest,
                 "mark_price": mark, "lsr_taker": 1, "long_liq_size": 0}  # fmt: skip
        frame = {"time": now, "time_ms": now * 1000, "channel": "futures.contract_stats",
                 "event": "update", "result": [stats]}  # fmt: skip
        return await self.send_to(f"stats:{contract}", dumps(frame))

    def reply(self, conn: FakeConnection, request: Any) -> str | None:
        channel, event, payload = (
            request.get("channel"),
            request.get("event"),
            request.get("payload"),
        )
        now = int(time.time() * 1000)
        reply: dict[str, Any] = {"time": now // 1000, "time_ms": now, "channel": channel}
        if channel == "futures.ping":
            conn.pings += 1
            return dumps({**reply, "channel": "futures.pong", "event": "", "result": None})
        name = self._subscription(channel, payload)
        if event not in ("subscribe", "unsubscribe") or name is None:
            error = {"code": 2, "message": "invalid argument"}
            return dumps({**reply, "event": event, "error": error, "result": None})
        if event == "subscribe":
            conn.subscriptions.add(name)
        else:
            conn.subscriptions.discard(name)
        return dumps({**reply, "event": event, "result": {"status": "success"}})

    def _subscription(self, channel: Any, payload: Any) -> str | None:
        if channel == "futures.public_liquidates" and payload == ["!all"]:
            return "liquidates:!all"
        if channel == "futures.contract_stats" and isinstance(payload, list) and len(payload) == 2:
            return f"stats:{payload[0]}" if payload[0] in self.multipliers else None
        return None

    def rest(self, path: str, query: str) -> tuple[int, Any]:
        if path != "/api/v4/futures/usdt/contracts":
            return 404, {"label": "NOT_FOUND", "message": "not found"}
        rows = [{**CONTRACT_ROW, "name": name, "quanto_multiplier": value}
                for name, value in self.multipliers.items()]  # fmt: skip
        return 200, rows


def wire_row(row: dict[str, Any], decimal: bool = True, shape: str = "live") -> dict[str, Any]:
    """`row` as Gate sends it: `size` a decimal string with the size header, else an
    integer truncated toward zero; `shape` "english" has a number price and `time_ms`."""
    size = row["size"]
    wire: dict[str, Any] = {"contract": row["contract"],
                            "size": f"{size:g}" if decimal else math.trunc(size)}  # fmt: skip
    if shape == "english":
        return {**wire, "price": row["price"], "time_ms": row["time"]}
    return {**wire, "price": f"{row['price']:g}", "time": row["time"]}
