"""Local stand-in for Binance USD-M futures REST: `GET /fapi/v1/exchangeInfo` only.

Rows have the shape Binance sends (abridged: `filters` and `orderTypes` shortened); the
hub reads only `symbol`, `contractType` and `status`. Tests change `listed` (perpetuals
trading now), `others` (rows of other kinds) or `fail_with` (an HTTP status) at any time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def symbol_row(symbol: str, contract_type: str = "PERPETUAL", status: str = "TRADING") -> dict:
    base = symbol.removesuffix("USDT").removesuffix("USDC")
    return {
        "symbol": symbol,
        "pair": symbol.split("_")[0],
        "contractType": contract_type,
        "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000,
        "status": status,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": base,
        "quoteAsset": "USDT",
        "marginAsset": "USDT",
        "pricePrecision": 2,
        "quantityPrecision": 3,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": ["PoW"],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.10"}],
        "orderTypes": ["LIMIT", "MARKET"],
        "timeInForce": ["GTC", "IOC"],
    }


class FakeBinanceRest:
    def __init__(self, listed: list[str]) -> None:
        self.listed = list(listed)
        self.others: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        self.requests = 0
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _exchange_info(self, request: Request) -> Response:
        self.requests += 1
        if self.fail_with is not None:
            return JSONResponse({"code": -1001, "msg": "Internal error."}, self.fail_with)
        return JSONResponse(
            {
                "timezone": "UTC",
                "serverTime": 1796049488109,
                "futuresType": "U_MARGINED",
                "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "limit": 2400}],
                "exchangeFilters": [],
                "assets": [{"asset": "USDT", "marginAvailable": True}],
                "symbols": [symbol_row(s) for s in self.listed] + self.others,
            }
        )

    async def __aenter__(self) -> FakeBinanceRest:
        app = Starlette(routes=[Route("/fapi/v1/exchangeInfo", self._exchange_info)])
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await asyncio.wait_for(self._task, 10)
