"""Local stand-in for Binance USD-M futures REST: `GET /fapi/v1/exchangeInfo` only.

Rows have the shape Binance sends (abridged: `filters` and `orderTypes` shortened); the
hub reads only `symbol`, `contractType` and `status`. Tests change `listed` (perpetuals
trading now), `others` (rows of other kinds) or `fail_with` (an HTTP status) at any time.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.loopback import StarletteServer


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


class FakeBinanceRest(StarletteServer):
    name = "Binance REST"

    def __init__(self, listed: list[str]) -> None:
        super().__init__()
        self.listed = list(listed)
        self.others: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        self.requests = 0

    def routes(self) -> list[Route]:
        return [Route("/fapi/v1/exchangeInfo", self._exchange_info)]

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
