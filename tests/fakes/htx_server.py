"""Local stand-in for HTX's USDT-margined notification WebSocket (`liquidation_orders`)
and its open interest REST endpoint.

HTX facts encoded here (tests/data/htx_liquidation_examples.json):
* `/linear-swap-notification`; **every frame the server sends is GZIP-compressed**.
* `{"op":"sub","cid","topic":"public.*.liquidation_orders"}` is acknowledged `{"op":"sub",
  "cid","topic","ts","err-code":0}`; subscribing one contract after `*` is refused with
  err-code 2014.
* Keep-alive is HTX's: `{"op":"ping","ts":"..."}` every `ping_every` seconds (5 s live);
  the client answers `{"op":"pong","ts":same}`; after five pings without a pong the
  server sends `{"op":"close"}` and closes.
* A push: the documented frame `{"op":"notify","topic","ts","data":[{symbol, contract_code,
  direction, offset, volume, price, created_at, amount, trade_turnover, contract_type,
  pair, business_type}]}`, numbers as JSON numbers. A fresh subscription may send recent
  rows again (`replay_on_subscribe`).
* `GET /linear-swap-api/v1/swap_open_interest`: `{"status":"ok","data":[{volume, amount,
  symbol, value, contract_code, ...}],"ts"}`, both sides summed.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from typing import Any

from tests.fakes import DATA
from tests.fakes.exchange_server import FakeConnection, FakeExchange
from tests.fakes.loopback import dumps

EXAMPLES = json.loads((DATA / "htx_liquidation_examples.json").read_text())
DOCUMENTED_PUSH: dict[str, Any] = EXAMPLES["examples"][0]["frame"]
OPEN_INTEREST_ROW: dict[str, Any] = EXAMPLES["open_interest"]["example_response_first_row"]
ALL = "public.*.liquidation_orders"
MAX_MISSED_PINGS = 5


def row(
    contract_code: str = "BTC-USDT", direction: str = "sell", amount: float = 0.227,
    price: float = 60000.0, created_at: int | None = None, contract_size: float = 0.001,
) -> dict[str, Any]:  # fmt: skip
    """A row of the documented push; `volume` contracts of `contract_size` coins."""
    t = int(time.time() * 1000) if created_at is None else created_at
    symbol = contract_code.split("-")[0]
    return {**DOCUMENTED_PUSH["data"][0], "symbol": symbol, "contract_code": contract_code,
            "direction": direction, "volume": round(amount / contract_size), "price": price,
            "created_at": t, "amount": amount, "trade_turnover": amount * price,
            "pair": contract_code}  # fmt: skip


def notify_frame(rows: list[dict[str, Any]], topic: str = ALL) -> dict[str, Any]:
    return {**DOCUMENTED_PUSH, "topic": topic, "ts": int(time.time() * 1000), "data": rows}


class FakeHtx(FakeExchange):
    ws_path = "/linear-swap-notification"
    name = "HTX"

    def __init__(self, ping_every: float = 5.0) -> None:
        super().__init__()
        self.ping_every = ping_every
        self.open_interest: dict[str, tuple[float, float]] = {}  # contract -> (coins, price)
        self.replay_on_subscribe: list[dict[str, Any]] = []
        self.closed_for_pongs = 0

    def frame(self, text: str) -> bytes:
        return gzip.compress(text.encode())

    async def push(self, rows: list[dict[str, Any]], topic: str = ALL) -> int:
        return await self.send_to(ALL, dumps(notify_frame(rows, topic)))

    async def send_raw(self, payload: bytes) -> None:
        """Bytes exactly as given (a frame that does not inflate)."""
        for conn in self.subscribed(ALL):
            await conn.ws.send(payload)

    def on_connect(self, conn: FakeConnection) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._ping(conn))]

    async def _ping(self, conn: FakeConnection) -> None:
        missed = 0
        while missed < MAX_MISSED_PINGS:
            await asyncio.sleep(self.ping_every)
            before = conn.pings
            if not await self.send(conn, dumps({"op": "ping", "ts": str(int(time.time() * 1000))})):
                return
            await asyncio.sleep(self.ping_every)
            missed = 0 if conn.pings > before else missed + 1
        self.closed_for_pongs += 1
        await self.send(conn, dumps({"op": "close", "ts": int(time.time() * 1000)}))
        await conn.ws.close(1000, "heartbeat missed")

    def unreadable(self, message: str | bytes) -> str | None:
        return dumps({"op": "error", "ts": int(time.time() * 1000)})

    def reply(self, conn: FakeConnection, request: Any) -> str | None:
        if request.get("op") == "pong":
            conn.pings += 1
            return None
        reply = {"op": request.get("op"), "cid": request.get("cid"), "topic": request.get("topic"),
                 "ts": int(time.time() * 1000), "err-code": 0}  # fmt: skip
        topic = request.get("topic")
        if request.get("op") != "sub" or not isinstance(topic, str):
            return dumps({**reply, "err-code": 2001, "err-msg": "invalid op"})
        if topic != ALL and ALL in conn.subscriptions:
            return dumps({**reply, "err-code": 2014, "err-msg": "subscribed a larger scope"})
        conn.subscriptions.add(topic)
        return dumps(reply)

    async def after_answer(self, conn: FakeConnection) -> None:
        if conn.requests and conn.requests[-1].get("op") == "sub":
            for frame in self.replay_on_subscribe:
                await self.send(conn, dumps(frame))

    def rest(self, path: str, query: str) -> tuple[int, Any]:
        if path != "/linear-swap-api/v1/swap_open_interest":
            return 404, {"status": "error", "err_code": 404, "err_msg": "not found"}
        rows = [
            {**OPEN_INTEREST_ROW, "contract_code": code, "pair": code,
             "symbol": code.split("-")[0], "amount": 2 * coins, "volume": 2 * coins * 1000,
             "value": 2 * coins * price}
            for code, (coins, price) in self.open_interest.items()
        ]  # fmt: skip
        return 200, {"status": "ok", "data": rows, "ts": int(time.time() * 1000)}
