"""Local stand-in for CoinGlass API v4's aggregated liquidation history.

Facts (tests/data/coinglass_examples.json): the key goes in the `CG-API-KEY` header, a
missing or wrong key is HTTP 401; a rate-limited key gets HTTP 429; the body is
`{"code": "0", "msg": "success", "data": [{time, aggregated_long_liquidation_usd,
aggregated_short_liquidation_usd}]}` with numbers; a plan that does not cover a request
answers with another `code` (the exact body is not documented; this one is a guess).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tests.conftest import free_port

HOUR_MS = 3_600_000


class FakeCoinGlass:
    def __init__(self, key: str, hours: dict[str, dict[int, tuple[float, float]]]) -> None:
        """`hours`: coin -> hour start -> (long usd, short usd)."""
        self.key = key
        self.hours = hours
        self.mode = "ok"  # "ok" | "rate_limited" | "plan"
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeCoinGlass:
        self._server = await serve(self._ws, "127.0.0.1", self.port, process_request=self._http)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _ws(self, ws: ServerConnection) -> None:
        await ws.close()

    def _http(self, connection: ServerConnection, request: Request) -> Response:
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
            return _json({"code": "403", "msg": "Upgrade your plan to use this endpoint"})
        rows = [
            {
                "time": hour,
                "aggregated_long_liquidation_usd": long_usd,
                "aggregated_short_liquidation_usd": short_usd,
            }
            for hour, (long_usd, short_usd) in sorted(self.hours.get(query["symbol"], {}).items())
        ]
        return _json({"code": "0", "msg": "success", "data": rows})


def _json(body: dict[str, Any]) -> Response:
    payload = json.dumps(body).encode()
    headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(payload))})
    return Response(200, "OK", headers, payload)
