"""Local stand-in for CoinGlass API v4's aggregated liquidation history.

Facts (tests/data/coinglass_examples.json): the key goes in the `CG-API-KEY` header, a
missing or wrong key is HTTP 401; a rate-limited key gets HTTP 429; the body is
`{"code": "0", "msg": "success", "data": [{time, aggregated_long_liquidation_usd,
aggregated_short_liquidation_usd}]}` with numbers; a plan that does not cover a request
answers with another `code` (the exact body is not documented; this one is a guess).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from tests.fakes.loopback import LoopbackServer, json_response

HOUR_MS = 3_600_000


class FakeCoinGlass(LoopbackServer):
    name = "CoinGlass"

    def __init__(self, key: str, hours: dict[str, dict[int, tuple[float, float]]]) -> None:
        """`hours`: coin -> hour start -> (long usd, short usd)."""
        super().__init__()
        self.key = key
        self.hours = hours
        self.mode = "ok"  # "ok" | "rate_limited" | "plan"
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def process_request(self, connection: ServerConnection, request: Request) -> Response:
        parts = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.requests.append({"path": parts.path, **query})
        if request.headers.get("CG-API-KEY") != self.key:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        if self.mode == "rate_limited":
            return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "Too Many Requests\n")
        if parts.path != "/api/futures/liquidation/aggregated-history":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if self.mode == "plan":
            return json_response({"code": "403", "msg": "Upgrade your plan to use this endpoint"})
        rows = [
            {
                "time": hour,
                "aggregated_long_liquidation_usd": long_usd,
                "aggregated_short_liquidation_usd": short_usd,
            }
            for hour, (long_usd, short_usd) in sorted(self.hours.get(query["symbol"], {}).items())
        ]
        return json_response({"code": "0", "msg": "success", "data": rows})
