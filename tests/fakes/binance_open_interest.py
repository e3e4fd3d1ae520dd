"""Local stand-in for Binance USD-M REST `GET /fapi/v1/openInterest`, served by a real
uvicorn on a free loopback port (`binance_rest.py` serves the listing, exchangeInfo).

Each symbol's open interest is set by the test; `mode` makes every answer fail one way:
`error` (HTTP 500), `rate_limited` (429 with `Retry-After`), `malformed` (a body that is
not an open-interest answer), `wrong_symbol`, `hang` (no answer until the client gives
up). Requests are logged with their loop time so tests can check the polling rate.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.loopback import StarletteServer


class FakeOpenInterest(StarletteServer):
    name = "Binance open interest"

    def __init__(self) -> None:
        super().__init__()
        self.open_interest: dict[str, float] = {}
        self._mode = "ok"
        self._unhung = asyncio.Event()
        self.retry_after = "1"
        self.requests: list[tuple[float, str]] = []  # (loop time, symbol)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self._mode = mode
        if mode == "hang":
            self._unhung = asyncio.Event()
        else:
            self._unhung.set()

    async def _open_interest(self, request: Request) -> Response:
        symbol = request.query_params.get("symbol", "")
        self.requests.append((asyncio.get_running_loop().time(), symbol))
        if self.mode == "hang":  # until the test (or stop) ends it; the client gave up
            await self._unhung.wait()
        if self.mode == "error":
            return PlainTextResponse("internal error", status_code=500)
        if self.mode == "rate_limited":
            return JSONResponse(
                {"code": -1003, "msg": "Too many requests"},
                status_code=429,
                headers={"Retry-After": self.retry_after},
            )
        if self.mode == "malformed":
            return PlainTextResponse('{"openInterest": [1, 2]', media_type="application/json")
        if symbol not in self.open_interest:
            return JSONResponse({"code": -1121, "msg": "Invalid symbol."}, status_code=400)
        body: dict[str, Any] = {
            "openInterest": f"{self.open_interest[symbol]:.3f}",
            "symbol": "ETHUSDT" if self.mode == "wrong_symbol" else symbol,
            "time": int(time.time() * 1000),  # Binance's server time, as the mark prices'
        }
        return JSONResponse(body)

    def routes(self) -> list[Route]:
        return [Route("/fapi/v1/openInterest", self._open_interest)]

    def before_stop(self) -> None:
        self.mode = "ok"  # let hung requests end, or the server would wait for them
