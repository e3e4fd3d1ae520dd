"""REST's door: the key (when keys are on), the request rate, the key's allow-list.

A pure ASGI middleware in front of the routes, for HTTP only (the WebSocket endpoint asks
the `AccessGate` itself at connect time). `/` and `/health` are always open: the page
must load to ask for a key, and a load balancer checks health without one.

In this order: a request is counted against its key's rate (its address's without a
valid key, so guessing keys is rate limited too) and refused with 429 and `Retry-After`
when over; then a missing or unknown key is 401; then a key with a channel allow-list
may only read what it names (403): a path or `symbol` parameter naming a symbol its
patterns allow, or one of the few paths that name none and list no symbol's data
(status, the symbol list, metrics). The grant is left in the scope (`GRANT`) for the
admin endpoints, which need an `admin` one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from urllib.parse import parse_qs

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.access.gate import AccessGate, identity
from hub.access.keys import Grant
from hub.api.responses import failure

GRANT = "hub.grant"  # the scope key of the request's Grant (None: keys are off)
OPEN_PATHS = frozenset({"/", "/health"})
SYMBOL_FREE_PATHS = frozenset({"/api/heatmap/status", "/api/heatmap/symbols", "/metrics"})


def bearer(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The key of an `Authorization: Bearer KEY` header, if there is one."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and key.strip():
                return key.strip()
    return None


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "?"


class AccessMiddleware:
    def __init__(self, app: ASGIApp, gate: AccessGate, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.gate = gate
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self.gate
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or not gate.guards_requests:
            await self.app(scope, receive, send)
            return
        grant = gate.authenticate(bearer(scope["headers"]))
        wait = await gate.admit_request(
            identity(grant, client_address(scope)), time.monotonic() * 1000
        )
        if wait:
            gate.stats.rate_limited_rest += 1
            rate = gate.settings.rest_rate_limit
            refusal = failure(429, f"over {rate:g} requests a second; retry in {wait} s")
            refusal.headers["Retry-After"] = str(wait)
        elif gate.keys_required and grant is None:
            gate.stats.unauthorized_rest += 1
            refusal = failure(401, "a valid 'Authorization: Bearer KEY' is required")
            refusal.headers["WWW-Authenticate"] = 'Bearer realm="heatmap-hub"'
        elif grant is not None and not self._admits(grant, scope):
            gate.stats.forbidden_rest += 1
            refusal = failure(403, f"key {grant.name!r} may not read this")
        else:
            scope[GRANT] = grant
            await self.app(scope, receive, send)
            return
        await refusal(scope, receive, send)

    def _admits(self, grant: Grant, scope: Scope) -> bool:
        if grant.channels is None:
            return True
        symbol = self._symbol(scope)
        if symbol is None:
            return scope["path"] in SYMBOL_FREE_PATHS
        return grant.admits_symbol(symbol.upper())

    def _symbol(self, scope: Scope) -> str | None:
        """The symbol a request names: its route's `{symbol}`, else its `symbol` parameter."""
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                symbol = child.get("path_params", {}).get("symbol")
                if symbol:
                    return str(symbol)
                break
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("symbol")
        return values[0] if values and values[0] else None
